"""MatConvNet files → Keras, checked against the independent NumPy reference.

The tests write real-format files themselves: the networks are listed here in MatConvNet's
own layout (from `cnn_imagenet_init.m` and the model zoo), with random weights, and saved with
`scipy.io.savemat` in each SimpleNN layout; v7.3 files come from
experiments/matconvnet_writer.py and are checked against MATLAB's HDF5 conventions. Full-size VGG-f and VGG-face are built once per
module and run on one 224x224 image.
"""
import numpy as np
import pytest
import scipy.io

from experiments import matconvnet_writer as writer
from fer_distill import models
from fer_distill.models import matconvnet as mc

from . import matconvnet_reference as ref

# --------------------------------------------------------------------------------------------
# Networks in MatConvNet's layout (the test's own listing, not the package's builders)
# --------------------------------------------------------------------------------------------


def _conv(rng, name, kh, kw, cin, cout, stride=1, pad=0, first=False, dilate=1):
    # He-scaled random weights keep the scale of a deep random network near 1; the first
    # layer also divides by the ~64 standard deviation of 0-255 pixels.
    std = np.sqrt(2.0 / (kh * kw * cin)) / (64.0 if first else 1.0)
    filters = (rng.standard_normal((kh, kw, cin, cout), dtype=np.float32) * np.float32(std))
    biases = (rng.standard_normal((cout, 1), dtype=np.float32) * np.float32(0.1))
    return {"name": name, "type": "conv", "weights": [filters, biases],
            "size": np.array([[kh, kw, cin, cout]], float), "pad": pad, "stride": stride,
            "dilate": dilate}


def _relu(name, leak=0.0):
    return {"name": name, "type": "relu", "leak": leak}


def _pool(name, size, stride, pad=0, method="max"):
    return {"name": name, "type": "pool", "method": method, "pool": np.array([[size, size]],
                                                                                float),
            "stride": stride, "pad": pad}


def _lrn(name, param=(5, 2, 1e-4, 0.75)):
    return {"name": name, "type": "lrn", "param": np.array([param], float)}


def vgg_f_net(rng, num_classes=8):
    layers = [
        _conv(rng, "conv1", 11, 11, 3, 64, stride=4, first=True), _relu("relu1"),
        _lrn("norm1"), _pool("pool1", 3, 2, np.array([[0, 1, 0, 1]], float)),
        _conv(rng, "conv2", 5, 5, 64, 256, pad=2), _relu("relu2"), _lrn("norm2"),
        _pool("pool2", 3, 2), _conv(rng, "conv3", 3, 3, 256, 256, pad=1), _relu("relu3"),
        _conv(rng, "conv4", 3, 3, 256, 256, pad=1), _relu("relu4"),
        _conv(rng, "conv5", 3, 3, 256, 256, pad=1), _relu("relu5"), _pool("pool5", 3, 2),
        _conv(rng, "fc6", 6, 6, 256, 4096), _relu("relu6"),
        _conv(rng, "fc7", 1, 1, 4096, 4096), _relu("relu7"),
        _conv(rng, "fc8", 1, 1, 4096, num_classes), {"name": "prob", "type": "softmax"}]
    average = rng.uniform(90, 140, (224, 224, 3)).astype(np.float32)  # a full mean image
    return layers, average


def vgg_face_net(rng, num_classes=8, dropout=False):
    layers, cin = [], 3
    for block, count, width in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512),
                                (5, 3, 512)):
        for i in range(1, count + 1):
            layers += [_conv(rng, f"conv{block}_{i}", 3, 3, cin, width, pad=1, first=cin == 3),
                       _relu(f"relu{block}_{i}")]
            cin = width
        layers.append(_pool(f"pool{block}", 2, 2))
    drop = (lambda n: [{"name": n, "type": "dropout", "rate": 0.5}]) if dropout else \
        (lambda n: [])
    layers += ([_conv(rng, "fc6", 7, 7, 512, 4096), _relu("relu6")] + drop("drop6")
               + [_conv(rng, "fc7", 1, 1, 4096, 4096), _relu("relu7")] + drop("drop7")
               + [_conv(rng, "fc8", 1, 1, 4096, num_classes),
                  {"name": "prob", "type": "softmax"}])
    return layers, np.array([129.1863, 104.7624, 93.5940], np.float32).reshape(1, 1, 3)


