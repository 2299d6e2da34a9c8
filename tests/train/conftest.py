"""Fixtures for the training tests; the first three are meant for the whole suite.

- `demo_data`: a small prepared demo data set (FER+ formats through the FER+ code path, 48x48
  grey, about 225 / 56 / 56 images after the majority vote), made once per session.
- `mini_config`: a factory of TrainConfigs for `mini` at 32x32 with a handful of steps.
- `trained_runs`: run directories of a tiny teacher and student trained on `demo_data`
  (`model.keras` in each), and of the KD and triplet students distilled from them.

Everything is sized so the training tests stay within a few minutes on 2 CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import pytest

DEMO_SIZES = {"train": 256, "validation": 64, "test": 64}
# Small runs: 3 epochs of 7 steps of 32 images (the demo's training split has ~225 images).
SMALL = dict(arch="mini", image_size=32, epochs=3, batch_size=32, verbose=0,
             keep_checkpoints=3)
# Learning rates for the small runs. The triplet term is a SUM over the batch of distances
# between 64-d relu7 embeddings, so its rate must be far below the CE stages' (as in the paper).
SMALL_RATES = {"teacher": 1e-3, "student": 1e-3, "eyes": 1e-3, "kd": 3e-3, "triplet": 1e-6}


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from fer_distill.data.demo import prepare_demo

    out = tmp_path_factory.mktemp("demo") / "prepared"
    prepare_demo(out, sizes=DEMO_SIZES, seed=0)
    return out


@pytest.fixture(scope="session")
def mini_config(demo_data):
    """mini_config(stage, workdir, **overrides) -> a small TrainConfig on `demo_data`."""
    from fer_distill.train import TrainConfig

    def make(stage: str, workdir, **overrides) -> TrainConfig:
        values = {**SMALL, "learning_rate": SMALL_RATES.get(stage), "data": str(demo_data)}
        if stage == "fuse":
            values.pop("learning_rate")
        values.update(overrides)
        return TrainConfig(stage=stage, workdir=str(workdir), **values)

    return make


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, mini_config) -> dict[str, Path]:
    """{"teacher", "student", "kd", "triplet"}: finished run directories (see module doc);
    "init": the random mini network teacher and student start from."""
    from fer_distill.train import run

    import keras

    from fer_distill.models import mini

    root = tmp_path_factory.mktemp("runs")
    runs = {stage: root / stage for stage in ("teacher", "student", "kd", "triplet")}
    # Teacher and student fine-tune from one saved random network (as both start from one
    # pretrained network in the paper), so tests can compare a run's loss with its start.
    keras.utils.set_random_seed(0)
    runs["init"] = root / "init.keras"
    mini(8, 32).save(runs["init"])
    run(mini_config("teacher", runs["teacher"], init=str(runs["init"])))
    run(mini_config("student", runs["student"], init=str(runs["init"])))
    sources = dict(init=str(runs["student"] / "model.keras"),
                   teacher=str(runs["teacher"] / "model.keras"))
    # lr_patience=1: the plateau rule acts within three epochs, so resume tests see its state.
    run(mini_config("kd", runs["kd"], lr_patience=1, **sources))
    run(mini_config("triplet", runs["triplet"], lr_patience=1, min_learning_rate=1e-7,
                    **sources))
    return runs
