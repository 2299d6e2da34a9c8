"""`fer_distill.train.run` end to end on the small demo set: the run-directory contract, each
stage lowering its loss, fusion, resume, NaN stop, reuse rules and the errors raised before any
training starts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from fer_distill.data.prepared import read_prepared
from fer_distill.evaluation.predictions import load_predictions, predict_split
from fer_distill.train import NonFiniteLoss, run
from fer_distill.train.callbacks import checkpoints

VIEWS = {"teacher": "full", "student": "lower_half_visible", "kd": "lower_half_visible",
         "triplet": "lower_half_visible"}


def _load(path):
    import fer_distill.models  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path, compile=False)


def _weights_close(a, b, **tolerance):
    for wa, wb in zip(_load(a).get_weights(), _load(b).get_weights()):
        np.testing.assert_allclose(wa, wb, **tolerance)


class Interrupt(keras.callbacks.Callback):
    """Kills a run right after epoch `after`'s checkpoint was written (it runs last)."""

    class Killed(Exception):
        pass

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise Interrupt.Killed(f"killed after epoch {self.after}")


# ------------------------------------------------------------------------------------------
# the run directory
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["teacher", "student", "kd", "triplet"])
def test_run_directory_holds_what_design_promises(trained_runs, demo_data, stage):
    rundir = trained_runs[stage]
    view = VIEWS[stage]
    config = json.loads((rundir / "config.json").read_text())
    assert config["stage"] == stage and config["arch"] == "mini" and config["view"] == view
    assert config["dataset"] == "demo" and len(config["class_names"]) == 8
    assert config["image_size"] == 32 and config["epochs"] == 3 and config["batch_size"] == 32
    assert config["momentum"] == 0.9 and config["data"] == str(demo_data)
    if stage in ("kd", "triplet"):
        assert config["teacher"].endswith("teacher/model.keras")
        assert config["init"].endswith("student/model.keras")

    env = json.loads((rundir / "environment.json").read_text())
    for key in ("version", "git_commit", "tensorflow", "keras", "python", "devices", "seed"):
        assert key in env
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])

    assert any("tfevents" in p.name for p in (rundir / "logs").rglob("*"))
    assert [p.name for p in checkpoints(rundir / "checkpoints")] == [
        "epoch-0001", "epoch-0002", "epoch-0003"]

    model = _load(rundir / "model.keras")
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 8)
    loaded = keras.saving.load_model(rundir / "model.keras")
    assert getattr(loaded, "optimizer", None) is None  # saved without training state
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)

    metrics = json.loads((rundir / "metrics.json").read_text())
    assert (metrics["stage"], metrics["arch"], metrics["dataset"], metrics["view"]) == (
        stage, "mini", "demo", view)
    assert metrics["epochs_run"] == 3 and len(metrics["history"]) == 3
    assert metrics["train_seconds"] > 0
    prepared = read_prepared(demo_data)
    for split in ("validation", "test"):
        path = rundir / "predictions" / f"{split}_{view}.npz"
        assert metrics["predictions"][split] == str(path.relative_to(rundir))
        predictions = load_predictions(path)
        np.testing.assert_array_equal(predictions["label"], prepared.labels(split))
        np.testing.assert_array_equal(predictions["pred"], predictions["probs"].argmax(1))
        assert metrics[split]["accuracy"] == pytest.approx(
            np.mean(predictions["pred"] == predictions["label"]))
    # metrics.json is written last: its presence means everything else is complete.
    newest = max(p.stat().st_mtime_ns for p in rundir.rglob("*") if p.is_file()
                 and p.name != "metrics.json" and "logs" not in p.parts)
    assert (rundir / "metrics.json").stat().st_mtime_ns >= newest


def _logits(model, prepared, view):
    from fer_distill.data.pipeline import make_dataset

    key, occlusion = ("full", "lower_half_visible") if view == "full" else ("occluded", view)
    data = make_dataset(prepared, "train", image_size=32, batch_size=64, training=False,
                        views=(key,), occlusion=occlusion)
    return model.predict(data.map(lambda b: b[key]), verbose=0)