def small_net(rng):
    """A chain that is neither VGG: leaky ReLU, dilation, bnorm, avg pooling, dropout."""
    layers = [
        _conv(rng, "conv1", 3, 3, 3, 4, pad=1, first=True), _relu("relu1", 0.1),
        _lrn("norm1", (3, 1.0, 1e-3, 0.5)), _pool("pool1", 3, 2, np.array([[0, 1, 0, 1]], float)),
        _conv(rng, "conv2", 3, 3, 4, 6, pad=2, dilate=2),
        {"name": "bn2", "type": "bnorm", "epsilon": 1e-4,
         "weights": [rng.uniform(0.5, 2, (6, 1)).astype(np.float32),
                     rng.standard_normal((6, 1)).astype(np.float32),
                     np.stack([rng.standard_normal(6), rng.uniform(0.5, 2, 6)], 1)
                     .astype(np.float32)]},
        _relu("relu2"), _pool("pool2", 3, 2, 1, method="avg"),
        _conv(rng, "fc6", 4, 4, 6, 5), _relu("relu6"), {"name": "drop6", "type": "dropout",
                                                         "rate": 0.3},
        _conv(rng, "fc8", 1, 1, 5, 3), {"name": "loss", "type": "softmaxloss"}]
    return layers, np.array([[[100.0, 110.0, 120.0]]], np.float32)


def _cell(items):
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _matlab(value):
    """dict → struct, list → 1xN cell, for scipy.io.savemat."""
    if isinstance(value, dict):
        return {k: _matlab(v) for k, v in value.items()}
    if isinstance(value, list):
        return _cell([_matlab(v) for v in value])
    return value


def _beta16_layer(layer):
    layer = dict(layer)
    if layer["type"] == "conv":
        filters, biases = layer.pop("weights")
        layer["filters"], layer["biases"] = filters, biases.reshape(1, -1)
    if layer["type"] == "lrn":
        layer["type"] = "normalize"
    return layer


def write_mat(path, layers, average, layout, class_names=None, input_size=224, num_classes=8):
    """Writes a SimpleNN file the way each MatConvNet generation stored it."""
    size = np.array([[input_size, input_size, 3]], float)
    normalization = {"averageImage": average, "imageSize": size,
                     "interpolation": "bilinear", "keepAspect": True}
    names = class_names or [f"c{i}" for i in range(num_classes)]
    classes = {"name": names, "description": names}
    if layout == "beta17":
        variables = {"layers": layers, "meta": {"normalization": normalization,
                                                "classes": classes}}
    elif layout == "beta16":
        variables = {"layers": [_beta16_layer(l) for l in layers],
                     "normalization": normalization, "classes": classes}
    elif layout == "net":  # fields in another order than MatConvNet writes them
        variables = {"net": {"normalization": dict(reversed(normalization.items())),
                             "layers": [dict(reversed(l.items())) for l in layers],
                             "classes": classes}}
    elif layout == "checkpoint":  # cnn_train: save(file, 'net', 'state'), then 'stats'
        train = [l if l["type"] != "softmax" else {"name": "loss", "type": "softmaxloss"}
                 for l in layers]
        variables = {"net": {"layers": train, "meta": {"normalization": normalization,
                                                       "classes": classes}},
                     "state": {"solverState": [[np.zeros(1)] for _ in layers]},
                     "stats": {"train": {"objective": 1.0}, "val": {"objective": 1.2}}}
    else:
        raise AssertionError(layout)
    scipy.io.savemat(path, _matlab(variables), oned_as="column")
    return path


def _check_against_reference(model, layers, average, image):
    expected = ref.forward(layers, image, average)
    out = models.embedding_model(model).predict(image[None], verbose=0)
    for key, name in (("logits", "fc8"), ("embedding", "relu7")):
        want = expected[name].ravel()
        scale = np.abs(want).max()
        assert scale > 1e-3  # a dead network would compare zeros with zeros
        np.testing.assert_allclose(out[key][0], want, rtol=0, atol=1e-4 * scale,
                                   err_msg=f"{name} differs from MatConvNet's forward")


def _assert_same_weights(a, b):
    for layer in a.layers:
        if not layer.weights:
            continue
        other = b.get_layer(layer.name)
        for wa, wb in zip(layer.weights, other.weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=layer.name)


