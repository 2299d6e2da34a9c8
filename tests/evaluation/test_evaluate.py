"""evaluate: numbers equal a hand computation, every view through the same preprocessing as a
computation done here without the pipeline, fused runs through the SVM, files written where
docs/DESIGN.md says, saved predictions reused only when they fit, and bad inputs named.

Run directories are written here in the contract's format (config.json, model.keras,
metrics.json, fusion/) around `mini` networks at 32x32, so no training runs."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import fer_distill  # noqa: F401  (registers the custom layers)
from fer_distill.data import demo
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.occlusion import VIEWS
from fer_distill.data.prepared import read_prepared
from fer_distill.distill.fusion import FusionSVM
from fer_distill.evaluation import evaluate as ev
from fer_distill.evaluation.predictions import load_predictions, save_predictions
from fer_distill.models import embedding_model, mini

SIZES = {"train": 48, "validation": 12, "test": 30}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "demo"
    demo.prepare_demo(path, sizes=SIZES, seed=3)
    return read_prepared(path)


def sharp_mini(seed: int) -> keras.Model:
    """A mini whose fc8 spreads the logits over several units, so that any preprocessing
    mistake changes predictions (a freshly initialised fc8 gives near-uniform logits)."""
    keras.utils.set_random_seed(seed)
    model = mini(8, 32)
    fc8 = model.get_layer("fc8")
    rng = np.random.default_rng(seed)
    fc8.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32)
                     for w in fc8.get_weights()])
    return model


def constant_mini(class_index: int) -> keras.Model:
    """Every weight zero except fc8's bias, one-hot at `class_index`: the logits are that bias
    for any image, so the model answers `class_index` always."""
    model = mini(8, 32)
    model.set_weights([np.zeros(w.shape, np.float32) for w in model.get_weights()])
    bias = np.zeros(8, np.float32)
    bias[class_index] = 5.0
    fc8 = model.get_layer("fc8")
    fc8.set_weights([fc8.get_weights()[0], bias])
    return model


def write_run(run, model, data, *, stage, view, finished=True):
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({
        "stage": stage, "arch": "mini", "data": str(data.path), "view": view,
        "dataset": data.dataset, "class_names": list(data.class_names)}))
    if finished:
        (run / "metrics.json").write_text(json.dumps({"stage": stage, "test": {}}))
    return run


def model_input(data, split, view):
    """The test images as a model sees them, computed here without the tf.data pipeline:
    bilinear resize to 32, grey to RGB, the view's rows set to 0."""
    images = np.asarray(data.images(split), np.float32)
    resized = tf.image.resize(images, [32, 32], method="bilinear").numpy()
    rgb = np.repeat(resized, 3, axis=-1)
    if view == "lower_half_visible":
        rgb[:, :16] = 0.0
    elif view == "upper_half_visible":
        rgb[:, 16:] = 0.0
    return rgb


def test_constant_model_gives_the_hand_computed_numbers(tmp_path, data):
    """The model always says "surprise" (class 2): accuracy = share of surprise in the test
    labels, per-class accuracy 1 for surprise and 0 for every other class present, and the
    confusion matrix is the class counts, all in column 2."""
    run = write_run(tmp_path / "student", constant_mini(2), data, stage="student",
                    view="lower_half_visible")
    results = ev.evaluate(ev.EvaluateConfig(model=str(run)), verbose=False)
    assert list(results) == ["lower_half_visible"]
    r = results["lower_half_visible"]
    labels = np.asarray(data.labels("test"))
    counts = [int(np.sum(labels == k)) for k in range(8)]
    assert r["count"] == len(labels) == data.count("test")
    assert r["accuracy"] == counts[2] / len(labels)
    for k, name in enumerate(CLASS_NAMES):
        expected = None if counts[k] == 0 else float(k == 2)
        assert r["per_class_accuracy"][name] == expected, name
        assert r["per_class_count"][name] == counts[k]
    expected_cm = np.zeros((8, 8), int)
    expected_cm[:, 2] = counts
    assert r["confusion_matrix"] == expected_cm.tolist()
    csv_lines = (run / "evaluation" / "test_lower_half_visible_confusion.csv").read_text()
    assert csv_lines.splitlines()[3] == "surprise," + ",".join(
        str(counts[2]) if j == 2 else "0" for j in range(8))
    saved = load_predictions(run / "predictions" / "test_lower_half_visible.npz")
    np.testing.assert_array_equal(saved["pred"], np.full(len(labels), 2))
    np.testing.assert_array_equal(saved["index"], np.arange(len(labels)))
    np.testing.assert_array_equal(saved["label"], labels)


