"""Trainers of the distillation stages beyond the paper (ours): `rkd` and `hint`.

`fer_distill.train.runner` asks this module for a stage's compiled-to-be Keras trainer
(`build_trainer`; the runner feeds it as it feeds kd); everything else of a run (data,
schedule, checkpoints, predictions, metrics.json) is the runner's, as for kd.

- rkd: `fer_distill.distill.rkd_model.RKDModel`. Teacher embeddings from the run's teacher
  cache (`teacher_mode="cached"`, the default: one pass over the full views, like kd's
  logits) or from the live teacher (`teacher_mode="live"`). `shuffle_teacher` permutes the
  cached rows, the misalignment control of kd.
- hint: `fer_distill.distill.hint_model.HintModel`, always with the live teacher on the full
  view (docs: a cache of conv maps would be GBs for VGG); the layer is `config.hint_layer`
  or `fer_distill.distill.hint.HINT_LAYERS[arch]`.
"""
from __future__ import annotations

STAGES = ("rkd", "hint")


def hint_layer(config) -> str:
    """The hint layer of a config: its own, or the architecture's default."""
    from fer_distill.distill.hint import HINT_LAYERS

    return config.hint_layer or HINT_LAYERS[config.arch]


def build_trainer(config, prepared, loaded, rows, size, policy, workdir, chief):
    """The Keras trainer of an rkd or hint run (uncompiled)."""
    if config.stage == "hint":
        from fer_distill.distill.hint_model import HintModel

        return HintModel(loaded["student"], loaded["teacher"], layer=hint_layer(config),
                         view=config.view, lam=config.hint_lambda)
    if config.stage != "rkd":
        raise ValueError(f"distillers: no trainer for stage {config.stage!r}")
    from fer_distill.distill.rkd_model import RKDModel
    from fer_distill.train.teacher_cache import teacher_tables

    settings = dict(lam=config.rkd_lambda, distance_weight=config.rkd_distance_weight,
                    angle_weight=config.rkd_angle_weight)
    if config.teacher_mode == "live":
        return RKDModel(loaded["student"], loaded["teacher"], **settings)
    tables = teacher_tables(config, prepared, loaded["teacher"], rows, image_size=size,
                            policy=policy, workdir=workdir, write=chief, embeddings=True)
    return RKDModel(loaded["student"], None, train_embeddings=tables["train"],
                    eval_embeddings=tables["validation"], **settings)