def _assert_same_network(network, reference, layers, average):
    """`network` (read from a file) has the reference's layer list, the source's weights and
    average image."""
    reference = reference.layers if hasattr(reference, "layers") else reference
    assert network.layers == reference
    np.testing.assert_array_equal(network.average_image, average.reshape(network.average_image
                                                                          .shape))
    for layer in layers:
        if layer["type"] == "conv":
            filters, biases = network.weights[layer["name"]]
            np.testing.assert_array_equal(filters, layer["weights"][0], err_msg=layer["name"])
            np.testing.assert_array_equal(biases, layer["weights"][1].ravel())


def _image(seed=0, size=224):
    return np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Full-size VGG-f and VGG-face
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg_f_case(tmp_path_factory):
    rng = np.random.default_rng(1)
    layers, average = vgg_f_net(rng)
    path = write_mat(tmp_path_factory.mktemp("vggf") / "imagenet-vgg-f.mat", layers, average,
                     "beta17")
    network = mc.read_matconvnet(path)
    model = mc.to_keras(network)
    network.weights.clear()  # why: 0.2 GB this module no longer needs
    return {"layers": layers, "average": average, "model": model, "network": network,
            "dir": tmp_path_factory.mktemp("vggf-layouts")}


def test_vgg_f_matches_matconvnets_forward(vgg_f_case):
    model = vgg_f_case["model"]
    assert model.name == "vgg_f" and models.architecture_of(model) == "vgg_f"
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 56_770_312
    assert model.get_layer("normalization").average_image.shape == (224, 224, 3)
    _check_against_reference(model, vgg_f_case["layers"], vgg_f_case["average"], _image(0))


@pytest.mark.parametrize("layout", ["beta16", "net", "checkpoint"])
def test_vgg_f_every_layout_reads_the_same_network(vgg_f_case, layout):
    path = write_mat(vgg_f_case["dir"] / f"{layout}.mat", vgg_f_case["layers"],
                     vgg_f_case["average"], layout)
    network = mc.read_matconvnet(path)
    assert network.layout == layout and network.architecture == "vgg_f"
    # why not build the model again: to_keras is a function of (layers, weights, normalization)
    # and the beta17 model built from them is checked against the reference above.
    _assert_same_network(network, vgg_f_case["network"], vgg_f_case["layers"],
                         vgg_f_case["average"])


def test_vgg_f_round_trips_through_matlab_v73(vgg_f_case):
    path = vgg_f_case["dir"] / "vgg-f-v73.mat"
    writer.save_matconvnet(vgg_f_case["model"], path, "beta17", matlab_version="7.3")
    network = mc.read_matconvnet(path)
    assert (network.matlab_version, network.architecture) == ("7.3", "vgg_f")
    _assert_same_weights(vgg_f_case["model"], mc.to_keras(network))


def test_vgg_f_gets_a_new_head(vgg_f_case):
    head = models.with_new_head(vgg_f_case["model"], 3, seed=0)
    assert head.output.shape == (None, 3) and head.name == "vgg_f"
    assert sum(int(np.prod(w.shape)) for w in head.trainable_weights) == \
        56_770_312 - 4096 * 5 - 5


@pytest.fixture(scope="module")
def vgg_face_case(tmp_path_factory):
    rng = np.random.default_rng(2)
    layers, average = vgg_face_net(rng, dropout=True)  # the VGG-Face release's own file
    directory = tmp_path_factory.mktemp("vggface")
    path = write_mat(directory / "vgg_face.mat", layers, average, "net")
    network = mc.read_matconvnet(path)
    model = mc.to_keras(network)
    network.weights.clear()  # why: 0.5 GB this module no longer needs
    return {"layers": layers, "average": average, "network": network, "model": model,
            "dir": directory}