@pytest.mark.parametrize("stage", ["teacher", "student", "kd"])
def test_a_few_steps_of_each_stage_lower_the_loss(trained_runs, demo_data, stage):
    """The stage's own loss over the whole training split is lower for the trained model than
    for the network it started from (teacher, student: CE in their view; kd: eq. 1 against the
    teacher's full-view logits). The triplet stage is checked on fixed pools in
    tests/distill/test_triplet_model.py (its epochs mine different pools)."""
    import tensorflow as tf

    from fer_distill.distill.kd import kd_loss

    prepared = read_prepared(demo_data)
    labels = prepared.labels("train")
    start = trained_runs["student"] if stage == "kd" else trained_runs["init"]
    if stage == "kd":
        start = start / "model.keras"
    view = VIEWS[stage]
    if stage == "kd":
        teacher = _logits(_load(trained_runs["teacher"] / "model.keras"), prepared, "full")

        def loss(path):
            return float(kd_loss(labels, _logits(_load(path), prepared, view), teacher, lam=0.7,
                                 temperature=20.0, temperature_squared=False))
    else:
        def loss(path):
            return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, _logits(_load(path), prepared, view))))
    before, after = loss(start), loss(trained_runs[stage] / "model.keras")
    assert after < before


def test_saved_predictions_are_the_saved_models(trained_runs, demo_data):
    prepared = read_prepared(demo_data)
    model = _load(trained_runs["student"] / "model.keras")
    again = predict_split(model, prepared, "test", "lower_half_visible", batch_size=7)
    saved = load_predictions(trained_runs["student"] / "predictions" /
                             "test_lower_half_visible.npz")
    np.testing.assert_array_equal(again["pred"], saved["pred"])
    np.testing.assert_allclose(again["probs"], saved["probs"], atol=1e-5)


# ------------------------------------------------------------------------------------------
# fusion
# ------------------------------------------------------------------------------------------

def test_fuse_stage_trains_and_evaluates_the_svm(trained_runs, mini_config, demo_data,
                                                 tmp_path):
    from fer_distill.distill.fusion import FusionSVM
    from fer_distill.distill.triplet_model import embed
    from fer_distill.models import embedding_model

    kd, triplet = trained_runs["kd"] / "model.keras", trained_runs["triplet"] / "model.keras"
    workdir = tmp_path / "fuse"
    metrics = run(mini_config("fuse", workdir, kd_student=str(kd), triplet_student=str(triplet)))
    config = json.loads((workdir / "config.json").read_text())
    assert config["kd_student"] == str(kd) and config["triplet_student"] == str(triplet)
    assert config["svm_c"] == 1.0 and config["view"] == "lower_half_visible"
    assert not (workdir / "model.keras").exists()

    svm = FusionSVM.load(workdir / "fusion")
    prepared = read_prepared(demo_data)
    rows = np.arange(prepared.count("test"))
    features = [embed(embedding_model(_load(p)), prepared, "test", rows, image_size=32,
                      view="lower_half_visible", batch_size=16) for p in (kd, triplet)]
    saved = load_predictions(workdir / "predictions" / "test_lower_half_visible.npz")
    np.testing.assert_array_equal(saved["pred"], svm.predict(*features))
    np.testing.assert_array_equal(saved["pred"], saved["scores"].argmax(1))
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(saved["pred"] == saved["label"]))
    assert metrics["svm"]["C"] == 1.0 and metrics["stage"] == "fuse"


