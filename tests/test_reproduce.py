"""fer_distill.reproduce end to end at a TINY preset (mini, 32x32, a small demo set, a few steps
per stage): every stage in order into the documented layout, an interrupted stage resumed
where it stopped, finished stages skipped (and refused when their settings differ), the
report filled from the real runs, the flagfiles it writes recreating each run, and the
MatConvNet path from .mat files written by `save_matconvnet` from the tiny trained models."""
from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from fer_distill import reproduce as rp
from fer_distill.evaluation.predictions import load_predictions
from fer_distill.train.config import load_config

TINY = rp.Preset(
    name="tiny",
    description="tests: a few steps per stage",
    train={"*": {"image_size": 32, "batch_size": 16, "epochs": 2, "steps_per_epoch": 3,
                 "learning_rate": 0.01, "lr_patience": 1},
           "kd": {"learning_rate": 0.001},
           "triplet": {"learning_rate": 0.0005, "triplet_reduction": "mean",
                       "triplet_lambda": 0.01}},
    demo_sizes={"train": 96, "validation": 32, "test": 40},
    demo_regime="privileged",
    demo_pretrain={"seed": 7, "train": {"image_size": 32, "batch_size": 16, "epochs": 1,
                                        "steps_per_epoch": 2, "learning_rate": 0.01}},
    smoke_scale=True,
)
ROWS = ("teacher", "student", "eyes", "kd", "triplet", "fuse")


class Interrupt(keras.callbacks.Callback):
    """Stops a stage right after its first epoch's checkpoint (it runs after the trainer's)."""

    class Killed(Exception):
        pass

    def on_epoch_end(self, epoch, logs=None):
        raise Interrupt.Killed(f"killed after epoch {epoch + 1}")