def test_vgg_face_matches_matconvnets_forward(vgg_face_case):
    model, network = vgg_face_case["model"], vgg_face_case["network"]
    assert model.name == "vgg_face" and network.layout == "net"
    assert "dropout" in network.architecture_description
    assert [l.name for l in model.layers if l.__class__.__name__ == "Dropout"] == \
        ["drop6", "drop7"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 134_293_320
    _check_against_reference(model, vgg_face_case["layers"], vgg_face_case["average"],
                             _image(1))


@pytest.mark.parametrize("layout", ["beta17", "checkpoint"])
def test_vgg_face_layouts_read_the_same_network(vgg_face_case, layout):
    """VGG-face as it comes: the model zoo's beta17 vgg-face.mat (no dropout layers) and a
    fine-tuned cnn_train checkpoint (`net` struct: see the fixture; v7.3: below). beta16 is
    covered by VGG-f and the small chains, keeping 0.5 GB files to a few."""
    layers = [l for l in vgg_face_case["layers"] if l["type"] != "dropout"]
    path = write_mat(vgg_face_case["dir"] / f"{layout}.mat", layers, vgg_face_case["average"],
                     layout)
    network = mc.read_matconvnet(path)
    assert network.architecture == "vgg_face" and network.layout == layout
    reference = [l for l in vgg_face_case["network"].layers if l["type"] != "dropout"]
    _assert_same_network(network, reference, layers, vgg_face_case["average"])


def test_vgg_face_round_trips_through_matlab_v73(vgg_face_case):
    path = vgg_face_case["dir"] / "vgg_face_v73.mat"
    writer.save_matconvnet(vgg_face_case["model"], path, "net", matlab_version="7.3")
    network = mc.read_matconvnet(path)
    assert (network.matlab_version, network.architecture) == ("7.3", "vgg_face")
    model = mc.to_keras(network)
    network.weights.clear()
    _assert_same_weights(vgg_face_case["model"], model)


# --------------------------------------------------------------------------------------------
# Generic chains, layouts and the writer (small networks)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["beta17", "beta16", "net", "checkpoint"])
def test_unknown_chain_matches_reference_in_every_layout(tmp_path, layout):
    layers, average = small_net(np.random.default_rng(3))
    path = write_mat(tmp_path / "small.mat", layers, average, layout, input_size=14,
                     num_classes=3)
    network = mc.read_matconvnet(path)
    model = mc.to_keras(network)
    assert model.name == "simplenn" and network.architecture_description == \
        "unknown SimpleNN chain"
    assert network.num_classes == 3 and network.dropped == ["loss"]
    assert network.class_names == ["c0", "c1", "c2"]
    image = _image(2, size=14)
    expected = ref.forward(layers, image, average)
    out = models.embedding_model(model).predict(image[None], verbose=0)
    scale = np.abs(expected["fc8"]).max()
    np.testing.assert_allclose(out["logits"][0], expected["fc8"].ravel(), atol=1e-4 * scale)
    # without relu7/fc8 names the embedding is the input of the classifier, dropout skipped
    np.testing.assert_allclose(out["embedding"][0], expected["relu6"].ravel(),
                               atol=1e-4 * np.abs(expected["relu6"]).max())


@pytest.mark.parametrize("layout", mc.LAYOUTS)
@pytest.mark.parametrize("version", mc.MATLAB_VERSIONS)
def test_writer_round_trips_every_layout(tmp_path, layout, version):
    model = models.mini(num_classes=3, input_size=36)
    path = writer.save_matconvnet(model, tmp_path / f"net-epoch-2.mat", layout,
                              matlab_version=version, epoch=2, class_names=["a", "b", "c"])
    network = mc.read_matconvnet(path)
    assert (network.layout, network.matlab_version, network.architecture) == \
        (layout, version, "mini")
    assert network.class_names == ["a", "b", "c"]
    converted = mc.to_keras(network)
    assert converted.get_config() == model.get_config()
    _assert_same_weights(model, converted)
    images = np.stack([_image(5, 36), _image(6, 36)])
    np.testing.assert_array_equal(converted.predict(images, verbose=0),
                                  model.predict(images, verbose=0))


def test_writer_produces_what_scipy_and_matconvnet_expect(tmp_path):
    model = models.mini()
    path = writer.save_matconvnet(model, tmp_path / "m.mat", "beta17")
    raw = scipy.io.loadmat(path)
    layers = raw["layers"]
    assert layers.shape == (1, 13)  # a 1xL cell, ending with the softmax 'prob'
    conv1 = layers[0, 0][0, 0]
    assert str(conv1["type"][0]) == "conv" and str(conv1["name"][0]) == "conv1"
    filters, biases = conv1["weights"][0, 0], conv1["weights"][0, 1]
    assert filters.shape == (3, 3, 3, 16) and filters.dtype == np.float32
    assert biases.shape == (16, 1)
    np.testing.assert_array_equal(filters, model.get_layer("conv1").kernel.numpy())
    fc6 = layers[0, 7][0, 0]
    assert fc6["weights"][0, 0].shape == (8, 8, 32, 64)  # back to a whole-map conv filter
    assert str(layers[0, 12][0, 0]["type"][0]) == "softmax"
    meta = raw["meta"][0, 0]
    assert meta["normalization"][0, 0]["averageImage"].shape == (1, 1, 3)
    np.testing.assert_array_equal(meta["normalization"][0, 0]["imageSize"], [[32, 32, 3]])


def test_v73_files_follow_matlabs_hdf5_conventions(tmp_path):
    import h5py
    model = models.mini()
    path = writer.save_matconvnet(model, tmp_path / "m.mat", "beta17", matlab_version="7.3")
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        assert f["layers"].attrs["MATLAB_class"] == b"cell" and f["layers"].shape == (13, 1)
        conv1 = f[f["layers"][0, 0]]
        assert conv1.attrs["MATLAB_class"] == b"struct"
        name = conv1["name"]
        assert name.attrs["MATLAB_class"] == b"char" and name.dtype == np.uint16
        assert "".join(map(chr, name[()].ravel())) == "conv1"
        filters = f[conv1["weights"][0, 0]]
        assert filters.attrs["MATLAB_class"] == b"single"
        assert filters.shape == (16, 3, 3, 3)  # MATLAB's 3x3x3x16, dimensions reversed
        opts = conv1["opts"]
        assert opts.attrs["MATLAB_empty"] == 1 and opts.attrs["MATLAB_class"] == b"cell"


def test_a_filter_with_matlabs_trailing_singleton_dropped(tmp_path):
    """MATLAB stores a 1x1x5x1 filter as 1x1x5: one output class must still convert."""
    rng = np.random.default_rng(4)
    layers, average = small_net(rng)
    fc8 = layers[-2]
    fc8["weights"] = [fc8["weights"][0][..., :1][..., 0], fc8["weights"][1][:1]]
    path = write_mat(tmp_path / "one.mat", layers, average, "beta17", class_names=["only"],
                     input_size=14)
    model = mc.load_matconvnet(path)
    assert model.output.shape == (None, 1)


def test_pretrained_file_keeps_its_width_and_load_model_reads_mat(tmp_path):
    model = models.mini(num_classes=1000)
    path = writer.save_matconvnet(model, tmp_path / "zoo.mat")
    loaded = models.load_model(path)
    assert loaded.output.shape == (None, 1000) and loaded.name == "mini"
    assert models.with_new_head(loaded, 8).output.shape == (None, 8)


def test_convert_writes_keras_that_loads_after_import(tmp_path):
    import keras
    model = models.mini(input_size=48)
    mat = writer.save_matconvnet(model, tmp_path / "t.mat", "checkpoint", epoch=3)
    converted, summary = mc.convert(mat, tmp_path / "t.keras")
    assert summary["architecture"] == "mini" and summary["num_classes"] == 8
    assert summary["keras_parameters"] == model.count_params()
    assert summary["layout"] == "checkpoint" and summary["dropped_layers"] == ["loss"]
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    _assert_same_weights(model, loaded)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.keras", "t.mat"]


# --------------------------------------------------------------------------------------------
# Errors: file, layer (1-based index and name) and what was expected
# --------------------------------------------------------------------------------------------

def _small_file(tmp_path, edit=None, layout="beta17", name="bad.mat"):
    layers, average = small_net(np.random.default_rng(5))
    if edit:
        edit(layers)
    return write_mat(tmp_path / name, layers, average, layout, input_size=14, num_classes=3)


@pytest.mark.parametrize("edit,message", [
    (lambda l: l[2].update(type="convt"),
     r"layer 3 \('norm1'\) unknown layer type 'convt'; expected one of conv, relu"),
    (lambda l: l[1].update(type="custom"), r"layer 2 \('relu1'\) unknown layer type 'custom'"),
    (lambda l: l[4]["weights"].__setitem__(0, np.zeros((3, 3, 5, 6), np.float32)),
     r"layer 5 \('conv2', type 'conv'\): filter expects 5 input channels, input has 4"),
    (lambda l: l[0]["weights"].__setitem__(1, np.zeros((3, 1), np.float32)),
     r"layer 1 \('conv1'\) has 3 biases for 4 filters"),
    (lambda l: l[0].pop("weights"),
     r"layer 1 \('conv1'\) has neither 'weights' nor 'filters'/'biases'"),
    (lambda l: l[3].update(pad=np.array([[0, 3, 0, 3]], float)),
     r"layer 4 \('pool1'\) pooling padding \[0, 3, 0, 3\] must be smaller than the pool"),
    (lambda l: l.insert(5, {"name": "prob", "type": "softmax"}),
     r"layer 7 \('bn2'\) a 'bnorm' layer follows the 'prob' softmax/loss layer"),
    (lambda l: l[5]["weights"].pop(),
     r"layer 6 \('bn2'\) bnorm has no moments"),
    (lambda l: l[1].pop("type"), r"layer 2 \('relu1'\) field 'type' is missing"),
    (lambda l: l[8].update(weights=[np.zeros((5, 5, 6, 5), np.float32),
                                    np.zeros((5, 1), np.float32)]),
     r"layer 9 \('fc6', type 'conv'\): 5x5 filter is larger than its padded 4x4 input"),
])
def test_layer_errors_name_file_layer_and_expectation(tmp_path, edit, message):
    path = _small_file(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as error:
        mc.load_matconvnet(path)
    assert str(path) in str(error.value)


def test_dagnn_file_is_read_as_a_graph_and_a_map_output_refused(tmp_path):
    """DagNN files go to the graph reader (tests/models/test_dagnn.py); this one-conv graph
    ends in a 6x6 map, not logits, and the error says so, naming the file."""
    layer = {"name": "conv1", "type": "dagnn.Conv", "inputs": ["input"], "outputs": ["x1"],
             "params": ["conv1f", "conv1b"], "block": {"size": np.array([[3, 3, 3, 4]], float)}}
    array = np.empty((1, 1), dtype=[(k, object) for k in layer])
    for key, value in layer.items():
        array[key][0, 0] = _matlab(value)
    path = tmp_path / "dag.mat"
    scipy.io.savemat(path, {"layers": array, "vars": _cell([]), "params": _cell([]),
                            "meta": {"normalization": {"imageSize": np.array([[8, 8, 3]])}}})
    with pytest.raises(ValueError, match=r"dag.mat: network 'dagnn' ends with a \(6, 6, 4\) "
                                         r"map, not a vector of logits"):
        mc.load_matconvnet(path)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_truncated_files_are_refused(tmp_path, version):
    path = writer.save_matconvnet(models.mini(), tmp_path / "t.mat", matlab_version=version)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t.mat: not a readable MATLAB .*truncated"):
        mc.load_matconvnet(path)


def test_non_matlab_and_missing_files(tmp_path):
    text = tmp_path / "notes.mat"
    text.write_text("this is not a MATLAB file\n" * 20)
    with pytest.raises(ValueError, match=r"notes.mat: not a readable MATLAB"):
        mc.load_matconvnet(text)
    with pytest.raises(FileNotFoundError, match="absent.mat"):
        mc.load_matconvnet(tmp_path / "absent.mat")


def test_missing_top_level_fields(tmp_path):
    path = tmp_path / "weights.mat"
    scipy.io.savemat(path, {"W": np.zeros((2, 2)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"weights.mat: has variables \['W', 'b'\]; expected a "
                                         r"SimpleNN network"):
        mc.load_matconvnet(path)
    layers, _ = small_net(np.random.default_rng(6))
    path = tmp_path / "nonorm.mat"
    scipy.io.savemat(path, {"layers": _matlab(layers)})
    with pytest.raises(ValueError, match=r"nonorm.mat: has no normalization struct"):
        mc.load_matconvnet(path)


def test_a_chain_without_a_classifier_vector_is_refused(tmp_path):
    path = _small_file(tmp_path, lambda l: l.__delitem__(slice(8, 12)))
    with pytest.raises(ValueError, match=r"bad.mat: .*ends with a \(4, 4, 6\) map"):
        mc.load_matconvnet(path)


def test_odd_names_are_made_keras_safe(tmp_path):
    path = _small_file(tmp_path, lambda l: (l[1].update(name="relu 1/a"),
                                            l[2].update(name="relu 1/a")))
    network = mc.read_matconvnet(path)
    assert network.renamed == [("relu 1/a", "relu_1_a"), ("relu 1/a", "relu_1_a_2")]
    assert [l["name"] for l in network.layers][1:3] == ["relu_1_a", "relu_1_a_2"]
    mc.to_keras(network)
