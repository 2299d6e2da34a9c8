"""MatConvNet DagNN files → Keras, checked against the independent NumPy DagNN forward pass.

The files are written here in the model zoo's layout (`dagnn_reference`): a ResNet-50 of the
real topology and names at width 8 (conv1 8 channels, pool5 256) on 70x70 images (odd map
sizes all the way down: 35, 17, 9, 5, 3), its layers listed in a shuffled order, and a
full-size ResNet-50 with zero weights for the exact structure.
"""
import keras
import numpy as np
import pytest
import scipy.io

from experiments import matconvnet_writer as writer
from experiments.convert_matconvnet import format_summary
from fer_distill import models
from fer_distill.models import matconvnet as mc

from . import dagnn_reference as dref

SIZE, WIDTH, CLASSES = 70, 8, 8
NAMES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


def _reduced(rng, shuffle=True):
    layers, params, x, channels = dref.resnet50_dag(rng, width=WIDTH)
    layers, params = dref.finish_resnet(layers, params, x, channels, rng, pool5=3,
                                        num_classes=CLASSES)
    if shuffle:  # a file need not list its layers in execution order
        layers = [layers[i] for i in rng.permutation(len(layers))]
    return layers, params


def _write(path, layers, params, average, size=SIZE, **kwargs):
    return dref.write_dagnn(path, layers, params, average_image=average, image_size=size,
                            class_names=NAMES, **kwargs)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    rng = np.random.default_rng(0)
    layers, params = _reduced(rng)
    average = rng.uniform(90, 140, (SIZE, SIZE, 3)).astype(np.float32)  # a full mean image
    path = _write(tmp_path_factory.mktemp("dag") / "resnet-dag.mat", layers, params, average)
    return path, layers, params, average


def test_reduced_resnet_equals_the_numpy_dagnn_forward(reduced):
    path, layers, params, average = reduced
    network = mc.read_matconvnet(path)
    assert (network.layout, network.architecture) == ("dagnn-top", "resnet50")
    assert network.dropped == ["prob"] and network.class_names == NAMES
    model = mc.load_matconvnet(path)
    assert model.name == "resnet50" and model.input.shape == (None, SIZE, SIZE, 3)
    assert models.embedding_layer(model).name == "pool5"
    assert models.logits_layer(model).name == "fc1000"
    images = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    out = {k: v.numpy() for k, v in models.embedding_model(model)(images).items()}
    assert out["embedding"].shape == (2, 32 * WIDTH) and out["logits"].shape == (2, CLASSES)
    for i, image in enumerate(images):
        values = dref.forward(layers, params, image, average)
        for key, var in (("logits", "fc1000"), ("embedding", "pool5")):
            expected = values[var].reshape(-1)
            scale = np.abs(expected).max()
            assert scale > 1e-2  # not a dead network: the comparison means something
            np.testing.assert_allclose(out[key][i], expected, rtol=0, atol=1e-4 * scale)
        # the softmax MatConvNet puts on top is what a softmax of our logits gives
        np.testing.assert_allclose(keras.ops.softmax(out["logits"][i]).numpy(),
                                   values["prob"].reshape(-1), atol=1e-5)


def test_converted_graph_is_the_builders_resnet50(reduced):
    path, *_ = reduced
    model = mc.load_matconvnet(path)
    built = models.resnet50(CLASSES, SIZE, width=WIDTH)
    assert [l.name for l in model.layers] == [l.name for l in built.layers]
    for ours, theirs in zip(model.layers, built.layers):
        assert type(ours) is type(theirs), ours.name
        if ours.name != "normalization":  # the file's mean is a full image, the builder's RGB
            assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    assert model.get_layer("pool1").pad == (0, 1, 0, 1)
    assert model.get_layer("res3a_branch2a").strides == (2, 2)
    assert not model.get_layer("res3a_branch2a").use_bias and model.get_layer("conv1").use_bias


