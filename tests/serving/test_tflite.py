"""fer_distill/serving/tflite.py: the TFLite exports compute what the SavedModel graph computes.

Tolerances, and why:
- float32 ("none"): probabilities within 1e-5 and the same class as `ServingModule`
  (summation order only); embeddings within 1e-4 relative.
- float16 weights: probabilities within 5e-3 (weights rounded to 11 significant bits).
- dynamic range (int8 weights, activations quantised per call): probabilities within 0.05 and
  the same class for at least 90 % of 64 random crops of a confident model (`sharp_mini`,
  logits spread over several units); the benchmark reports the measured agreement of VGG-f.
Random crops are 40x50, so the in-graph resize is part of every comparison.
"""
import csv

import numpy as np
import pytest
import tensorflow as tf

from fer_distill.serving import tflite
from fer_distill.serving.export import ServingModule
from fer_distill.serving.predict import Predictor, predict_files
from fer_distill.serving.servable import CLASSIFIER, Servable, load_servable

from .conftest import sharp_mini, write_fuse_run


@pytest.fixture(scope="module")
def classifier():
    return Servable(CLASSIFIER, (sharp_mini(0),), "lower_half_visible")


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(1).integers(0, 256, (64, 40, 50, 3), dtype=np.uint8)


def _reference(servable, images):
    module = ServingModule(servable)
    return {k: v.numpy() for k, v in module.predict_images(tf.constant(images)).items()}


def test_float32_export_equals_the_savedmodel_graph(classifier, crops, tmp_path):
    path = tflite.export_tflite(classifier, tmp_path / "lite", quantization="none")
    got = tflite.TFLiteModel((path / tflite.MODEL_FILE).read_bytes())(crops)
    want = _reference(classifier, crops)
    assert sorted(got) == ["class_id", "embedding", "logits", "probabilities"]
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=1e-4, atol=1e-4)
    assert np.array_equal(got["class_id"], want["class_id"])
    assert len(set(want["class_id"].tolist())) > 1  # the comparison is not between constants
    metadata = tflite.read_metadata(path)
    assert metadata["quantization"] == "none"
    assert metadata["view"] == "lower_half_visible"
    assert metadata["probe_agreement"]["max_probability_difference"] <= tflite.FLOAT32_TOLERANCE


@pytest.mark.parametrize("quantization, atol, min_agreement",
                         [("float16", 5e-3, 1.0), ("dynamic_range", 0.05, 0.9)])
def test_quantised_exports_stay_close(classifier, crops, quantization, atol, min_agreement):
    got = tflite.TFLiteModel(tflite.convert(classifier, quantization=quantization))(crops)
    want = _reference(classifier, crops)
    assert np.max(np.abs(got["probabilities"] - want["probabilities"])) <= atol
    assert np.mean(got["class_id"] == want["class_id"]) >= min_agreement


def test_dynamic_range_file_is_smaller(classifier):
    full = tflite.convert(classifier, quantization="none")
    int8 = tflite.convert(classifier, quantization="dynamic_range")
    assert len(int8) < 0.5 * len(full)


def test_fused_model_exports_too(tmp_path, crops):
    fuse, *_ = write_fuse_run(tmp_path)
    servable = load_servable(fuse)
    got = tflite.TFLiteModel(tflite.convert(servable, quantization="none"))(crops[:8, :32, :32])
    want = _reference(servable, crops[:8, :32, :32])
    assert "decision" in got and "logits" not in got
    np.testing.assert_allclose(got["decision"], want["decision"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)


def test_predictor_from_a_tflite_export(classifier, tmp_path, crops):
    """Same-size crops go through one batch, mixed sizes one crop at a time; both match the
    SavedModel graph, and `predict_files` writes its CSV from the TFLite file."""
    import cv2

    path = tflite.export_tflite(classifier, tmp_path / "lite", quantization="none")
    predictor = Predictor.load(path)
    assert predictor.view == "lower_half_visible"
    same = predictor(list(crops[:3]))
    want = _reference(classifier, crops[:3])
    np.testing.assert_allclose(same["probabilities"], want["probabilities"], atol=1e-5)
    names = [predictor.class_names[i] for i in want["class_id"]]
    assert [n.decode() for n in same["class_name"]] == names
    small = crops[3, :20, :30]
    mixed = predictor([crops[0], small])
    np.testing.assert_allclose(mixed["probabilities"][0], want["probabilities"][0], atol=1e-5)
    np.testing.assert_allclose(mixed["probabilities"][1],
                               _reference(classifier, small[None])["probabilities"][0],
                               atol=1e-5)

    images = tmp_path / "faces"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), cv2.cvtColor(crops[i], cv2.COLOR_RGB2BGR))
    summary = predict_files(predictor, [images], tmp_path / "out.csv")
    assert summary["faces"] == 2
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["class"] for row in rows] == names[:2]


def test_bad_inputs_are_refused(classifier, tmp_path):
    with pytest.raises(ValueError, match="quantization must be one of"):
        tflite.convert(classifier, quantization="int4")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a TFLite export"):
        tflite.export_tflite(classifier, occupied)
    assert (occupied / "notes.txt").read_text() == "mine"
    model = tflite.TFLiteModel(tflite.convert(classifier, quantization="none"))
    with pytest.raises(ValueError, match="uint8"):
        model(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        model(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        tflite.load_runner(tmp_path)


def test_predictor_load_opens_a_tflite_export_directory(classifier, tmp_path, crops):
    """`Predictor.load` (what experiments.predict calls) recognises a TFLite export and keeps
    its baked-in view: another view is refused, not silently ignored."""
    path = tflite.export_tflite(classifier, tmp_path / "lite", quantization="none")
    loaded = Predictor.load(path)
    direct = Predictor.from_runner(*tflite.load_runner(path))
    np.testing.assert_array_equal(loaded(list(crops[:2]))["probabilities"],
                                  direct(list(crops[:2]))["probabilities"])
    with pytest.raises(ValueError, match="applies view 'lower_half_visible'"):
        Predictor.load(path, view="full")
