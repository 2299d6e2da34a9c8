"""The flagfiles of our occlusion scenarios (headset, mask): each one is its Table I twin with
the scenario's view and run directories of its own, and the teacher is Table I's."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import evaluate as evaluate_binary
from experiments import train as binary
from fer_distill.scenarios import SCENARIOS

FLAGS = flags.FLAGS
CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
OURS = [s for s in SCENARIOS.values() if s.ours]
GROUPS = [(d, a) for d in ("ferplus", "affectnet") for a in ("vgg_f", "vgg_face", "resnet50")]


def _train_config(path):
    with flagsaver.flagsaver():
        FLAGS(["train", f"--flagfile={path}"])
        return binary.config_from_flags()


@pytest.mark.parametrize("scenario", OURS, ids=lambda s: s.name)
@pytest.mark.parametrize("dataset, arch", GROUPS)
def test_scenario_flagfiles_mirror_table_i(scenario, dataset, arch):
    runs = f"runs/{dataset}/{arch}"
    mine = f"{runs}/{scenario.name}"
    for stage in ("student", "eyes", "kd", "triplet", "fuse"):
        path = CONFIGS / f"{dataset}_{arch}_{scenario.name}_{stage}.flags"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# Scenario {scenario.name!r}") and "OURS" in text
        config = _train_config(path)
        paper = _train_config(CONFIGS / f"{dataset}_{arch}_{stage}.flags")
        assert (config.view, config.workdir) == (scenario.view(stage), f"{mine}/{stage}")
        moved = {"view": config.view, "workdir": config.workdir}
        if stage in ("kd", "triplet"):
            assert (config.init, config.teacher) == (f"{mine}/student/model.keras",
                                                     f"{runs}/teacher/model.keras")
            moved["init"] = config.init
        if stage == "fuse":
            moved.update(kd_student=config.kd_student, triplet_student=config.triplet_student)
            assert config.kd_student == f"{mine}/kd/model.keras"
        # everything else is the Table I stage's
        assert dataclasses.replace(paper, **moved) == config
    for view in (scenario.student_view, scenario.other_view):
        path = CONFIGS / f"{dataset}_{arch}_{scenario.name}_teacher_on_{view}.flags"
        argv = ["evaluate", f"--flagfile={path}"]
        with flagsaver.flagsaver():
            FLAGS(argv)
            config = evaluate_binary.config_from_flags(argv)
        assert (config.model, config.views) == (f"{runs}/teacher", (view,))
