"""VGG-face: VGG-16 with MatConvNet's names, no dropout (as the model zoo's vgg-face.mat),
the 1x1x3 mean colour, exact parameter count."""
import keras
import numpy as np
import pytest

from fer_distill.models import vgg_face


@pytest.fixture(scope="module")
def model():
    return vgg_face(num_classes=8)


def test_exact_trainable_parameter_count(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 134_293_320
    assert model.count_params() == 134_293_320 + 3


def test_names_sizes_and_mean(model):
    names = [l.name for l in model.layers]
    assert model.name == "vgg_face"
    assert names[:7] == ["image", "normalization", "conv1_1", "relu1_1", "conv1_2",
                         "relu1_2", "pool1"]
    assert names[-6:] == ["flatten", "fc6", "relu6", "fc7", "relu7", "fc8"]
    assert "conv5_3" in names and "pool5" in names
    assert model.get_layer("pool5").output.shape == (None, 7, 7, 512)
    assert model.get_layer("fc6").kernel.shape == (7 * 7 * 512, 4096)
    assert model.get_layer("relu7").output.shape == (None, 4096)
    assert not any(isinstance(l, keras.layers.Dropout) for l in model.layers)
    np.testing.assert_allclose(model.get_layer("normalization").average_image.numpy().ravel(),
                               [129.1863, 104.7624, 93.5940], rtol=1e-6)


def test_config_round_trip(model):
    clone = keras.Model.from_config(model.get_config())  # (from_config consumes its dict)
    assert clone.get_config() == model.get_config()
