"""fer_distill/serving/precision.py: bfloat16 copies compute what the float32 network computes,
to bfloat16's precision.

Tolerance, and why: bfloat16 keeps 8 significant bits (relative rounding up to 2^-8 = 0.4 %
per value); through a few layers of a confident network (`sharp_mini`, logits spread over
several units) the logits move by a few hundredths. Bound: |Δlogit| <= 0.05 * max |logit|,
probabilities within 0.03, the same class for at least 90 % of 64 random images.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.occlusion import occlude
from fer_distill.serving import precision
from fer_distill.serving.export import ServingModule, export_savedmodel
from fer_distill.serving.servable import CLASSIFIER, Servable

from .conftest import sharp_mini


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    return occlude(rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32), "lower_half_visible")


def test_bfloat16_copy_has_the_same_layers_and_close_outputs(images):
    model = sharp_mini(0)
    copy = precision.bfloat16_network(model)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    assert copy.get_layer("conv1").kernel.dtype == "bfloat16"
    assert copy.get_layer("fc8").kernel.dtype == "float32"  # logits stay float32
    want = model(images, training=False).numpy()
    got = copy(images, training=False).numpy()
    assert got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 0.05 * np.max(np.abs(want))
    p, q = tf.nn.softmax(got).numpy(), tf.nn.softmax(want).numpy()
    assert np.max(np.abs(p - q)) <= 0.03
    assert np.mean(np.argmax(got, 1) == np.argmax(want, 1)) >= 0.9
    assert not np.array_equal(got, want)  # it really computes in bfloat16
    # the original is untouched
    assert model.get_layer("conv1").kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_bfloat16_servable_exports_and_serves(tmp_path):
    servable = Servable(CLASSIFIER, (sharp_mini(0),), "lower_half_visible")
    fast = precision.bfloat16_servable(servable)
    assert fast.source["precision"] == "bfloat16"
    assert fast.view == servable.view
    crops = np.random.default_rng(3).integers(0, 256, (16, 40, 50, 3), dtype=np.uint8)
    path = export_savedmodel(fast, tmp_path / "1")
    loaded = tf.saved_model.load(str(path))
    got = loaded.predict_images(tf.constant(crops))["probabilities"].numpy()
    module = ServingModule(servable)
    want = module.predict_images(tf.constant(crops))["probabilities"].numpy()
    assert np.max(np.abs(got - want)) <= 0.03


def test_a_foreign_model_is_refused():
    inputs = keras.Input((4,))
    foreign = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="foreign")
    with pytest.raises(ValueError, match="foreign.*MeanSubtraction"):
        precision.bfloat16_network(foreign)


def test_auto_precision_reads_the_cpu_and_records_its_choice(student, monkeypatch):
    from fer_distill.serving.predict import Predictor

    flags = "processor : 0\nflags : fpu sse2 avx2 fma avx512f avx512_bf16\n"
    assert {"avx2", "avx512_bf16"} <= precision.cpu_features(flags)
    tried, skipped = precision.candidates({"avx2"})
    assert "bfloat16" in skipped and "avx512_bf16" in skipped["bfloat16"]
    assert set(tried) == {"float32", "int8"}
    tried, _ = precision.candidates({"amx_bf16"})
    assert "amx_bf16" in tried["bfloat16"]

    monkeypatch.setattr(precision, "cpu_features", lambda: {"avx2", "fma"})  # an AVX2-only CPU
    predictor = Predictor.load(student[0], precision="auto")
    record = predictor.metadata["precision"]
    assert record["chosen"] in ("float32", "int8") and record["reason"]
    assert set(record["probe"]) == {"float32", "int8"} and "bfloat16" in record["skipped"]
    assert record["probe"]["float32"]["top1_agreement"] == 1.0
    assert 0 < record["probe"]["int8"]["latency_ms"] and "speedup" in record["probe"]["int8"]
    if record["chosen"] == "int8":
        assert record["probe"]["int8"]["top1_agreement"] >= precision.AUTO_MIN_AGREEMENT
    else:
        assert "rejected" in record["probe"]["int8"]
    crops = [np.full((32, 32, 3), 120, np.uint8), np.full((40, 30, 3), 30, np.uint8)]
    exact = Predictor.load(student[0])(crops)
    for name in ("int8", "bfloat16"):
        got = Predictor.load(student[0], precision=name)(crops)
        np.testing.assert_allclose(got["probabilities"], exact["probabilities"], atol=0.05)
        assert list(got["class_name"]) == list(exact["class_name"])
