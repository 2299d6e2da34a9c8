"""`mini`: MatConvNet names, any input size >= 32, cheap to train, float32 logits."""
import keras
import numpy as np
import pytest

from fer_distill.models import mini

NAMES = ["image", "normalization", "conv1", "relu1", "norm1", "pool1", "conv2", "relu2",
         "pool2", "flatten", "fc6", "relu6", "fc7", "relu7", "fc8"]


def test_layer_names_follow_matconvnet():
    model = mini()
    assert [layer.name for layer in model.layers] == NAMES
    assert model.name == "mini"
    assert model.get_layer("relu7").output.shape == (None, 64)
    assert model.get_layer("fc8").output.shape == (None, 8)


@pytest.mark.parametrize("size", [32, 33, 48, 64, 97])
def test_any_input_size_from_32(size):
    model = mini(num_classes=5, input_size=size)
    images = np.random.default_rng(size).uniform(0, 255, (2, size, size, 3)).astype("float32")
    logits = model.predict(images, verbose=0)
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))


def test_parameter_count_by_hand():
    """conv1 3*3*3*16+16=448, conv2 3*3*16*32+32=4640, fc6 (8*8*32)*64+64=131136,
    fc7 64*64+64=4160, fc8 64*8+8=520: 140904 trainable; the 1x1x3 mean is not trainable."""
    model = mini()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 140904
    assert model.count_params() == 140904 + 3


@pytest.mark.parametrize("bad", [dict(input_size=31), dict(num_classes=0), dict(width=2.5)])
def test_bad_arguments_echo_the_value(bad):
    with pytest.raises(ValueError, match=str(list(bad.values())[0])):
        mini(**bad)


def test_a_few_training_steps_reduce_the_loss():
    keras.utils.set_random_seed(0)
    model = mini(num_classes=2)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = (images[:, :16].mean(axis=(1, 2, 3)) > images[:, 16:].mean(axis=(1, 2, 3)))
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = model.train_on_batch(images, labels.astype("int32"))
    for _ in range(30):
        last = model.train_on_batch(images, labels.astype("int32"))
    assert last < first


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"),
            rng.integers(0, 8, 16).astype("int32"))


def _gradients(model, images, labels, jit_compile):
    import tensorflow as tf
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_weights)

    return tf.function(step, jit_compile=jit_compile)(images, labels)


def test_xla_training_step_agrees_with_the_plain_one():
    keras.utils.set_random_seed(1)
    model = mini()
    images, labels = _batch()
    plain = _gradients(model, images, labels, jit_compile=False)
    xla = _gradients(model, images, labels, jit_compile=True)
    np.testing.assert_allclose(xla[0].numpy(), plain[0].numpy(), rtol=1e-5)
    for a, b, w in zip(xla[1], plain[1], model.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3,
                                   atol=1e-5 * max(np.abs(b.numpy()).max(), 1e-3),
                                   err_msg=w.path)
    # and Keras' own jit-compiled fit runs
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True),
                  jit_compile=True)
    assert np.isfinite(model.train_on_batch(images, labels))


def test_mixed_float16_mini_agrees_with_float32():
    keras.utils.set_random_seed(2)
    model = mini()
    images, labels = _batch(1)
    expected = model.predict(images, verbose=0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = mini()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(model.get_weights())
    assert mixed.get_layer("conv2").compute_dtype == "float16"
    logits = mixed.predict(images, verbose=0)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-2 * np.abs(expected).max())
    mixed.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(True), jit_compile=True)
    assert np.isfinite(mixed.train_on_batch(images, labels))
