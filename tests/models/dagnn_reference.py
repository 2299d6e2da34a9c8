"""MatConvNet DagNN files for the tests: a ResNet-50 listed in the model zoo's layout, a
writer producing what `dagnn.DagNN.saveobj` + `save` produce, and a NumPy forward pass.

Written from MatConvNet's source (matlab/+dagnn/@DagNN/saveobj.m and loadobj.m, Conv.m,
BatchNorm.m, Pooling.m, ReLU.m, Sum.m, utils/import-caffe.py) and the Caffe ResNet-50 it
imports, NOT from fer_distill: the forward pass runs each layer with the SimpleNN NumPy
reference (`matconvnet_reference`), walking the graph by variable names, so it is an
independent second opinion on the Keras model the package builds.
"""
from __future__ import annotations

import numpy as np
import scipy.io

from . import matconvnet_reference as ref

LAYER_FIELDS = ("name", "type", "inputs", "outputs", "params", "block")
PARAM_FIELDS = ("name", "value", "learningRate", "weightDecay")


def resnet50_dag(rng, *, width=64, num_classes=1000, zeros=False):
    """(layers, params) of ResNet-50 as `imagenet-resnet-50-dag.mat` lists them.

    Layers are dicts with the saved fields; variables are named as the Caffe importer names
    them (`data`, the layer's own name, an `x` suffix for the in-place ReLUs), not as the
    package names them. Weights are random (He-scaled), or zeros (with unit sigmas) when only
    the structure matters.
    """
    layers, params = [], {}

    def value(shape, std):
        if zeros:
            return np.zeros(shape, np.float32)
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def conv(name, src, kh, cin, cout, stride=1, pad=0, bias=False, first=False):
        std = np.sqrt(2.0 / (kh * kh * cin)) / (64.0 if first else 1.0)
        names = [f"{name}_filter"] + ([f"{name}_bias"] if bias else [])
        params[names[0]] = value((kh, kh, cin, cout), std)
        if bias:
            params[names[1]] = value((cout,), 0.1)
        layers.append({"name": name, "type": "dagnn.Conv", "inputs": [src], "outputs": [name],
                       "params": names,
                       "block": {"size": np.array([[kh, kh, cin, cout]], float),
                                 "hasBias": bias, "opts": [],
                                 "pad": np.array([[pad] * 4], float),
                                 "stride": np.array([[stride, stride]], float),
                                 "dilate": np.array([[1.0, 1.0]])}})
        return name

    def bnorm(name, src, channels):
        params[f"{name}_mult"] = (np.ones((channels, 1), np.float32) if zeros else
                                  rng.uniform(0.5, 1.5, (channels, 1)).astype(np.float32))
        params[f"{name}_bias"] = value((channels, 1), 0.1)
        moments = np.ones((channels, 2), np.float32)
        if not zeros:
            moments[:, 0] = rng.standard_normal(channels) * 0.1
            moments[:, 1] = rng.uniform(0.5, 2.0, channels)
        params[f"{name}_moments"] = moments
        layers.append({"name": name, "type": "dagnn.BatchNorm", "inputs": [src],
                       "outputs": [name],
                       "params": [f"{name}_mult", f"{name}_bias", f"{name}_moments"],
                       "block": {"numChannels": float(channels), "epsilon": 1e-5}})
        return name

    def relu(name, src):
        layers.append({"name": name, "type": "dagnn.ReLU", "inputs": [src],
                       "outputs": [src + "x"], "params": [],
                       "block": {"useShortCircuit": True, "leak": 0.0, "opts": []}})
        return src + "x"

    def pooling(name, src, size, stride, pad, method):
        layers.append({"name": name, "type": "dagnn.Pooling", "inputs": [src],
                       "outputs": [name], "params": [],
                       "block": {"method": method, "poolSize": np.array([[size, size]], float),
                                 "opts": [], "pad": np.array([pad], float),
                                 "stride": np.array([[stride, stride]], float)}})
        return name

    x = conv("conv1", "data", 7, 3, width, stride=2, pad=3, bias=True, first=True)
    x = relu("conv1_relu", bnorm("bn_conv1", x, width))
    x = pooling("pool1", x, 3, 2, [0, 1, 0, 1], "max")
    channels = width
    for stage, units, base in ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)):
        inner = base * width // 64
        for u in range(units):
            unit = f"{stage}{'abcdef'[u]}"
            stride = 2 if u == 0 and stage > 2 else 1
            shortcut = x
            if u == 0:
                shortcut = bnorm(f"bn{unit}_branch1",
                                 conv(f"res{unit}_branch1", x, 1, channels, 4 * inner, stride),
                                 4 * inner)
            y = conv(f"res{unit}_branch2a", x, 1, channels, inner, stride)
            y = relu(f"res{unit}_branch2a_relu", bnorm(f"bn{unit}_branch2a", y, inner))
            y = conv(f"res{unit}_branch2b", y, 3, inner, inner, pad=1)
            y = relu(f"res{unit}_branch2b_relu", bnorm(f"bn{unit}_branch2b", y, inner))
            y = bnorm(f"bn{unit}_branch2c", conv(f"res{unit}_branch2c", y, 1, inner, 4 * inner),
                      4 * inner)
            layers.append({"name": f"res{unit}", "type": "dagnn.Sum",
                           "inputs": [shortcut, y], "outputs": [f"res{unit}"], "params": [],
                           "block": {"numInputs": 2.0}})
            x = relu(f"res{unit}_relu", f"res{unit}")
            channels = 4 * inner
    return layers, params, x, channels