def test_teacher_is_tested_on_all_three_views_like_a_computation_without_the_pipeline(
        tmp_path, data):
    model = sharp_mini(0)
    run = write_run(tmp_path / "teacher", model, data, stage="teacher", view="full")
    results = ev.evaluate(ev.EvaluateConfig(model=str(run), batch_size=7), verbose=False)
    assert tuple(results) == VIEWS  # Table I's ○, ◐ and ◑ rows of one teacher
    labels = np.asarray(data.labels("test"))
    accuracies = set()
    for view in VIEWS:
        logits = model.predict(model_input(data, "test", view), verbose=0)
        pred = np.argmax(logits, axis=1)
        record = json.loads((run / "evaluation" / f"test_{view}.json").read_text())
        assert record == json.loads(json.dumps(results[view]))
        assert record["format"] == ev.FORMAT and record["view"] == view
        assert record["model"]["stage"] == "teacher" and record["dataset"] == "demo"
        assert record["accuracy"] == pytest.approx(np.mean(pred == labels), abs=0)
        confusion = np.zeros((8, 8), int)
        for t, p in zip(labels, pred):  # the obvious loop
            confusion[t, p] += 1
        assert record["confusion_matrix"] == confusion.tolist()
        saved = load_predictions(run / record["files"]["predictions"])
        np.testing.assert_array_equal(saved["pred"], pred)
        np.testing.assert_allclose(saved["probs"], tf.nn.softmax(logits).numpy(), atol=1e-5)
        png = (run / record["files"]["confusion_png"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        accuracies.add(tuple(pred))
    assert len(accuracies) == 3  # the views really differ for this model


def test_fused_run_is_evaluated_through_its_svm(tmp_path, data):
    kd, triplet = sharp_mini(1), sharp_mini(2)
    kd_run = write_run(tmp_path / "kd", kd, data, stage="kd", view="lower_half_visible")
    tr_run = write_run(tmp_path / "triplet", triplet, data, stage="triplet",
                       view="lower_half_visible")
    train = model_input(data, "train", "lower_half_visible")
    svm = FusionSVM().fit(embedding_model(kd).predict(train, verbose=0)["embedding"],
                          embedding_model(triplet).predict(train, verbose=0)["embedding"],
                          np.asarray(data.labels("train")))
    fuse = tmp_path / "fuse"
    fuse.mkdir()
    svm.save(fuse / "fusion")
    (fuse / "config.json").write_text(json.dumps({
        "stage": "fuse", "arch": "mini", "data": str(data.path), "view": "lower_half_visible",
        "dataset": "demo", "kd_student": str(kd_run), "triplet_student": "../triplet"}))
    (fuse / "metrics.json").write_text("{}")

    results = ev.evaluate(ev.EvaluateConfig(model=str(fuse)), verbose=False)
    test = model_input(data, "test", "lower_half_visible")
    expected = svm.predict(embedding_model(kd).predict(test, verbose=0)["embedding"],
                           embedding_model(triplet).predict(test, verbose=0)["embedding"])
    saved = load_predictions(fuse / "predictions" / "test_lower_half_visible.npz")
    np.testing.assert_array_equal(saved["pred"], expected)
    assert saved["scores"].shape == (data.count("test"), 8)
    np.testing.assert_allclose(saved["probs"].sum(axis=1), 1.0, atol=1e-5)
    assert results["lower_half_visible"]["accuracy"] == np.mean(
        expected == np.asarray(data.labels("test")))
    assert results["lower_half_visible"]["model"]["kind"] == "fusion"


def test_saved_predictions_are_reused_only_when_they_fit(tmp_path, data):
    run = write_run(tmp_path / "student", constant_mini(0), data, stage="student",
                    view="lower_half_visible")
    n = data.count("test")
    labels = np.asarray(data.labels("test"))
    npz = run / "predictions" / "test_lower_half_visible.npz"
    # what "training" saved: every answer right (the model itself always says neutral)
    save_predictions(npz, {"index": np.arange(n), "label": labels, "pred": labels,
                           "probs": np.eye(8, dtype=np.float32)[labels]})
    reused = ev.evaluate(ev.EvaluateConfig(model=str(run)), verbose=False)
    assert reused["lower_half_visible"]["predictions_reused"] is True
    assert reused["lower_half_visible"]["accuracy"] == 1.0

    rerun = ev.evaluate(ev.EvaluateConfig(model=str(run), reuse_predictions=False),
                        verbose=False)
    assert rerun["lower_half_visible"]["predictions_reused"] is False
    assert rerun["lower_half_visible"]["accuracy"] == np.mean(labels == 0)

    # a file of other images (a subset) is never reused
    save_predictions(npz, {"index": np.arange(n - 1), "label": labels[:-1],
                           "pred": labels[:-1], "probs": np.eye(8, dtype=np.float32)[labels[:-1]]})
    again = ev.evaluate(ev.EvaluateConfig(model=str(run)), verbose=False)
    assert again["lower_half_visible"]["predictions_reused"] is False
    assert again["lower_half_visible"]["accuracy"] == np.mean(labels == 0)


def test_output_directory_and_bare_model_file(tmp_path, data):
    path = tmp_path / "model.keras"
    constant_mini(1).save(path)
    with pytest.raises(ValueError, match="records no view"):
        ev.evaluate(ev.EvaluateConfig(model=str(path), data=str(data.path),
                                      output=str(tmp_path / "out")), verbose=False)
    with pytest.raises(ValueError, match="output directory"):
        ev.evaluate(ev.EvaluateConfig(model=str(path), data=str(data.path),
                                      views=("full",)), verbose=False)
    with pytest.raises(ValueError, match="records no data set"):
        ev.evaluate(ev.EvaluateConfig(model=str(path), views=("full",),
                                      output=str(tmp_path / "out")), verbose=False)
    results = ev.evaluate(ev.EvaluateConfig(
        model=str(path), data=str(data.path), views=("full", "upper_half_visible"),
        output=str(tmp_path / "out"), provenance={"flagfile": "x.flags"}), verbose=False)
    assert set(results) == {"full", "upper_half_visible"}
    record = ev.load_results(tmp_path / "out" / "evaluation" / "test_full.json")
    assert record["model"]["run_dir"] is None and record["model"]["arch"] == "mini"
    assert record["provenance"] == {"flagfile": "x.flags"}
    assert (tmp_path / "out" / "predictions" / "test_upper_half_visible.npz").is_file()
    # nothing half-written is left behind
    leftovers = [p.name for p in (tmp_path / "out").rglob(".*")]
    assert leftovers == []


def test_refuses_unfinished_runs_and_other_classes(tmp_path, data):
    run = write_run(tmp_path / "unfinished", constant_mini(0), data, stage="student",
                    view="lower_half_visible", finished=False)
    with pytest.raises(ValueError, match="has not finished"):
        ev.evaluate(ev.EvaluateConfig(model=str(run)), verbose=False)

    other = write_run(tmp_path / "other", constant_mini(0), data, stage="student",
                      view="lower_half_visible")
    config = json.loads((other / "config.json").read_text())
    config["class_names"] = list(reversed(CLASS_NAMES))
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trained on classes"):
        ev.evaluate(ev.EvaluateConfig(model=str(other)), verbose=False)

    with pytest.raises(ValueError, match="unknown views"):
        ev.evaluate(ev.EvaluateConfig(model=str(other), views=("sideways",)), verbose=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        ev.evaluate(ev.EvaluateConfig(model=str(tmp_path / "missing")), verbose=False)
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "config.json").write_text("{")
        ev.evaluate(ev.EvaluateConfig(model=str(tmp_path / "broken")), verbose=False)