# ------------------------------------------------------------------------------------------
# resume
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, after", [("kd", 2), ("triplet", 1)])
def test_resumed_run_ends_where_the_uninterrupted_one_did(trained_runs, mini_config, tmp_path,
                                                          stage, after):
    """Killed after an epoch and resumed, a run matches the uninterrupted reference run: same
    weights, optimizer variables (momenta, lr, iteration), plateau state (best, wait) and
    per-epoch history. The data order and (triplet) the mining subsets must be restored for the
    weights to match (checked: breaking either fails this test). kd resumes after epoch 2, where
    the reference's best validation accuracy is not the next epoch's, so a lost plateau state
    shows in `best`. The teacher cache is reused, not recomputed; the teacher file is never
    written."""
    reference = trained_runs[stage]
    extra = {"min_learning_rate": 1e-7} if stage == "triplet" else {}
    config = mini_config(stage, tmp_path / stage, lr_patience=1,
                         init=str(trained_runs["student"] / "model.keras"),
                         teacher=str(trained_runs["teacher"] / "model.keras"), **extra)
    teacher_bytes = (trained_runs["teacher"] / "model.keras").read_bytes()
    with pytest.raises(Interrupt.Killed):
        run(config, callbacks=[Interrupt(after=after)])
    workdir = Path(config.workdir)
    assert not (workdir / "metrics.json").exists() and not (workdir / "model.keras").exists()
    cache = workdir / "cache" / "teacher-train" / "logits.npy"
    cached_at = cache.stat().st_mtime_ns

    import dataclasses

    metrics = run(dataclasses.replace(config, resume=True))
    assert cache.stat().st_mtime_ns == cached_at
    assert metrics["epochs_run"] == 3
    _weights_close(workdir / "model.keras", reference / "model.keras", rtol=1e-5, atol=1e-6)
    last = "checkpoints/epoch-0003"
    mine = json.loads((workdir / last / "state.json").read_text())
    theirs = json.loads((reference / last / "state.json").read_text())
    assert mine["callbacks"]["plateau"]["wait"] == theirs["callbacks"]["plateau"]["wait"]
    assert mine["callbacks"]["plateau"]["best"] == pytest.approx(
        theirs["callbacks"]["plateau"]["best"])
    assert mine["learning_rate"] == pytest.approx(theirs["learning_rate"])
    with np.load(workdir / last / "optimizer.npz") as a, np.load(reference / last /
                                                                 "optimizer.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    for ours, reference_epoch in zip(mine["history"], theirs["history"]):
        assert ours["loss"] == pytest.approx(reference_epoch["loss"], rel=1e-5)
        assert ours["learning_rate"] == pytest.approx(reference_epoch["learning_rate"])
    # the environment of the first session is kept
    environment = json.loads((workdir / "environment.json").read_text())
    assert len(environment["earlier_sessions"]) == 1
    assert (trained_runs["teacher"] / "model.keras").read_bytes() == teacher_bytes


# ------------------------------------------------------------------------------------------
# reuse rules, NaN
# ------------------------------------------------------------------------------------------

def test_finished_run_is_reported_not_rerun(trained_runs, mini_config):
    rundir = trained_runs["teacher"]
    stamps = {p: p.stat().st_mtime_ns for p in (rundir / "model.keras", rundir / "metrics.json")}
    metrics = run(mini_config("teacher", rundir))
    assert metrics == json.loads((rundir / "metrics.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_reuse_rules_for_unfinished_foreign_and_overwritten_directories(mini_config, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a run directory"):
            run(mini_config("student", foreign, overwrite=overwrite))
    assert (foreign / "notes.txt").read_text() == "mine"

    workdir = tmp_path / "student"
    config = mini_config("student", workdir, epochs=1, steps_per_epoch=2)
    first = run(config)
    (workdir / "metrics.json").unlink()  # now it looks like an interrupted run
    with pytest.raises(ValueError, match="unfinished run; pass --resume"):
        run(config)
    import dataclasses

    with pytest.raises(ValueError, match="learning_rate: 0.001 before, 0.5 now"):
        run(dataclasses.replace(config, resume=True, learning_rate=0.5))
    second = run(dataclasses.replace(config, overwrite=True))
    assert second["epochs_run"] == first["epochs_run"] == 1
    assert second["test"]["accuracy"] == pytest.approx(first["test"]["accuracy"])


def test_nan_loss_stops_the_run_without_results(mini_config, tmp_path):
    workdir = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match="loss became (nan|inf).*no model.keras"):
        run(mini_config("student", workdir, learning_rate=1e12))
    assert (workdir / "config.json").exists()
    assert not (workdir / "model.keras").exists() and not (workdir / "metrics.json").exists()


# ------------------------------------------------------------------------------------------
# errors before any training
# ------------------------------------------------------------------------------------------

def _save(model, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """Networks that must be refused: another architecture, 7 classes, 48x48 inputs."""
    from fer_distill.models import mini
    from fer_distill.models import simplenn
    from fer_distill.models.mini import layers as mini_layers

    root = tmp_path_factory.mktemp("odd")
    claims_vgg_f = simplenn.build_chain(mini_layers(), input_shape=(32, 32, 3), name="vgg_f",
                                        average_image=(128.0, 128.0, 128.0))
    return {"vgg_f": _save(claims_vgg_f, root / "vgg_f.keras"),
            "seven": _save(mini(7, 32), root / "seven.keras"),
            "big": _save(mini(8, 48), root / "big.keras")}


@pytest.mark.parametrize("case, error, message", [
    ("teacher_arch", ValueError, "holds a vgg_f network, but this run is mini"),
    ("teacher_classes", ValueError, "fc8 has 7 outputs, the data set has 8 classes"),
    ("init_classes", ValueError, "fc8 has 7 outputs, the data set has 8 classes"),
    ("teacher_size", ValueError, r"takes 48x48 images; this run's input size is 32x32 \(from "
                                 r"the init \(student\) file"),
    ("init_size", ValueError, r"teacher file .* takes 32x32 images; this run's input size is "
                              r"48x48 \(from the init \(student\) file .*big.keras\)"),
    ("teacher_missing", FileNotFoundError, "teacher file .*nowhere.keras not found"),
    ("init_missing", FileNotFoundError, r"init \(student\) file .*nowhere.keras not found"),
    ("teacher_other_classes", ValueError, "was trained on classes"),
])
def test_bad_networks_are_refused_before_training(trained_runs, mini_config, odd_models,
                                                  tmp_path, case, error, message):
    teacher = str(trained_runs["teacher"] / "model.keras")
    init = str(trained_runs["student"] / "model.keras")
    if case == "teacher_arch":
        teacher = odd_models["vgg_f"]
    elif case == "teacher_classes":
        teacher = odd_models["seven"]
    elif case == "init_classes":
        init = odd_models["seven"]
    elif case == "teacher_size":
        teacher = odd_models["big"]
    elif case == "init_size":
        init = odd_models["big"]
    elif case == "teacher_missing":
        teacher = str(tmp_path / "nowhere.keras")
    elif case == "init_missing":
        init = str(tmp_path / "nowhere.keras")
    elif case == "teacher_other_classes":
        other = tmp_path / "other_run"
        other.mkdir()
        (other / "model.keras").write_bytes(Path(teacher).read_bytes())
        (other / "config.json").write_text(json.dumps({"class_names": list("abcdefgh")}))
        teacher = str(other / "model.keras")
    workdir = tmp_path / "kd"
    with pytest.raises(error, match=message):
        run(mini_config("kd", workdir, init=init, teacher=teacher))
    assert not workdir.exists()


def test_unusable_data_and_settings_are_refused(mini_config, tmp_path):
    from fer_distill.data.prepared import PreparedWriter

    data = tmp_path / "manifest_only"
    with PreparedWriter(data, dataset="demo", image_shape=(48, 48, 1),
                        manifest_only=True) as writer:
        for split in ("train", "validation", "test"):
            writer.add_split(split, [0, 1], ["a.png", "b.png"])
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="manifest-only"):
        run(mini_config("student", workdir, data=str(data)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(mini_config("student", workdir, data=str(tmp_path / "absent")))
    with pytest.raises(ValueError, match="give --init"):
        run(mini_config("teacher", workdir, arch="vgg_face", image_size=None))
    with pytest.raises(ValueError, match="cannot fill one batch of 4096"):
        run(mini_config("teacher", workdir, batch_size=4096))
    assert not workdir.exists()


def test_fine_tuning_from_a_matconvnet_network_with_another_head(mini_config, tmp_path):
    """The paper's path: a pretrained .mat with its own classifier (here 7-way) gets a fresh
    8-way fc8; every other layer starts from the file's weights."""
    from fer_distill.models import mini
    from experiments.matconvnet_writer import save_matconvnet

    keras.utils.set_random_seed(3)
    pretrained = mini(7, 32)
    path = tmp_path / "pretrained.mat"
    save_matconvnet(pretrained, path)
    workdir = tmp_path / "teacher"
    run(mini_config("teacher", workdir, init=str(path), epochs=1, steps_per_epoch=1,
                    learning_rate=1e-9))
    config = json.loads((workdir / "config.json").read_text())
    assert config["init_info"] == {"init": str(path), "new_head": True, "init_classes": 7}
    model = _load(workdir / "model.keras")
    assert model.output_shape == (None, 8)
    for layer in pretrained.layers:
        if layer.weights and layer.name != "fc8":
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_allclose(a, b, atol=1e-6)  # one step at lr 1e-9
