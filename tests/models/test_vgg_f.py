"""VGG-f: MatConvNet's names, map sizes and hyper-parameters; exact parameter count."""
import keras
import numpy as np
import pytest

from fer_distill.models import layers as mcn
from fer_distill.models import vgg_f


@pytest.fixture(scope="module")
def model():
    return vgg_f(num_classes=8)


def test_exact_trainable_parameter_count(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 56_770_312
    assert model.count_params() == 56_770_312 + 224 * 224 * 3  # + the average image


def test_names_and_map_sizes(model):
    sizes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert model.name == "vgg_f" and model.input.shape == (None, 224, 224, 3)
    assert sizes["conv1"] == (54, 54, 64) and sizes["pool1"] == (27, 27, 64)
    assert sizes["conv2"] == (27, 27, 256) and sizes["pool2"] == (13, 13, 256)
    assert sizes["conv5"] == (13, 13, 256) and sizes["pool5"] == (6, 6, 256)
    assert sizes["relu7"] == (4096,) and sizes["fc8"] == (8,)
    assert [l.name for l in model.layers][1:] == [
        "normalization", "conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2",
        "pool2", "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "flatten",
        "fc6", "relu6", "fc7", "relu7", "fc8"]
    assert not any(isinstance(l, keras.layers.Dropout) for l in model.layers)


def test_hyper_parameters(model):
    assert model.get_layer("conv1").strides == (4, 4)
    assert model.get_layer("conv2").pad == (2, 2, 2, 2)
    assert model.get_layer("pool1").pad == (0, 1, 0, 1)
    assert model.get_layer("norm2").param == [5, 2.0, 1e-4, 0.75]
    assert model.get_layer("normalization").average_image.shape == (224, 224, 3)
    assert model.get_layer("fc6").kernel.shape == (6 * 6 * 256, 4096)
    assert isinstance(model.get_layer("norm1"), mcn.MatConvNetLRN)


def test_config_round_trip(model):
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()


def test_bad_num_classes():
    with pytest.raises(ValueError, match="-1"):
        vgg_f(num_classes=-1)
