"""The rkd and hint flagfiles (ours): one per data set and paper-sized network, marked as not
in the paper, parsing into the settings the code resolves, chained to the student baseline
and the teacher like the kd ones."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import train as binary
from fer_distill.distill.hint import HINT_LAYERS
from fer_distill.train import paper_defaults

FLAGS = flags.FLAGS
CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
ROWS = [(d, a, s) for d in ("ferplus", "affectnet") for a in ("vgg_f", "vgg_face", "resnet50")
        for s in ("rkd", "hint")]


@pytest.mark.parametrize("dataset, arch, stage", ROWS)
def test_distiller_flagfiles(dataset, arch, stage):
    path = CONFIGS / f"{dataset}_{arch}_{stage}.flags"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Ours, not in the paper") and "our choice" in text
    assert f"python -m experiments.train --flagfile=experiments/configs/{path.name}" in text
    with flagsaver.flagsaver():
        FLAGS(["train", f"--flagfile={path}"])
        config = binary.config_from_flags()
    runs = f"runs/{dataset}/{arch}"
    assert (config.stage, config.arch, config.data) == (stage, arch, f"data/prepared/{dataset}")
    assert (config.workdir, config.init, config.teacher) == (
        f"{runs}/{stage}", f"{runs}/student/model.keras", f"{runs}/teacher/model.keras")
    for key, value in paper_defaults(stage, arch).items():
        if key != "hint_layer":
            assert getattr(config, key) == value, key
    # scheduled like kd (our choice)
    kd = paper_defaults("kd", arch)
    for key in ("epochs", "batch_size", "learning_rate", "min_learning_rate", "weight_decay"):
        assert getattr(config, key) == kd[key], key
    if stage == "hint":
        assert config.hint_layer == HINT_LAYERS[arch]
    assert dataclasses.replace(config.resolved(), eval_batch_size=None, view=None) == config
