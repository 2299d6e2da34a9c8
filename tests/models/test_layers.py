"""The MatConvNet layers against the independent NumPy reference, under float32, mixed
precision, tf.function and XLA; their configs round-trip."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.models import layers as mcn

from . import matconvnet_reference as ref


def _maps(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype("float32")


def _per_image(fn, x):
    return np.stack([fn(image) for image in x])


@pytest.mark.parametrize("pad,stride,kernel,dilate", [
    ((0, 0, 0, 0), (4, 4), (11, 11), (1, 1)),   # VGG-f conv1 shape of things
    ((2, 2, 2, 2), (1, 1), (5, 5), (1, 1)),
    ((0, 1, 2, 0), (2, 3), (3, 2), (1, 1)),     # asymmetric everything
    ((2, 2, 2, 2), (1, 1), (3, 3), (2, 2)),     # dilated
])
def test_conv_matches_reference(pad, stride, kernel, dilate):
    x = _maps((2, 23, 19, 4))
    layer = mcn.MatConvNetConv2D(5, kernel, strides=stride, pad=pad, dilation_rate=dilate)
    y = layer(x).numpy()
    filters, biases = (w.numpy() for w in layer.weights)
    biases = np.random.default_rng(1).standard_normal(5).astype("float32")
    layer.set_weights([filters, biases])
    y = layer(x).numpy()
    expected = _per_image(lambda im: ref.conv(im, filters, biases, stride, pad, dilate), x)
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_grouped_conv_matches_reference():
    x = _maps((1, 9, 9, 6))
    layer = mcn.MatConvNetConv2D(4, (3, 3), pad=1, groups=2)
    y = layer(x).numpy()
    filters, biases = (w.numpy() for w in layer.weights)
    assert filters.shape == (3, 3, 3, 4)
    np.testing.assert_allclose(y[0], ref.conv(x[0], filters, biases, 1, 1), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("size,stride,pad", [
    ((3, 3), (2, 2), (0, 1, 0, 1)),   # VGG-f pool1: 54 -> 27
    ((3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 3), (1, 2), (1, 0, 2, 1)),
    ((2, 2), (2, 2), (0, 0, 0, 0)),
])
def test_pooling_matches_reference(method, size, stride, pad):
    x = _maps((2, 13, 11, 3))
    layer = mcn.MatConvNetPooling2D(size, stride, pad, method)
    y = layer(x).numpy()
    expected = _per_image(lambda im: ref.pool(im, size, stride, pad, method), x)
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_pooling_sizes_are_matconvnets_not_keras_same():
    """VGG-f: 54 -pool1 [0 1 0 1]-> 27, 27 -pool2-> 13, 13 -pool5-> 6 (Keras 'same': 14, 7)."""
    pool1 = mcn.MatConvNetPooling2D(3, 2, (0, 1, 0, 1))
    pool = mcn.MatConvNetPooling2D(3, 2, 0)
    assert pool1.compute_output_shape((None, 54, 54, 64))[1:3] == (27, 27)
    assert pool.compute_output_shape((None, 27, 27, 256))[1:3] == (13, 13)
    assert pool.compute_output_shape((None, 13, 13, 256))[1:3] == (6, 6)


def test_average_pooling_counts_only_cells_inside_the_image():
    """A 2x2 image of ones, 3x3 window, pad 1: every window sees only ones, so 1 (not 4/9)."""
    layer = mcn.MatConvNetPooling2D(3, 1, 1, "avg")
    y = layer(np.ones((1, 2, 2, 1), "float32")).numpy()
    np.testing.assert_allclose(y, np.ones((1, 2, 2, 1)))


def test_max_pooling_never_picks_the_padding():
    layer = mcn.MatConvNetPooling2D(3, 2, (1, 1, 1, 1), "max")
    y = layer(-np.ones((1, 4, 4, 1), "float32")).numpy()
    np.testing.assert_array_equal(y, -np.ones((1, 2, 2, 1)))


def test_pooling_rejects_padding_as_large_as_the_window():
    with pytest.raises(ValueError, match=r"\[2, 2, 0, 0\] must be smaller than the pool"):
        mcn.MatConvNetPooling2D(2, 2, (2, 2, 0, 0))


@pytest.mark.parametrize("param", [(5, 2.0, 1e-4, 0.75), (4, 1.0, 2e-5, 0.75),
                                   (3, 0.5, 1e-2, 0.5), (32, 1e-6, 1.0, 0.5)])
def test_lrn_matches_reference(param):
    x = _maps((2, 5, 4, 12), scale=30.0)
    y = mcn.MatConvNetLRN(*param)(x).numpy()
    expected = _per_image(lambda im: ref.lrn(im, param), x)
    np.testing.assert_allclose(y, expected, rtol=2e-5, atol=1e-6)


def test_lrn_alpha_is_not_divided_by_n():
    """One channel of value 10, N = 5, kappa 0, alpha 1, beta 1: y = 10 / (1 * 100) = 0.1."""
    x = np.zeros((1, 1, 1, 3), "float32")
    x[..., 1] = 10.0
    y = mcn.MatConvNetLRN(5, 0.0, 1.0, 1.0)(x).numpy()
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 0.1, 0.0], rtol=1e-6)


def test_lrn_equals_tensorflows_for_odd_windows():
    """NOTES §2: for odd N MatConvNet's LRN is tf.nn.local_response_normalization with
    depth_radius (N-1)/2 and the same alpha (the op XLA cannot run in float16)."""
    x = _maps((2, 6, 6, 16), scale=20.0)
    ours = mcn.MatConvNetLRN(5, 2.0, 1e-4, 0.75)(x).numpy()
    theirs = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4,
                                                beta=0.75).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_mean_subtraction_full_image_and_colour():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype("float32")
    image = np.random.default_rng(1).uniform(0, 255, (4, 5, 3)).astype("float32")
    full = mcn.MeanSubtraction(initial_value=image)
    np.testing.assert_allclose(full(x).numpy(), x - image, rtol=1e-6)
    colour = mcn.MeanSubtraction(initial_value=[129.1863, 104.7624, 93.5940])
    np.testing.assert_allclose(colour(x).numpy(), x - np.float32([129.1863, 104.7624, 93.594]),
                               rtol=1e-6)
    assert full.trainable_weights == [] and full.non_trainable_weights[0].shape == (4, 5, 3)
    with pytest.raises(ValueError, match="average image is 4x5"):
        keras.Model(*(lambda i: (i, mcn.MeanSubtraction(initial_value=image)(i)))(
            keras.Input((6, 6, 3))))


def _layer_zoo():
    return [
        mcn.MeanSubtraction(initial_value=[1.0, 2.0, 3.0], name="normalization"),
        mcn.MatConvNetConv2D(6, (3, 3), strides=(2, 1), pad=(0, 1, 1, 0), name="conv"),
        mcn.MatConvNetLRN(5, 2.0, 1e-4, 0.75, name="norm"),
        mcn.MatConvNetPooling2D((3, 3), (2, 2), (0, 1, 0, 1), "max", name="poolmax"),
        mcn.MatConvNetPooling2D((3, 3), (2, 2), (1, 1, 1, 1), "avg", name="poolavg"),
    ]


@pytest.mark.parametrize("index", range(5))
def test_config_round_trip(index):
    layer = _layer_zoo()[index]
    x = np.random.default_rng(0).uniform(0, 255, (1, 9, 9, 3)).astype("float32")
    y = layer(x)
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), y.numpy())
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"fer_distill>{type(layer).__name__}"
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(layer)


def _zoo_model():
    image = keras.Input((17, 17, 3))
    x = image
    for layer in _layer_zoo():
        x = layer(x)
    return keras.Model(image, keras.layers.Dense(4, dtype="float32")(keras.layers.Flatten()(x)))


def test_eager_tf_function_and_xla_agree_forward_and_backward():
    keras.utils.set_random_seed(0)
    model = _zoo_model()
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 17, 17, 3)).astype("float32"))

    def loss_and_grads(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(images, training=True) ** 2)
        return loss, tape.gradient(loss, model.trainable_weights)

    eager = loss_and_grads(x)
    graph = tf.function(loss_and_grads)(x)
    xla = tf.function(loss_and_grads, jit_compile=True)(x)
    for other in (graph, xla):
        np.testing.assert_allclose(other[0].numpy(), eager[0].numpy(), rtol=1e-4)
        for a, b in zip(other[1], eager[1]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3,
                                       atol=1e-4 * np.abs(b.numpy()).max())


def test_mixed_float16_agrees_with_float32_and_runs_under_xla():
    keras.utils.set_random_seed(0)
    model = _zoo_model()
    x = np.random.default_rng(0).uniform(0, 255, (2, 17, 17, 3)).astype("float32")
    expected = model(x).numpy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = _zoo_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(model.get_weights())
    assert mixed.layers[2].compute_dtype == "float16"  # the conv really runs in float16
    for output in (mixed(x), tf.function(mixed, jit_compile=True)(x)):
        assert output.dtype == "float32"
        np.testing.assert_allclose(output.numpy(), expected, rtol=0,
                                   atol=5e-3 * np.abs(expected).max())
