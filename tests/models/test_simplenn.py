"""SimpleNN chains as Keras models: the fc-as-Dense equivalence (NOTES §2) and chain errors."""
import keras
import numpy as np
import pytest

from fer_distill.models import simplenn as nn

from . import matconvnet_reference as ref


def test_dense_after_flatten_equals_the_whole_map_convolution():
    """MatConvNet's fc6 is a conv whose filter covers the whole map; Keras' Flatten (NHWC,
    C order) + Dense with the filter reshaped in C order to (h*w*c, out) is the same sum."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 7)).astype("float32")
    filters = rng.standard_normal((5, 4, 7, 6)).astype("float32")
    biases = rng.standard_normal(6).astype("float32")
    dense = keras.layers.Dense(6)
    y = dense(keras.layers.Flatten()(x))
    dense.set_weights([filters.reshape(-1, 6), biases])
    y = dense(keras.layers.Flatten()(x)).numpy()
    expected = np.stack([ref.conv(image, filters, biases)[0, 0] for image in x])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # and a transposed reshape (Fortran order) would NOT be the same: the test can fail
    dense.set_weights([filters.reshape(-1, 6, order="F"), biases])
    assert not np.allclose(dense(keras.layers.Flatten()(x)).numpy(), expected, atol=1e-3)


def _chain():
    return [nn.conv("conv1", (3, 3, 3, 4), pad=1), nn.relu("relu1"),
            nn.pool("pool1", 3, 2, (0, 1, 0, 1)), nn.conv("fc6", (5, 5, 4, 8)),
            nn.relu("relu6"), nn.dropout("drop6"), nn.conv("fc7", (1, 1, 8, 3))]


def test_build_chain_and_chain_of_are_inverse():
    model = nn.build_chain(_chain(), input_shape=(10, 10, 3), name="toy",
                           average_image=[1.0, 2.0, 3.0])
    assert [l.name for l in model.layers] == ["image", "normalization", "conv1", "relu1",
                                              "pool1", "flatten", "fc6", "relu6", "drop6",
                                              "fc7"]
    back = nn.chain_of(model)
    for original, recovered in zip(_chain(), back):
        assert original["name"] == recovered["name"] and original["type"] == recovered["type"]
    assert back[3]["size"] == [5, 5, 4, 8] and back[6]["size"] == [1, 1, 8, 3]
    assert back[2]["pad"] == [0, 1, 0, 1]
    assert model.get_layer("fc7").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("broken,message", [
    (lambda c: c.__setitem__(3, nn.conv("fc6", (5, 5, 6, 8))),
     r"layer 4 \('fc6', type 'conv'\): filter expects 6 input channels, input has 4"),
    (lambda c: c.__setitem__(6, nn.conv("fc7", (3, 3, 8, 3))),
     r"layer 7 \('fc7'.*cannot follow a fully connected layer"),
    (lambda c: c.insert(5, nn.pool("pool6", 2, 2)),
     r"layer 6 \('pool6'.*pooling needs a map"),
    (lambda c: c.__setitem__(3, nn.conv("fc6", (7, 7, 4, 8))),
     r"layer 4 \('fc6'.*7x7 filter is larger than its padded 5x5 input"),
    (lambda c: c.__setitem__(4, nn.relu("conv1")), r"layer 5 \('conv1'.*used twice"),
    (lambda c: c.__setitem__(4, nn.relu("relu/6")), r"layer 5 \('relu/6'.*letters"),
])
def test_chain_errors_name_the_layer(broken, message):
    chain = _chain()
    broken(chain)
    with pytest.raises(ValueError, match=message):
        nn.build_chain(chain, input_shape=(10, 10, 3), name="toy",
                       average_image=[0.0, 0.0, 0.0])


def test_a_chain_must_end_in_a_vector():
    with pytest.raises(ValueError, match="ends with a .* map, not a vector"):
        nn.build_chain(_chain()[:3], input_shape=(10, 10, 3), name="toy",
                       average_image=[0.0, 0.0, 0.0])