def test_net_struct_layout_converts_through_the_binary_path(tmp_path):
    rng = np.random.default_rng(2)
    layers, params = _reduced(rng, shuffle=False)
    average = np.array([[[122.0, 116.0, 104.0]]], np.float32)
    path = _write(tmp_path / "net-epoch-3.mat", layers, params, average, as_net_struct=True)
    model, summary = mc.convert(path, tmp_path / "resnet.keras")
    assert summary["layout"] == "dagnn-checkpoint" and summary["architecture"] == "resnet50"
    assert summary["num_classes"] == CLASSES and summary["dropped_layers"] == ["prob"]
    assert summary["parameters"] == sum(v.size for v in params.values())
    assert summary["keras_parameters"] == summary["parameters"] + 3  # + the mean colour
    assert "ResNet-50" in format_summary(summary)
    loaded = models.load_model(tmp_path / "resnet.keras")
    image = rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(image).numpy(), model(image).numpy(), rtol=1e-6,
                               atol=1e-6)


def _tiny_graph():
    """conv (whole 4x4 map) → relu → conv 1x1: a two-layer DagNN classifier on 4x4 images."""
    rng = np.random.default_rng(3)
    layers = [
        {"name": "c1", "type": "dagnn.Conv", "inputs": ["data"], "outputs": ["a"],
         "params": ["c1f", "c1b"], "block": {"size": np.array([[4, 4, 3, 5]], float),
                                              "hasBias": True}},
        {"name": "r1", "type": "dagnn.ReLU", "inputs": ["a"], "outputs": ["b"], "params": [],
         "block": {"leak": 0.0}},
        {"name": "c2", "type": "dagnn.Conv", "inputs": ["b"], "outputs": ["c"],
         "params": ["c2f", "c2b"], "block": {"size": np.array([[1, 1, 5, 2]], float),
                                              "hasBias": True}},
    ]
    params = {"c1f": rng.standard_normal((4, 4, 3, 5)).astype(np.float32),
              "c1b": np.zeros(5, np.float32),
              "c2f": rng.standard_normal((1, 1, 5, 2)).astype(np.float32),
              "c2b": np.zeros(2, np.float32)}
    return layers, params


@pytest.mark.parametrize("break_it, message", [
    (lambda l, p: l[1].update(type="dagnn.Concat"),
     r"layer 2 \('r1'\): unknown layer type 'dagnn.Concat'"),
    (lambda l, p: p.pop("c2f"),
     r"layer 3 \('c2'\): names parameter 'c2f', which the file's params do not hold"),
    (lambda l, p: l[2].update(inputs=["b", "label"]),
     r"layer 3 \('c2'\): has inputs \['b', 'label'\]|reads variables \['data', 'label'\]"),
    (lambda l, p: p.update(c1f=np.zeros((3, 3, 3, 5), np.float32)),
     r"layer 1 \('c1'\): filters have shape \[3, 3, 3, 5\]; block.size is \[4, 4, 3, 5\]"),
    (lambda l, p: l[0].update(outputs=["b"]),
     r"layer 2 \('r1'\): writes variable 'b', which layer 1 \('c1'\) writes too"),
])
def test_bad_graphs_name_the_file_and_the_layer(tmp_path, break_it, message):
    layers, params = _tiny_graph()
    good = _write(tmp_path / "good.mat", layers, params, np.zeros((1, 1, 3), np.float32), size=4)
    assert mc.load_matconvnet(good).output.shape == (None, 2)
    break_it(layers, params)
    path = _write(tmp_path / "bad.mat", layers, params, np.zeros((1, 1, 3), np.float32), size=4)
    with pytest.raises(ValueError, match=r"bad.mat: .*(?:" + message + ")"):
        mc.load_matconvnet(path)


