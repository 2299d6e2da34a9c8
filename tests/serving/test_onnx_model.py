"""The ONNX export, run by ONNX Runtime, agrees with the SavedModel on real photographs.

Real photographs: face and non-face crops of scikit-image's `astronaut()` (shipped in its wheel,
a test dependency), at their own sizes, so the graph's resize is exercised too. Tolerances:
float32 probabilities within 1e-5 of the SavedModel (the same arithmetic in another order);
the int8 dynamic quantisation is bounded loosely (0.05 on probabilities), since its point is
speed, and BENCHMARKS.md measures its top-1 agreement on full-size networks.
"""
import json

import numpy as np
import onnx
import pytest
import tensorflow as tf

from fer_distill.serving.export import ServingModule, export_savedmodel
from fer_distill.serving.onnx_model import (FLOAT32_TOLERANCE, ONNXModel, export_onnx,
                                            read_metadata)
from fer_distill.serving.predict import Predictor
from fer_distill.serving.servable import load_servable


@pytest.fixture(scope="module")
def photos():
    """Crops of a real photograph: her face (where Haar finds it), its lower half, a shoulder
    patch, and the whole photo."""
    from skimage import data

    photo = data.astronaut()
    return [photo[60:170, 170:280], photo[115:170, 170:280], photo[300:380, 40:150], photo]


@pytest.fixture(scope="module")
def student_onnx(student, tmp_path_factory):
    return export_onnx(load_servable(student[0]), tmp_path_factory.mktemp("onnx") / "m.onnx")


def _savedmodel_outputs(path, crops):
    loaded = tf.saved_model.load(str(path))
    return [{k: v.numpy() for k, v in loaded.signatures["predict_images"](
        images=tf.constant(c[None])).items()} for c in crops]


@pytest.mark.parametrize("which", ["student", "fuse"])
def test_onnx_agrees_with_the_savedmodel_on_real_photos(which, student, student_onnx, fuse_run,
                                                        photos, tmp_path):
    """The student against its SavedModel; the fused model against the in-memory graph that
    export_savedmodel saves (and checks the reloaded SavedModel against), to save an export."""
    servable = load_servable(student[0] if which == "student" else fuse_run[0])
    if which == "student":
        path = student_onnx
        wants = _savedmodel_outputs(
            export_savedmodel(servable, tmp_path / "saved" / "1", verify=False), photos)
    else:
        path = export_onnx(servable, tmp_path / "m.onnx")
        module = ServingModule(servable)
        wants = [{k: v.numpy() for k, v in module.predict_images(tf.constant(c[None])).items()}
                 for c in photos]
    model = ONNXModel(path.read_bytes())
    for crop, want in zip(photos, wants):
        got = model(crop[None])
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=0,
                                   atol=FLOAT32_TOLERANCE)
        np.testing.assert_array_equal(got["class_id"], want["class_id"])
        np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=1e-4, atol=1e-4)
    assert sorted(model.output_names) == sorted(
        ["probabilities", "class_id", "embedding",
         "logits" if which == "student" else "decision"])


def test_the_preprocessing_contract_is_in_the_metadata(student, student_onnx):
    path = student_onnx
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["input_size"] == "32,32" and props["view"] == "lower_half_visible"
    assert props["class_names"].split(",")[:2] == ["neutral", "happiness"]
    mean = student[1].get_layer("normalization").get_weights()[0].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose([float(v) for v in props["mean"].split(" ")[0].split(",")],
                               mean, atol=1e-3)
    assert "uint8 (N, H, W, 3) RGB" in props["input"]
    metadata = json.loads(props["fer_distill"])
    assert metadata == read_metadata(path) and metadata["quantization"] == "none"
    assert metadata["probe_agreement"]["max_probability_difference"] <= FLOAT32_TOLERANCE


def test_int8_dynamic_quantisation_stays_close(student, student_onnx, photos, tmp_path):
    servable = load_servable(student[0])
    exact = ONNXModel(student_onnx.read_bytes())
    quantized = export_onnx(servable, tmp_path / "q.onnx", quantization="int8_dynamic")
    model = ONNXModel(quantized.read_bytes())
    assert read_metadata(quantized)["quantization"] == "int8_dynamic"
    for crop in photos:
        np.testing.assert_allclose(model(crop[None])["probabilities"],
                                   exact(crop[None])["probabilities"], atol=0.05)


def test_predictor_loads_onnx_and_bad_files_are_named(student, student_onnx, tmp_path):
    path = student_onnx
    predictor = Predictor.load(path)
    assert predictor.view == "lower_half_visible"
    crops = [np.full((20, 24, 3), 90, np.uint8), np.full((30, 30, 3), 200, np.uint8)]
    want = Predictor.load(student[0])(crops)
    got = predictor(crops)  # mixed sizes: one call per crop
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    assert list(got["class_name"]) == list(want["class_name"])
    with pytest.raises(ValueError, match="applies view 'lower_half_visible'"):
        Predictor.load(path, view="full")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ValueError, match="junk.onnx"):
        Predictor.load(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="must be a .onnx file"):
        export_onnx(load_servable(student[0]), tmp_path / "m.savedmodel")