def finish_resnet(layers, params, x, channels, rng, *, pool5, num_classes, zeros=False):
    """Appends pool5 (average, `pool5` x `pool5`), fc1000 and the softmax `prob`."""
    layers.append({"name": "pool5", "type": "dagnn.Pooling", "inputs": [x], "outputs": ["pool5"],
                   "params": [],
                   "block": {"method": "avg", "poolSize": np.array([[pool5, pool5]], float),
                             "opts": [], "pad": np.zeros((1, 4)), "stride": np.ones((1, 2))}})
    std = np.sqrt(1.0 / channels)
    params["fc1000_filter"] = (np.zeros((1, 1, channels, num_classes), np.float32) if zeros else
                               (rng.standard_normal((1, 1, channels, num_classes)) * std)
                               .astype(np.float32))
    params["fc1000_bias"] = (np.zeros(num_classes, np.float32) if zeros else
                             (rng.standard_normal(num_classes) * 0.1).astype(np.float32))
    layers.append({"name": "fc1000", "type": "dagnn.Conv", "inputs": ["pool5"],
                   "outputs": ["fc1000"], "params": ["fc1000_filter", "fc1000_bias"],
                   "block": {"size": np.array([[1, 1, channels, num_classes]], float),
                             "hasBias": True, "opts": [], "pad": np.zeros((1, 4)),
                             "stride": np.ones((1, 2)), "dilate": np.ones((1, 2))}})
    layers.append({"name": "prob", "type": "dagnn.SoftMax", "inputs": ["fc1000"],
                   "outputs": ["prob"], "params": [], "block": np.zeros((0, 0))})
    return layers, params


def _cell(strings):
    cell = np.empty((1, len(strings)) if strings else (0, 0), dtype=object)
    for i, s in enumerate(strings):
        cell[0, i] = s
    return cell


def _struct_array(items, fields):
    array = np.empty((1, len(items)), dtype=[(f, object) for f in fields])
    for i, item in enumerate(items):
        for field in fields:
            value = item[field]
            if field in ("inputs", "outputs", "params"):
                value = _cell(value)
            elif isinstance(value, dict):
                value = {k: (_cell(v) if isinstance(v, list) else v) for k, v in value.items()}
            array[field][0, i] = value
    return array


def dagnn_variables(layers, params, *, average_image, image_size, class_names):
    """The variables `s = net.saveobj()` holds, as scipy.io.savemat writes them."""
    params_list = [{"name": name, "value": value, "learningRate": 1.0,
                    "weightDecay": 1.0} for name, value in params.items()]
    all_vars = ["data"] + [out for layer in layers for out in layer["outputs"]]
    return {
        "vars": _struct_array([{"name": v, "precious": False} for v in all_vars],
                              ("name", "precious")),
        "params": _struct_array(params_list, PARAM_FIELDS),
        "layers": _struct_array(layers, LAYER_FIELDS),
        "meta": {"normalization": {"averageImage": average_image,
                                   "imageSize": np.array([[image_size, image_size, 3]], float),
                                   "interpolation": "bilinear", "keepAspect": True},
                 "classes": {"name": _cell(class_names), "description": _cell(class_names)}},
        "conserveMemory": True,
    }


def write_dagnn(path, layers, params, *, average_image, image_size, class_names,
                as_net_struct=False):
    """Writes a DagNN file: top-level variables (the model zoo's `save(file, '-struct', 's')`)
    or, `as_net_struct`, one struct `net` (as `cnn_train_dag` checkpoints save it)."""
    variables = dagnn_variables(layers, params, average_image=average_image,
                                image_size=image_size, class_names=class_names)
    if as_net_struct:
        variables = {"net": variables, "state": {"epoch": 1.0},
                     "stats": {"train": np.zeros((0, 0))}}
    scipy.io.savemat(path, variables, format="5", long_field_names=True, oned_as="row")
    return path


def forward(layers, params, image, average_image):
    """Runs the DagNN on one H x W x 3 image (0-255) in test mode; {variable: value}."""
    values = {"data": np.asarray(image, np.float64) - np.asarray(average_image, np.float64)}
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(v in values for v in layer["inputs"])]
        assert ready, "the graph does not close"
        for layer in ready:
            values[layer["outputs"][0]] = _run(layer, [values[v] for v in layer["inputs"]],
                                               [params[p] for p in layer["params"]])
        pending = [layer for layer in pending if layer not in ready]
    return values


def _run(layer, inputs, weights):
    block, kind = layer["block"], layer["type"]
    if kind == "dagnn.Conv":
        bias = weights[1] if block["hasBias"] else None
        return ref.conv(inputs[0], weights[0], bias, block.get("stride", 1),
                        block.get("pad", 0))  # dagnn.Filter's defaults
    if kind == "dagnn.BatchNorm":
        return ref.bnorm(inputs[0], *weights)  # test mode: the stored moments
    if kind == "dagnn.ReLU":
        return ref.relu(inputs[0], block.get("leak", 0.0))
    if kind == "dagnn.Pooling":
        return ref.pool(inputs[0], block["poolSize"], block["stride"], block["pad"],
                        block["method"])
    if kind == "dagnn.Sum":
        return sum(inputs)
    if kind == "dagnn.SoftMax":
        z = np.exp(inputs[0] - inputs[0].max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    raise ValueError(f"reference has no layer type {kind!r}")
