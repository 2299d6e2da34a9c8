"""The package-level API every later stage uses: build, architecture_of, with_new_head,
embedding_model, load_model."""
import keras
import numpy as np
import pytest

from fer_distill import models
from fer_distill.models import layers as mcn


def _images(n=3, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_build_dispatches_and_records_the_architecture():
    model = models.build("mini", num_classes=3, input_size=40)
    assert models.architecture_of(model) == "mini"
    assert model.output.shape == (None, 3) and model.input.shape == (None, 40, 40, 3)
    assert models.ARCHITECTURES == ("vgg_f", "vgg_face", "mini", "resnet50")
    with pytest.raises(ValueError, match="'resnet'"):
        models.build("resnet")


def test_architecture_of_rejects_foreign_models():
    foreign = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="other")
    with pytest.raises(ValueError, match="'other'"):
        models.architecture_of(foreign)


def test_with_new_head_copies_everything_but_fc8():
    model = models.mini(num_classes=8)
    images = _images()
    head = models.with_new_head(model, 3, seed=7)
    assert head.name == "mini" and head.output.shape == (None, 3)
    assert [l.name for l in head.layers] == [l.name for l in model.layers]
    for layer in model.layers:
        if layer.name == "fc8":
            continue
        for old, new in zip(layer.weights, head.get_layer(layer.name).weights):
            np.testing.assert_array_equal(old.numpy(), new.numpy())
            assert old is not new  # copied, not shared
    # the embeddings agree, so only the classifier differs
    e_old = models.embedding_model(model).predict(images, verbose=0)["embedding"]
    e_new = models.embedding_model(head).predict(images, verbose=0)["embedding"]
    np.testing.assert_allclose(e_old, e_new, rtol=1e-6, atol=1e-6)
    fc8 = head.get_layer("fc8")
    np.testing.assert_array_equal(fc8.bias.numpy(), np.zeros(3))
    assert 0.003 < fc8.kernel.numpy().std() < 0.03  # N(0, 0.01^2) as MatConvNet initialises
    # a seed makes the head reproducible
    again = models.with_new_head(model, 3, seed=7)
    np.testing.assert_array_equal(again.get_layer("fc8").kernel.numpy(), fc8.kernel.numpy())
    # training the copy leaves the original alone
    before = model.get_layer("conv1").kernel.numpy().copy()
    head.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    head.train_on_batch(images, np.array([0, 1, 2]))
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), before)


def test_embedding_model_returns_relu7_and_fc8():
    model = models.mini()
    images = _images()
    out = models.embedding_model(model).predict(images, verbose=0)
    assert set(out) == {"embedding", "logits"}
    relu7 = keras.Model(model.input, model.get_layer("relu7").output).predict(images, verbose=0)
    np.testing.assert_array_equal(out["embedding"], relu7)
    np.testing.assert_array_equal(out["logits"], model.predict(images, verbose=0))
    assert out["embedding"].dtype == np.float32 and out["embedding"].shape == (3, 64)


def test_embedding_model_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.mini()
        out = models.embedding_model(model)(_images())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("relu7").compute_dtype == "float16"
    assert out["embedding"].dtype == "float32" and out["logits"].dtype == "float32"


def test_keras_round_trip_through_load_model(tmp_path):
    model = models.mini(num_classes=4, input_size=36)
    path = tmp_path / "mini.keras"
    model.save(path)
    loaded = models.load_model(path)
    assert loaded.name == "mini"
    assert isinstance(loaded.get_layer("norm1"), mcn.MatConvNetLRN)
    images = _images(size=36)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  model.predict(images, verbose=0))
    loaded_again = keras.saving.load_model(path)  # registered: no custom_objects needed
    assert loaded_again.get_layer("pool2").method == "avg"


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        models.load_model(tmp_path / "nothing.keras")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.h5"):
        models.load_model(other)