def test_matlab_v73_dagnn_file(tmp_path):
    """The same graph as MATLAB's `save -v7.3` stores it (HDF5 struct arrays of references;
    written by experiments/matconvnet_writer.py's v7.3 writer, checked against MATLAB's
    conventions in test_matconvnet.py)."""
    layers, params = _tiny_graph()
    variables = {
        "layers": writer.StructArray(layers),
        "params": writer.StructArray([{"name": k, "value": v} for k, v in params.items()]),
        "vars": writer.StructArray([{"name": n, "precious": False}
                                    for n in ("data", "a", "b", "c")]),
        "meta": {"normalization": {"averageImage": np.full((1, 1, 3), 100.0, np.float32),
                                   "imageSize": np.array([[4.0, 4.0, 3.0]])}}}
    path = tmp_path / "dag73.mat"
    writer.write_v73(path, variables)
    network = mc.read_matconvnet(path)
    assert (network.layout, network.matlab_version) == ("dagnn-top", "7.3")
    image = np.random.default_rng(4).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    expected = dref.forward(layers, params, image[0], np.full((1, 1, 3), 100.0))["c"]
    np.testing.assert_allclose(mc.to_keras(network)(image).numpy()[0], expected.reshape(-1),
                               rtol=1e-5, atol=1e-4)


def test_a_saved_dagnn_object_is_refused_with_the_fix(tmp_path):
    """scipy cannot read MATLAB objects: a `dagnn.DagNN` saved as an object is an error that
    says how to save it as a struct instead."""
    path = tmp_path / "object.mat"
    scipy.io.savemat(path, {"x": np.zeros(1)})
    from fer_distill.models.matconvnet import _Context, _find_net, _Opaque

    with pytest.raises(ValueError, match=r"object.mat: holds a dagnn.DagNN object.*saveobj"):
        _find_net({"net": _Opaque("MATLAB object of class dagnn.DagNN")}, _Context(path))


def test_full_size_resnet50_file_has_exactly_the_builders_parameters(tmp_path):
    layers, params, x, channels = dref.resnet50_dag(None, zeros=True)
    layers, params = dref.finish_resnet(layers, params, x, channels, None, pool5=7,
                                        num_classes=CLASSES, zeros=True)
    average = np.array([[[123.68, 116.779, 103.939]]], np.float32)
    path = _write(tmp_path / "imagenet-resnet-50-dag.mat", layers, params, average, size=224)
    network = mc.read_matconvnet(path)
    assert network.architecture == "resnet50" and network.num_classes == CLASSES
    model = mc.to_keras(network)
    in_file = sum(v.size for v in params.values())
    assert in_file == 23_577_608  # counted from the file's arrays, not from Keras
    # resnet50(8).count_params() is this number too (test_resnet50.py); the names are the
    # builder's (a narrow one: names and map sizes do not depend on the width)
    assert model.count_params() == in_file + 3 == 23_577_611  # + the mean colour
    built = models.resnet50(CLASSES, width=4)
    assert [l.name for l in model.layers] == [l.name for l in built.layers]
    assert model.get_layer("pool5").output.shape == (None, 2048)
    assert model.get_layer("res5c_relu").output.shape == (None, 7, 7, 2048)


def test_batch_norm_sigma_is_used_as_stored_even_below_sqrt_epsilon():
    """vl_nnbnorm divides by the file's sigma; a sigma below sqrt(epsilon) (moments computed
    with a smaller epsilon than the block records) must still be exact in Keras."""
    from fer_distill.models import dagnn

    layer = keras.layers.BatchNormalization(epsilon=1e-4)
    layer.build((None, 2))
    sigma = np.array([1e-3, 2.0])
    moments = np.stack([np.array([0.5, -1.0]), sigma], axis=1)
    values = dagnn._bnorm_weights({"name": "bn"}, [np.ones(2), np.zeros(2), moments], layer)
    layer.set_weights([v.astype(np.float32) for v in values])
    x = np.array([[0.501, 1.0]], np.float32)
    expected = (x - moments[:, 0]) / sigma
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-4)
