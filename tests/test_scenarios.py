"""Scenarios in the reproduction: each stage's view and run directory (no training here; the
demo runs end to end in the branch's report), and unknown names refused by name."""
import pytest

from fer_distill.reproduce import DEMO, ReproduceConfig, Reproduction
from fer_distill.scenarios import SCENARIOS, scenario


def test_headset_stages_see_its_views_in_their_own_runs(tmp_path):
    paper = Reproduction(ReproduceConfig(workdir=str(tmp_path), preset=DEMO))
    mine = Reproduction(ReproduceConfig(workdir=str(tmp_path), preset=DEMO,
                                        scenario="headset"))
    runs = tmp_path / "runs" / "demo" / "mini"
    for stage in ("teacher", "student", "eyes", "kd", "triplet", "fuse"):
        config = mine.train_config(stage).resolved()
        assert config.view == SCENARIOS["headset"].view(stage)
        if stage == "teacher":  # shared: the same run, the same settings
            assert config == paper.train_config(stage).resolved()
        else:
            assert config.workdir == str(runs / "headset" / stage)
            assert paper.train_config(stage).resolved().workdir == str(runs / stage)
    assert mine.train_config("kd").teacher == str(runs / "teacher" / "model.keras")
    assert mine.train_config("kd").init == str(runs / "headset" / "student" / "model.keras")
    assert mine.layout.flagfile("kd").name == "demo_mini_headset_kd.flags"
    assert mine.layout.flagfile("teacher").name == "demo_mini_teacher.flags"
    assert mine.layout.record.name == "reproduce_headset.json"
    assert paper.layout.record.name == "reproduce.json"
    assert SCENARIOS["mask"].view("student") == "surgical_mask"
    assert SCENARIOS["mask"].view("eyes") == "under_surgical_mask"


def test_unknown_scenario_is_named():
    with pytest.raises(ValueError, match="unknown scenario 'goggles'"):
        scenario("goggles")
    with pytest.raises(ValueError, match="unknown scenario 'goggles'"):
        ReproduceConfig(workdir="w", scenario="goggles").check()


def test_the_binary_runs_the_paper_alone_unless_asked():
    from absl import app, flags
    from absl.testing import flagsaver

    from experiments import reproduce as binary

    with flagsaver.flagsaver():
        flags.FLAGS(["reproduce"])
        assert binary.scenarios_from_flags() == ["paper"]
    with flagsaver.flagsaver(scenarios=["paper", "mask"]):
        assert binary.scenarios_from_flags() == ["paper", "mask"]
    with flagsaver.flagsaver(scenarios=["visor"]):
        with pytest.raises(app.UsageError, match="unknown scenario 'visor'"):
            binary.scenarios_from_flags()
