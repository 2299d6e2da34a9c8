"""Trainers of the distillation stages: kd and triplet (the paper's), rkd and hint (ours).

    trainer, callbacks = build_trainer(config, prepared, loaded, rows, size, policy, workdir,
                                       chief)

`fer_distill.train.runner` compiles the trainer and fits it with its own schedule,
checkpoints and callbacks plus `callbacks` (the triplet stage's mining pools); everything else
of a run is the runner's. Which model each stage builds, cached or live: docs/DESIGN.md,
"Training".
"""
from __future__ import annotations

import numpy as np

from fer_distill import rundir
from fer_distill.distill.hint import HINT_LAYERS
from fer_distill.distill.hint_model import HintModel
from fer_distill.distill.kd_model import KDModel
from fer_distill.distill.rkd_model import RKDModel
from fer_distill.distill.triplet_model import MiningPools, TripletModel, embed
from fer_distill.models import embedding_model
from fer_distill.train.teacher_cache import deranged, teacher_outputs, teacher_tables

STAGES = ("kd", "triplet", "rkd", "hint")
OURS = ("rkd", "hint")


def hint_layer(config) -> str:
    """The hint layer of a config: its own, or the architecture's default."""
    return config.hint_layer or HINT_LAYERS[config.arch]


def build_trainer(config, prepared, loaded, rows, size, policy, workdir, chief):
    """(the uncompiled Keras trainer of a distillation stage, its extra callbacks)."""
    build = {"kd": _kd, "triplet": _triplet, "rkd": _rkd, "hint": _hint}.get(config.stage)
    if build is None:
        raise ValueError(f"distillers: no trainer for stage {config.stage!r}")
    out = build(config, prepared, loaded, rows, size, policy, workdir, chief)
    return out if isinstance(out, tuple) else (out, [])


def _hint(config, prepared, loaded, rows, size, policy, workdir, chief):
    """hint (ours): HintModel on the live teacher."""
    return HintModel(loaded["student"], loaded["teacher"], layer=hint_layer(config),
                     view=config.view, lam=config.hint_lambda)


def _rkd(config, prepared, loaded, rows, size, policy, workdir, chief):
    """rkd (ours): RKDModel, with the teacher's cached embeddings or the live teacher."""
    settings = dict(lam=config.rkd_lambda, distance_weight=config.rkd_distance_weight,
                    angle_weight=config.rkd_angle_weight)
    if config.teacher_mode == "live":
        return RKDModel(loaded["student"], loaded["teacher"], **settings)
    tables = teacher_tables(config, prepared, loaded["teacher"], rows, image_size=size,
                            policy=policy, workdir=workdir, write=chief, embeddings=True)
    return RKDModel(loaded["student"], None, train_embeddings=tables["train"],
                    eval_embeddings=tables["validation"], **settings)


def _kd(config, prepared, loaded, rows, size, policy, workdir, chief):
    """kd (eqs. 1-2): KDModel, with the teacher's cached logits or the live teacher."""
    settings = dict(lam=config.kd_lambda, temperature=config.temperature,
                    temperature_squared=config.temperature_squared)
    if config.teacher_mode == "live":
        return KDModel(loaded["student"], loaded["teacher"], **settings)
    tables = teacher_tables(config, prepared, loaded["teacher"], rows, image_size=size,
                            policy=policy, workdir=workdir, write=chief, embeddings=False)
    return KDModel(loaded["student"], None, train_logits=tables["train"],
                   eval_logits=tables["validation"], **settings)


def _triplet(config, prepared, loaded, rows, size, policy, workdir, chief):
    """triplet (eqs. 3-4): TripletModel and the callback that refreshes its mining pools."""
    teacher = loaded["teacher"]
    trainer = TripletModel(loaded["student"], source_shape=prepared.image_shape,
                           image_size=size, occlusion=config.view, lam=config.triplet_lambda,
                           margin=config.margin, reduction=config.triplet_reduction,
                           normalize=config.triplet_normalize, chunk_size=config.mining_chunk_size)
    if config.teacher_mode == "live":
        teacher_embedder = embedding_model(teacher)

        def positives(subset):
            return embed(teacher_embedder, prepared, "train", subset, image_size=size,
                         view="full", batch_size=config.eval_batch_size)
    else:
        cache = teacher_outputs(teacher, prepared, "train", rows, image_size=size,
                                batch_size=config.eval_batch_size,
                                cache_dir=workdir / rundir.CACHE, teacher_path=config.teacher,
                                policy=policy, embeddings=True, verbose=config.verbose,
                                write=chief)
        if config.shuffle_teacher:  # the misalignment control (TrainConfig.shuffle_teacher)
            partner = dict(zip(rows.tolist(), deranged(rows, config.seed).tolist()))

            def positives(subset):
                return cache.embeddings_of(np.array([partner[int(i)] for i in subset], np.int64))
        else:
            positives = cache.embeddings_of
    pools = MiningPools(trainer, prepared, rows=rows, positive_embeddings=positives,
                        seed=config.seed, fraction=config.mining_fraction,
                        batch_size=config.eval_batch_size)
    return trainer, [pools]