def mtimes(workdir, stages):
    return {s: (workdir / "runs/demo/mini" / s / "metrics.json").stat().st_mtime_ns
            for s in stages}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A reproduction interrupted in its kd stage, then run again to the end; returns the
    workdir, what each call printed and the stage records after each."""
    workdir = tmp_path_factory.mktemp("reproduce") / "w"
    config = rp.ReproduceConfig(workdir=str(workdir), preset=TINY, verbose=0)
    printed = {"first": [], "second": []}
    with pytest.raises(Interrupt.Killed):
        rp.reproduce(config, out=printed["first"].append, callbacks={"kd": [Interrupt()]})
    first = json.loads((workdir / "reproduce.json").read_text())["stages"]
    before = mtimes(workdir, ("teacher", "student", "eyes"))
    report = rp.reproduce(config, out=printed["second"].append)
    second = json.loads((workdir / "reproduce.json").read_text())["stages"]
    return {"workdir": workdir, "config": config, "printed": printed, "first": first,
            "second": second, "before": before, "report": report}


def test_stages_run_in_order_into_the_documented_layout(pipeline):
    workdir = pipeline["workdir"]
    runs = workdir / "runs" / "demo" / "mini"
    assert (workdir / "data" / "prepared" / "demo" / "summary.json").is_file()
    for stage in ROWS:
        assert (runs / stage / "metrics.json").is_file(), stage
        assert (workdir / "flags" / f"demo_mini_{stage}.flags").is_file()
    assert (runs / "fuse" / "fusion").is_dir()
    for view, short in (("lower_half_visible", "lower"), ("upper_half_visible", "upper")):
        assert (runs / "teacher" / "evaluation" / f"test_{view}.json").is_file()
        assert (workdir / "flags" / f"demo_mini_teacher_on_{short}.flags").is_file()
    assert list(pipeline["second"]) == list(rp.DEFAULT_STAGES)  # ours (rkd, hint): on request
    for name in ("table_i.md", "table_i.csv", "table_i.json"):
        assert (workdir / "report" / name).is_file()
    # Figure 3 of the fused model, one test face per class
    assert pipeline["second"]["figure"]["status"] == "done"
    assert pipeline["second"]["figure"]["model"] == "fuse"
    png = (workdir / "report" / "figure3_gradcam.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the start of the output and the report both say what the demo is
    assert "SYNTHETIC SMOKE-SCALE RUN" in pipeline["printed"]["first"][0]
    assert "SYNTHETIC DEMO DATA" in pipeline["printed"]["second"][-1].splitlines()[2]
    assert pipeline["printed"]["second"][-1].startswith("# Table I")  # the table comes last


def test_the_interrupted_stage_resumes_and_finished_ones_are_skipped(pipeline):
    workdir, first, second = pipeline["workdir"], pipeline["first"], pipeline["second"]
    kd = workdir / "runs" / "demo" / "mini" / "kd"
    assert [first[s]["status"] for s in ("prepare", "teacher", "student", "eyes")] == [
        "done"] * 4
    assert first["kd"]["status"] == "interrupted" and "triplet" not in first
    assert first["kd"]["error"] == "Killed: killed after epoch 1"
    assert [second[s]["status"] for s in ("prepare", "teacher", "student", "eyes")] == [
        "finished earlier"] * 4
    assert second["kd"]["status"] == "resumed"
    assert second["triplet"]["status"] == second["fuse"]["status"] == "done"
    assert mtimes(workdir, ("teacher", "student", "eyes")) == pipeline["before"]  # untouched
    environment = json.loads((kd / "environment.json").read_text())
    assert len(environment["earlier_sessions"]) == 1  # the interrupted session
    metrics = json.loads((kd / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]  # epoch 1 not trained again


def test_report_is_filled_from_the_real_runs(pipeline):
    report = pipeline["report"]
    workdir = pipeline["workdir"]
    assert report["synthetic"] and [t["id"] for t in report["tables"]] == ["demo/mini"]
    rows = {r["key"]: r["cells"]["demo"] for r in report["tables"][0]["rows"]}
    assert len(rows) == 8 and all(c["status"] == "ok" for c in rows.values())
    for stage in ROWS:
        view = load_config(workdir / "runs/demo/mini" / stage / "config.json").view
        cell = rows[f"mini/{stage}/{view}"]
        metrics = json.loads((workdir / "runs/demo/mini" / stage / "metrics.json").read_text())
        assert cell["accuracy"] == round(100 * metrics["test"]["accuracy"], 2)
        assert cell["run_dir"] == str(workdir / "runs/demo/mini" / stage)
        assert cell["flagfile"] == str(workdir / "flags" / f"demo_mini_{stage}.flags")
    lower = rows["mini/teacher/lower_half_visible"]
    assert lower["flagfile"] == str(workdir / "flags" / "demo_mini_teacher_on_lower.flags")
    saved = load_predictions(workdir / "runs/demo/mini/teacher/predictions"
                             / "test_lower_half_visible.npz")
    assert lower["accuracy"] == round(100 * float(np.mean(saved["pred"] == saved["label"])), 2)
    for stage in ("kd", "triplet", "fuse"):
        test = rows[f"mini/{stage}/lower_half_visible"]["mcnemar"]
        assert test["n"] == saved["label"].size and "exact" in test["method"]


def test_the_written_flagfiles_recreate_each_run(pipeline):
    from absl import flags
    from absl.testing import flagsaver

    from experiments import train

    workdir = pipeline["workdir"]
    for stage in ROWS:
        flagfile = workdir / "flags" / f"demo_mini_{stage}.flags"
        with flagsaver.flagsaver():
            flags.FLAGS(["train", f"--flagfile={flagfile}"])
            config = train.config_from_flags()
        recorded = load_config(workdir / "runs/demo/mini" / stage / "config.json")
        assert config.resolved().differences(recorded.resolved()) == {}, stage


def test_a_third_run_repeats_nothing_and_other_settings_are_refused(pipeline):
    workdir, config = pipeline["workdir"], pipeline["config"]
    before = mtimes(workdir, ROWS)
    evaluation = workdir / "runs/demo/mini/teacher/evaluation/test_full.json"
    stamp = evaluation.stat().st_mtime_ns
    rp.reproduce(config, out=lambda line: None)
    stages = json.loads((workdir / "reproduce.json").read_text())["stages"]
    assert all(stages[s]["status"] == "finished earlier" for s in ROWS)
    assert stages["evaluate"]["status"] == "finished earlier" and not stages["evaluate"][
        "evaluated"]
    assert mtimes(workdir, ROWS) == before and evaluation.stat().st_mtime_ns == stamp

    changed = dataclasses.replace(config, overrides={"student": {"epochs": 3}})
    with pytest.raises(ValueError, match=r"finished with other settings \(epochs: 3 now, 2"):
        rp.reproduce(changed, out=lambda line: None)


def test_matconvnet_path_converts_teacher_student_and_kd_then_trains_the_tf_stage(
        pipeline, tmp_path):
    from fer_distill.models import load_model
    from experiments.matconvnet_writer import save_matconvnet
    from fer_distill.models.matconvnet import load_matconvnet

    source = pipeline["workdir"] / "runs/demo/mini"
    mats = {}
    for stage in ("teacher", "student", "kd"):
        mats[stage] = tmp_path / f"{stage}.mat"
        save_matconvnet(load_model(source / stage / "model.keras", compile=False), mats[stage])
    workdir = tmp_path / "w"
    config = rp.ReproduceConfig(
        workdir=str(workdir), data=str(pipeline["workdir"] / "data/prepared/demo"),
        from_matconvnet_teacher=str(mats["teacher"]),
        from_matconvnet_student=str(mats["student"]),
        from_matconvnet_kd_student=str(mats["kd"]), preset=TINY, verbose=0)
    printed = []
    report = rp.reproduce(config, out=printed.append)
    assert "MatConvNet path" in printed[0]
    runs = workdir / "runs/demo/mini"
    stages = json.loads((workdir / "reproduce.json").read_text())["stages"]
    assert stages["prepare"]["status"] == "given"
    assert stages["eyes"]["status"] == "not part of this path"
    for stage in ("teacher", "student", "kd"):
        recorded = json.loads((runs / stage / "config.json").read_text())
        metrics = json.loads((runs / stage / "metrics.json").read_text())
        assert recorded["init"] == str(mats[stage]) and recorded["epochs"] == 0
        assert metrics["epochs_run"] == 0  # converted, not trained
        converted = load_matconvnet(mats[stage]).get_weights()
        mine = load_model(runs / stage / "model.keras", compile=False).get_weights()
        for mine, theirs in zip(mine, converted):
            np.testing.assert_array_equal(mine, theirs)
        # the converted network answers like the Keras network it was written from
        original = json.loads((source / stage / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] == pytest.approx(original["test"]["accuracy"],
                                                            abs=1.5 / 40)
    triplet = json.loads((runs / "triplet" / "metrics.json").read_text())
    assert triplet["epochs_run"] == 2
    assert json.loads((runs / "triplet" / "config.json").read_text())["init"] == str(
        runs / "student" / "model.keras")
    assert (runs / "fuse" / "fusion").is_dir()
    rows = {r["key"]: r["cells"]["demo"] for r in report["tables"][0]["rows"]}
    assert rows["mini/eyes/upper_half_visible"]["status"] == "not run"
    assert rows["mini/teacher/upper_half_visible"]["status"] == "ok"
    assert rows["mini/fuse/lower_half_visible"]["mcnemar"] is not None


def test_settings_that_cannot_work_are_refused_before_any_stage(tmp_path):
    def check(**kwargs):
        rp.ReproduceConfig(workdir=str(tmp_path / "w"), **kwargs).check()

    with pytest.raises(ValueError, match="needs the raw release"):
        check(dataset="ferplus", arch="vgg_face")
    with pytest.raises(ValueError, match="give --pretrained"):
        check(dataset="demo", arch="vgg_f")
    with pytest.raises(ValueError, match="needs both"):
        check(from_matconvnet_teacher=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--raw="):
        check(dataset="ferplus", arch="mini", raw=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not training settings"):
        check(overrides={"kd": {"epoch": 3}})
    with pytest.raises(ValueError, match="set by the reproduction itself"):
        check(overrides={"*": {"init": "x.keras"}})
    with pytest.raises(ValueError, match="unknown stages"):
        check(overrides={"distill": {"epochs": 3}})
    with pytest.raises(ValueError, match="stages must be"):
        check(stages=("train",))
    with pytest.raises(ValueError, match="stage kd: config: min_learning_rate 1.0 is above"):
        rp.reproduce(rp.ReproduceConfig(workdir=str(tmp_path / "w"), preset=TINY,
                                        overrides={"kd": {"min_learning_rate": 1.0}}))
    assert not (tmp_path / "w").exists()  # nothing was written


def test_a_new_starting_rate_keeps_the_presets_floor_ratio(tmp_path):
    config = rp.ReproduceConfig(workdir=str(tmp_path), preset=rp.DEMO,
                                overrides={"*": {"learning_rate": 0.02},
                                           "kd": {"min_learning_rate": 0.0001}})
    reproduction = rp.Reproduction(config)
    teacher, kd = reproduction.train_config("teacher"), reproduction.train_config("kd")
    assert (teacher.learning_rate, teacher.min_learning_rate) == (0.02, pytest.approx(0.0002))
    assert (kd.learning_rate, kd.min_learning_rate) == (0.02, 0.0001)
    assert teacher.epochs == rp.DEMO.settings("teacher")["epochs"]


def test_our_distillers_are_optional_stages_wired_like_kd(tmp_path):
    assert not set(rp.OPTIONAL_STAGES) & set(rp.DEFAULT_STAGES)
    reproduction = rp.Reproduction(rp.ReproduceConfig(workdir=str(tmp_path), preset=rp.DEMO,
                                                      stages=("rkd", "hint", "report")))
    kd = reproduction.train_config("kd")
    for stage in rp.OPTIONAL_STAGES:
        config = reproduction.train_config(stage)
        assert (config.stage, config.init, config.teacher) == (stage, kd.init, kd.teacher)
        assert (config.epochs, config.learning_rate) == (kd.epochs, kd.learning_rate)


def test_train_flagfile_lists_wiring_and_non_defaults_only():
    from fer_distill.train import TrainConfig

    text = rp.train_flagfile(TrainConfig(stage="kd", arch="mini", data="d", workdir="w",
                                         init="s.keras", teacher="t.keras", epochs=3,
                                         temperature_squared=True, verbose=0, resume=True),
                             header="title\nline two")
    assert text.splitlines() == ["# title", "# line two", "--stage=kd", "--arch=mini",
                                 "--data=d", "--workdir=w", "--init=s.keras",
                                 "--teacher=t.keras", "--epochs=3", "--temperature_squared"]


def test_the_demo_pretrains_its_own_start_and_the_report_shows_transfer(pipeline):
    workdir = pipeline["workdir"]
    pretrained = workdir / rp.PRETRAINED_DIR / "run" / "model.keras"
    assert pretrained.is_file()
    data = json.loads((workdir / "data" / "prepared" / "demo" / "summary.json").read_text())
    assert data["source"]["regime"] == "privileged"
    for stage in ("teacher", "student", "eyes"):
        config = load_config(workdir / "runs/demo/mini" / stage / "config.json")
        assert config.init == str(pretrained) and config.head == "new"
    report = pipeline["report"]
    assert not any("several runs" in w for w in report["warnings"])  # pretrain is no row
    cells = {row["key"]: cell for table in report["tables"] for row in table["rows"]
             for cell in row["cells"].values()}
    moved = {key: cell["transfer"] for key, cell in cells.items() if cell["transfer"]}
    assert {"mini/student/lower_half_visible", "mini/kd/lower_half_visible",
            "mini/triplet/lower_half_visible"} <= set(moved)
    assert all(t["kl"] >= 0 and 0 <= t["agreement"] <= 1 for t in moved.values())
    assert "## Transfer: how close each student is to its teacher" in pipeline["printed"][
        "second"][-1]
