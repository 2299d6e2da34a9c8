"""The ResNet-50 flagfiles: one per Table I stage and data set, each parsing into the settings
the code resolves for resnet50 (our documented choices), chained run directory to run
directory like the VGG ones."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import evaluate as evaluate_binary
from experiments import train as binary
from fer_distill.train import paper_defaults

FLAGS = flags.FLAGS
CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
STAGES = ("teacher", "student", "eyes", "kd", "triplet", "fuse")
ROWS = [(d, s) for d in ("ferplus", "affectnet") for s in STAGES]


@pytest.mark.parametrize("dataset, stage", ROWS)
def test_resnet50_training_flagfiles(dataset, stage):
    path = CONFIGS / f"{dataset}_resnet50_{stage}.flags"
    text = path.read_text(encoding="utf-8")
    assert f"python -m experiments.train --flagfile=experiments/configs/{path.name}" in text
    if stage != "fuse":
        assert "our choice" in text  # the rates are ours, and the file says so
    with flagsaver.flagsaver():
        FLAGS(["train", f"--flagfile={path}"])
        config = binary.config_from_flags()
    runs = f"runs/{dataset}/resnet50"
    assert (config.stage, config.arch, config.data) == (stage, "resnet50",
                                                         f"data/prepared/{dataset}")
    assert config.workdir == f"{runs}/{stage}"
    if stage in ("teacher", "student", "eyes"):
        assert config.init == "pretrained/imagenet-resnet-50-dag.mat"
    elif stage in ("kd", "triplet"):
        assert (config.init, config.teacher) == (f"{runs}/student/model.keras",
                                                 f"{runs}/teacher/model.keras")
    else:
        assert (config.kd_student, config.triplet_student) == (f"{runs}/kd/model.keras",
                                                               f"{runs}/triplet/model.keras")
    for key, value in paper_defaults(stage, "resnet50").items():
        assert getattr(config, key) == value, key
    if stage != "fuse":
        assert dataclasses.replace(config.resolved(), eval_batch_size=None, view=None) == config


@pytest.mark.parametrize("dataset", ["ferplus", "affectnet"])
@pytest.mark.parametrize("short, view", [("lower", "lower_half_visible"),
                                         ("upper", "upper_half_visible")])
def test_resnet50_teacher_evaluation_flagfiles(dataset, short, view):
    path = CONFIGS / f"{dataset}_resnet50_teacher_on_{short}.flags"
    with flagsaver.flagsaver():
        FLAGS(["evaluate", f"--flagfile={path}"])
        config = evaluate_binary.config_from_flags(["evaluate", f"--flagfile={path}"])
    assert config.model == f"runs/{dataset}/resnet50/teacher"
    assert (config.views, config.split) == ((view,), "test")
