"""MatConvNet SimpleNN `.mat` files ⇄ Keras models of this package.

`load_matconvnet(path)` converts any SimpleNN chain (MATLAB v5 or v7.3; layouts `LAYOUTS`)
into a Keras model whose layers carry MatConvNet's names, with the file's own number of
classes. DagNN files are recognised too: `read_matconvnet` then returns a
`dagnn.DagNNNetwork`, and `to_keras`/`convert` build it (a ResNet-50 graph as `resnet50`).
What it cannot convert faithfully is a `ValueError` naming the file, the layer and what was
expected. Writing `.mat` files is `experiments/matconvnet_writer.py`, outside the package.
Layouts, layer types and defaults: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Sequence

import h5py
import keras
import numpy as np
import scipy.io

from fer_distill.atomic import atomic_path
from fer_distill.models import dagnn
from fer_distill.models import layers as mcn
from fer_distill.models import simplenn as nn
from fer_distill.models.mini import MIN_INPUT_SIZE as MINI_MIN_INPUT_SIZE
from fer_distill.models.mini import layers as mini_layers
from fer_distill.models.resnet50 import recognise as recognise_resnet50
from fer_distill.models.vgg_f import layers as vgg_f_layers
from fer_distill.models.vgg_face import layers as vgg_face_layers

LAYOUTS = ("beta17", "beta16", "net", "checkpoint")
MATLAB_VERSIONS = ("5", "7.3")
SUPPORTED_TYPES = ("conv", "relu", "pool", "normalize", "lrn", "dropout", "bnorm", "softmax",
                   "softmaxloss", "loss")
_LOSS_TYPES = ("softmax", "softmaxloss", "loss")
UNKNOWN_ARCHITECTURE = "simplenn"


# --------------------------------------------------------------------------------------------
# Reading MATLAB files into plain Python: struct → dict, cell → list, char → str,
# numeric → ndarray (MATLAB's dimension order). Everything downstream reads fields by name.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Opaque:
    """A MATLAB value with no plain equivalent (an object such as dagnn.DagNN, a function
    handle); kept only so that an error can say what it was."""
    kind: str


def read_mat(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The top-level variables of a `.mat` file as plain Python, and the MATLAB version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MatConvNet file not found: {path}")
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as handle:
                return {key: _from_h5(handle[key], handle) for key in handle
                        if not key.startswith("#")}, "7.3"
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"{path}: not a readable MATLAB v7.3 (HDF5) file (truncated or corrupt?): "
                f"{error}") from None
    try:
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True,
                               chars_as_strings=True)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, zlib.error …
        raise ValueError(
            f"{path}: not a readable MATLAB .mat file (truncated, corrupt or another format?): "
            f"{type(error).__name__}: {error}") from None
    return {key: _from_v5(value) for key, value in raw.items()
            if not key.startswith("__")}, "5"


def _from_v5(value):
    if isinstance(value, scipy.io.matlab.MatlabOpaque):
        return _Opaque("MATLAB object")
    if isinstance(value, scipy.io.matlab.MatlabFunction):
        return _Opaque("function handle")
    if isinstance(value, np.ndarray):
        if value.dtype.names:  # struct, or struct array
            items = [{name: _from_v5(element[name]) for name in value.dtype.names}
                     for element in value.flatten(order="F")]
            return items[0] if value.size == 1 else items
        if value.dtype == object:  # cell
            return [_from_v5(element) for element in value.flatten(order="F")]
        if value.dtype.kind == "U":  # char (one string per row)
            strings = [str(s) for s in value.flatten(order="F")]
            return strings[0] if len(strings) == 1 else ("" if not strings else strings)
        return value
    return value


def _is_struct_array_field(member) -> bool:
    return (isinstance(member, h5py.Dataset) and member.dtype == h5py.ref_dtype
            and not _h5_class(member))


def _h5_class(node) -> str:
    cls = node.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _from_h5(node, handle):
    cls = _h5_class(node)
    if isinstance(node, h5py.Group):
        if cls and cls != "struct":
            return _Opaque(f"MATLAB object of class {cls}")
        members = {key: node[key] for key in node}
        if any(_is_struct_array_field(member) for member in members.values()):
            # a struct ARRAY: each field holds one reference per element
            columns = {key: [_from_h5(handle[ref], handle) for ref in np.ravel(member[()])]
                       for key, member in members.items()}
            count = min(len(column) for column in columns.values())
            items = [{key: column[i] for key, column in columns.items()}
                     for i in range(count)]
            return items[0] if count == 1 else items
        return {key: _from_h5(member, handle) for key, member in members.items()}
    if node.attrs.get("MATLAB_empty", 0):
        if cls == "cell":
            return []
        if cls == "char":
            return ""
        return np.zeros([int(d) for d in np.ravel(node[()])], dtype=np.float64)
    data = node[()]
    if cls == "cell":
        # stored transposed: MATLAB's column-major order is the stored row-major order
        return [_from_h5(handle[ref], handle) for ref in np.ravel(data)]
    if cls == "char":
        rows = np.atleast_2d(data).T  # (rows, columns) as in MATLAB
        strings = ["".join(chr(c) for c in row) for row in rows]
        return strings[0] if len(strings) == 1 else strings
    if cls == "logical":
        return np.asarray(data).T.astype(bool)
    if cls in ("function_handle",) or data.dtype == h5py.ref_dtype:
        return _Opaque(cls or "reference")
    return np.asarray(data).T


# --------------------------------------------------------------------------------------------
# Interpreting the variables as a SimpleNN network
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class MatConvNetNetwork:
    """What a SimpleNN file says, interpreted: the layer chain, its weights and its meta data.

    `layers` are `simplenn` layer dicts (Keras-safe names); `weights[name]` the arrays of the
    layer in Keras order; `dropped` the trailing softmax/loss layers; `renamed` lists
    (file name, Keras name) for names Keras cannot use or that repeat.
    """
    path: Path
    layout: str
    matlab_version: str
    layers: list[dict]
    weights: dict[str, list[np.ndarray]]
    input_shape: tuple[int, int, int]
    average_image: np.ndarray
    class_names: list[str] | None
    dropped: list[str]
    renamed: list[tuple[str, str]]
    architecture: str = UNKNOWN_ARCHITECTURE
    architecture_description: str = "unknown SimpleNN chain"

    @property
    def num_classes(self) -> int:
        last = [layer for layer in self.layers if layer["type"] == "conv"][-1]
        return int(last["size"][3])

    def summary(self) -> dict[str, Any]:
        """A JSON-able description, for the converter's report."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer["type"]] = counts.get(layer["type"], 0) + 1
        mean = self.average_image.reshape(-1, self.average_image.shape[-1]).mean(axis=0)
        lrn_params = sorted({tuple(layer["param"]) for layer in self.layers
                             if layer["type"] == "lrn"})
        return {
            "file": str(self.path),
            "layout": self.layout,
            "matlab_version": self.matlab_version,
            "architecture": self.architecture,
            "architecture_description": self.architecture_description,
            "input_shape": list(self.input_shape),
            "layers": [layer["name"] for layer in self.layers],
            "layer_types": counts,
            "dropped_layers": self.dropped,
            "renamed_layers": [list(pair) for pair in self.renamed],
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "normalization": {
                "average_image_shape": list(self.average_image.shape),
                "average_rgb": [round(float(v), 4) for v in mean],
            },
            "lrn_params": [list(p) for p in lrn_params],
            "parameters": int(sum(int(np.prod(w.shape)) for ws in self.weights.values()
                                  for w in ws)),
        }


class _Context:
    """Builds error messages that name the file and, where known, the layer."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, message: str, index: int | None = None, name: str | None = None):
        where = f" layer {index + 1} ({name!r})" if index is not None else ""
        return ValueError(f"{self.path}:{where} {message}")


def read_matconvnet(path: str | os.PathLike) -> MatConvNetNetwork | dagnn.DagNNNetwork:
    """Reads and interprets a SimpleNN or DagNN `.mat` file without building a model."""
    path = Path(path)
    variables, version = read_mat(path)
    ctx = _Context(path)
    net, layout = _find_net(variables, ctx)
    meta = net.get("meta") if isinstance(net.get("meta"), dict) else {}
    normalization = meta.get("normalization", net.get("normalization"))
    classes = meta.get("classes", net.get("classes"))
    if dagnn.is_dagnn(net):
        return _read_dagnn(net, path, layout, version, normalization, classes, ctx)
    raw_layers = net["layers"]
    if isinstance(raw_layers, dict):
        raw_layers = [raw_layers]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ctx.error(f"'layers' should be a cell array of layer structs, got "
                        f"{_describe(raw_layers)}")
    input_shape, average_image = _normalization(normalization, ctx)
    layers, weights, dropped = [], {}, []
    names_used: set[str] = set()
    renamed: list[tuple[str, str]] = []
    for index, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            raise ctx.error(f"is {_describe(raw)}, expected a layer struct", index, None)
        kind = _string(raw.get("type"), ctx, index, raw, "type")
        name = raw.get("name")
        name = name if isinstance(name, str) and name else f"layer{index + 1}"  # tidy's default
        if kind in _LOSS_TYPES:
            dropped.append(name)
            continue
        if dropped:
            raise ctx.error(
                f"a {kind!r} layer follows the {dropped[-1]!r} softmax/loss layer; expected "
                f"softmax/softmaxloss only at the end of the chain", index, name)
        if kind.startswith("dagnn.") or kind == "custom" or kind not in SUPPORTED_TYPES:
            raise ctx.error(f"unknown layer type {kind!r}; expected one of "
                            f"{', '.join(SUPPORTED_TYPES)}", index, name)
        keras_name = _keras_name(name, names_used)
        if keras_name != name:
            renamed.append((name, keras_name))
        names_used.add(keras_name)
        layer, arrays = _parse_layer(kind, keras_name, raw, ctx, index, name)
        layers.append(layer)
        if arrays:
            weights[keras_name] = arrays
    if not any(layer["type"] == "conv" for layer in layers):
        raise ctx.error("has no conv layer; expected a SimpleNN network")
    class_names = _class_names(classes)
    network = MatConvNetNetwork(path, layout, version, layers, weights, input_shape,
                                average_image, class_names, dropped, renamed)
    network.architecture, network.architecture_description = recognise(network)
    return network


def _read_dagnn(net, path, layout, version, normalization, classes, ctx):
    input_shape, average_image = _normalization(normalization, ctx)
    network = dagnn.interpret(net, path=path, layout=f"dagnn-{layout}", matlab_version=version,
                              input_shape=input_shape, average_image=average_image,
                              class_names=_class_names(classes))
    recognised = recognise_resnet50(network.layers, input_shape)
    if recognised:
        network.architecture, network.architecture_description = recognised
    return network


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, _Opaque):
        return f"a {value.kind}"
    return f"a {type(value).__name__}"


def _find_net(variables: dict, ctx: _Context) -> tuple[dict, str]:
    found = sorted(variables)
    for value in variables.values():
        if isinstance(value, _Opaque) and "DagNN" in value.kind:
            raise ctx.error("holds a dagnn.DagNN object, which only MATLAB can read; save it "
                            "as a plain struct first: s = net.saveobj(); save(file, '-struct', "
                            "'s')")
    if "net" in variables:
        net = variables["net"]
        if isinstance(net, _Opaque):
            raise ctx.error(f"variable 'net' is {_describe(net)} (a DagNN object?); expected "
                            f"a SimpleNN struct with 'layers'")
        if not isinstance(net, dict):
            raise ctx.error(f"variable 'net' is {_describe(net)}; expected a struct")
        layout = ("checkpoint" if {"state", "stats", "info"} & set(variables) else "net")
    elif "layers" in variables:
        net = variables
        layout = ("top" if dagnn.is_dagnn(net) else
                  "beta17" if "meta" in variables else "beta16")
    else:
        raise ctx.error(f"has variables {found}; expected a SimpleNN network: 'layers' with "
                        f"'meta' (beta17+) or 'normalization'/'classes' (beta16), or a struct "
                        f"'net' holding them")
    if "layers" not in net:
        raise ctx.error(f"struct 'net' has fields {sorted(net)}; expected 'layers'")
    return net, layout


def _string(value, ctx, index, raw, field) -> str:
    if isinstance(value, str) and value:
        return value
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    raise ctx.error(f"field {field!r} is missing or not a string (got "
                    f"{_describe(value) if value is not None else 'nothing'})", index, name)


def _keras_name(name: str, used: set[str]) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "layer"
    if safe in ("image", "normalization", "flatten"):
        safe = f"{safe}_"
    candidate, n = safe, 2
    while candidate in used:
        candidate, n = f"{safe}_{n}", n + 1
    return candidate


def _numbers(raw, field, default, ctx, index, name) -> np.ndarray:
    value = raw.get(field)
    if value is None or (isinstance(value, np.ndarray) and value.size == 0):
        if default is None:
            raise ctx.error(f"field {field!r} is missing; expected a number or vector",
                            index, name)
        return np.asarray(default, dtype=np.float64)
    if isinstance(value, (int, float)):
        return np.asarray([value], dtype=np.float64)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ctx.error(f"field {field!r} is {_describe(value)}; expected numbers", index, name)
    return value.astype(np.float64).ravel()


def _array(value, what, ctx, index, name) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ctx.error(f"{what} is {_describe(value)}; expected a numeric array", index, name)
    return value


def _parse_layer(kind, keras_name, raw, ctx, index, name):
    def numbers(field, default):
        return _numbers(raw, field, default, ctx, index, name)

    try:
        if kind == "conv":
            return _parse_conv(keras_name, raw, ctx, index, name)
        if kind == "relu":
            return nn.relu(keras_name, float(numbers("leak", [0.0])[0])), []
        if kind == "pool":
            method = raw.get("method", "max")
            if method not in ("max", "avg"):
                raise ctx.error(f"pool method {method!r}; expected 'max' or 'avg'", index, name)
            layer = nn.pool(keras_name, numbers("pool", None).astype(int).tolist(),
                            numbers("stride", [1]).astype(int).tolist(),
                            numbers("pad", [0]).astype(int).tolist(), method)
            mcn.MatConvNetPooling2D(layer["pool"], layer["stride"], layer["pad"], method)
            return layer, []
        if kind in ("normalize", "lrn"):
            param = numbers("param", [5, 1, 0.0001 / 5, 0.75])
            if param.size != 4:
                raise ctx.error(f"LRN param has {param.size} values; expected [N kappa alpha "
                                f"beta]", index, name)
            return nn.lrn(keras_name, param.tolist()), []
        if kind == "dropout":
            return nn.dropout(keras_name, float(numbers("rate", [0.5])[0])), []
        if kind == "bnorm":
            return _parse_bnorm(keras_name, raw, ctx, index, name)
    except ValueError as error:
        if str(error).startswith(str(ctx.path)):
            raise
        raise ctx.error(str(error), index, name) from None
    raise ctx.error(f"unknown layer type {kind!r}", index, name)


def _weights_pair(raw, ctx, index, name, first, second):
    """(a, b) from `weights = {a, b, …}` (beta11+) or from the fields `first`/`second`."""
    if "weights" in raw:
        weights = raw["weights"]
        if isinstance(weights, np.ndarray) and weights.size == 0:
            weights = []
        if not isinstance(weights, list):
            raise ctx.error(f"'weights' is {_describe(weights)}; expected a cell "
                            f"{{{first}, {second}}}", index, name)
        return list(weights)
    if first in raw:
        return [raw[first], raw.get(second, np.zeros((0, 0)))]
    raise ctx.error(f"has neither 'weights' nor '{first}'/'{second}'", index, name)


def _parse_conv(keras_name, raw, ctx, index, name):
    weights = _weights_pair(raw, ctx, index, name, "filters", "biases")
    if not weights:
        raise ctx.error("conv 'weights' is empty; expected {filters, biases}", index, name)
    filters = _array(weights[0], "conv filters", ctx, index, name).astype(np.float32)
    if filters.ndim > 4 or filters.ndim < 2:
        raise ctx.error(f"conv filters have shape {filters.shape}; expected H x W x Cin x Cout",
                        index, name)
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops 1s
    biases = weights[1] if len(weights) > 1 else np.zeros((0, 0))
    biases = _array(biases, "conv biases", ctx, index, name).astype(np.float32).ravel()
    cout = filters.shape[3]
    if biases.size == 0:
        biases = np.zeros(cout, np.float32)  # vl_nnconv: empty biases mean none
    if biases.size != cout:
        raise ctx.error(f"has {biases.size} biases for {cout} filters (filters "
                        f"{list(filters.shape)}); expected one bias per filter", index, name)
    layer = nn.conv(keras_name, filters.shape,
                    _numbers(raw, "stride", [1], ctx, index, name).astype(int).tolist(),
                    _numbers(raw, "pad", [0], ctx, index, name).astype(int).tolist(),
                    _numbers(raw, "dilate", [1], ctx, index, name).astype(int).tolist())
    mcn.four_pads(layer["pad"])
    mcn.two_ints(layer["stride"], "stride")
    return layer, [filters, biases]


def _parse_bnorm(keras_name, raw, ctx, index, name):
    weights = _weights_pair(raw, ctx, index, name, "filters", "biases")
    if len(weights) < 3:
        raise ctx.error("bnorm has no moments (weights{3} = [mean sigma]); a training-time "
                        "batch normalization cannot be converted", index, name)
    gain, bias, moments = (_array(w, f"bnorm weights{{{i + 1}}}", ctx, index, name)
                           .astype(np.float64) for i, w in enumerate(weights[:3]))
    gain, bias = gain.ravel(), bias.ravel()
    channels = gain.size
    if bias.size != channels or moments.size != 2 * channels:
        raise ctx.error(f"bnorm weights have {gain.size} gains, {bias.size} biases and "
                        f"{moments.size} moments; expected C, C and C x 2", index, name)
    moments = moments.reshape(channels, 2, order="F") if moments.shape != (channels, 2) \
        else moments
    epsilon = float(_numbers(raw, "epsilon", [1e-5], ctx, index, name)[0])
    mean, sigma = moments[:, 0], moments[:, 1]
    if np.any(sigma <= 0):
        raise ctx.error("bnorm moments have a non-positive sigma; expected [mean sigma] with "
                        "sigma = sqrt(variance + epsilon) > 0", index, name)
    # vl_nnbnorm uses sigma as given; Keras computes sqrt(variance + epsilon).
    variance = np.maximum(sigma**2 - epsilon, 0.0)
    return (nn.bnorm(keras_name, channels, epsilon),
            [a.astype(np.float32) for a in (gain, bias, mean, variance)])


def _normalization(normalization, ctx: _Context):
    if not isinstance(normalization, dict):
        raise ctx.error("has no normalization struct (meta.normalization or normalization); "
                        "expected one with 'imageSize' and 'averageImage'")
    size = normalization.get("imageSize")
    average = normalization.get("averageImage")
    if isinstance(average, np.ndarray) and average.size:
        average = average.astype(np.float32)
        if average.size == 3:
            average = average.reshape(1, 1, 3)
        elif average.ndim != 3 or average.shape[2] != 3:
            raise ctx.error(f"normalization.averageImage has shape {average.shape}; expected "
                            f"1x1x3, 3 values or H x W x 3")
    elif average is None or isinstance(average, (np.ndarray, list, str)):
        average = np.zeros((1, 1, 3), np.float32)  # empty: nothing is subtracted
    else:
        raise ctx.error(f"normalization.averageImage is {_describe(average)}; expected numbers")
    if isinstance(size, np.ndarray) and size.size >= 2:
        size = size.ravel().astype(int)
        shape = (int(size[0]), int(size[1]), int(size[2]) if size.size > 2 else 3)
    elif average.shape[0] > 1:
        shape = average.shape
    else:
        raise ctx.error("normalization.imageSize is missing; expected [H W 3]")
    if shape[2] != 3:
        raise ctx.error(f"normalization.imageSize is {list(shape)}; expected 3 (RGB) channels")
    if average.shape[0] > 1 and average.shape[:2] != shape[:2]:
        raise ctx.error(f"averageImage is {average.shape[0]}x{average.shape[1]} but imageSize "
                        f"is {shape[0]}x{shape[1]}; expected the same size or a 1x1x3 mean")
    return tuple(shape), average


def _class_names(classes) -> list[str] | None:
    if not isinstance(classes, dict):
        return None
    for field in ("description", "name"):
        value = classes.get(field)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        if isinstance(value, str) and value:
            return [value]
    return None


# --------------------------------------------------------------------------------------------
# Recognising VGG-f, VGG-face and mini
# --------------------------------------------------------------------------------------------

def _signature(layers: Sequence[dict]) -> list[tuple]:
    """Topology without names, dropout, LRN constants or the classifier's width."""
    conv_indices = [i for i, layer in enumerate(layers) if layer["type"] == "conv"]
    result = []
    for i, layer in enumerate(layers):
        kind = layer["type"]
        if kind == "dropout":
            continue
        if kind == "conv":
            size = list(layer["size"][:3]) + ([] if i == conv_indices[-1] else
                                              [layer["size"][3]])
            result.append(("conv", tuple(size), mcn.two_ints(layer["stride"], "stride"),
                           mcn.four_pads(layer["pad"]), mcn.two_ints(layer["dilate"], "d")))
        elif kind == "pool":
            result.append(("pool", mcn.two_ints(layer["pool"], "pool"),
                           mcn.two_ints(layer["stride"], "stride"),
                           mcn.four_pads(layer["pad"]), layer["method"]))
        elif kind == "relu":
            result.append(("relu", float(layer["leak"])))
        else:
            result.append((kind,))
    return result


def recognise(network: MatConvNetNetwork) -> tuple[str, str]:
    """(architecture name, description) of a parsed chain."""
    signature = _signature(network.layers)
    size = network.input_shape[:2]
    if size == (224, 224):
        if signature == _signature(vgg_f_layers()):
            return "vgg_f", "VGG-f (CNN-F, Chatfield et al. 2014)"
        if signature == _signature(vgg_face_layers()):
            with_dropout = any(layer["type"] == "dropout" for layer in network.layers)
            return "vgg_face", ("VGG-face (Parkhi et al. 2015)"
                                + (", with dropout layers" if with_dropout else ""))
    convs = [layer for layer in network.layers if layer["type"] == "conv"]
    if (size[0] == size[1] and size[0] >= MINI_MIN_INPUT_SIZE and len(convs) == 5
            and len(convs[0]["size"]) == 4):
        candidate = mini_layers(width=int(convs[0]["size"][3]),
                                       embedding_size=int(convs[2]["size"][3]),
                                       input_size=size[0])
        if signature == _signature(candidate):
            return "mini", "mini (fer_distill's small VGG-f-shaped network)"
    return UNKNOWN_ARCHITECTURE, "unknown SimpleNN chain"


# --------------------------------------------------------------------------------------------
# Building the Keras model
# --------------------------------------------------------------------------------------------

def to_keras(network: MatConvNetNetwork | dagnn.DagNNNetwork) -> keras.Model:
    """The Keras model of a parsed network, with every weight set from the file."""
    if isinstance(network, dagnn.DagNNNetwork):
        return dagnn.to_keras(network)
    ctx = _Context(network.path)
    try:
        model = nn.build_chain(network.layers, input_shape=network.input_shape,
                               average_image_shape=network.average_image.shape,
                               name=network.architecture, zero_init=True)
    except nn.ChainError as error:
        raise ValueError(f"{network.path}: {error}") from None
    except ValueError as error:
        raise ctx.error(str(error)) from None
    model.get_layer("normalization").set_weights([network.average_image])
    for index, layer in enumerate(network.layers):
        arrays = network.weights.get(layer["name"])
        if not arrays:
            continue
        target = model.get_layer(layer["name"])
        if isinstance(target, keras.layers.Dense):
            kernel, bias = arrays
            arrays = [kernel.reshape(-1, kernel.shape[-1]), bias]  # C order = Flatten's order
        expected = [tuple(w.shape) for w in target.weights]
        if expected != [tuple(a.shape) for a in arrays]:
            raise ctx.error(f"weights have shapes {[list(a.shape) for a in arrays]}; the layer "
                            f"needs {[list(s) for s in expected]}", index, layer["name"])
        target.set_weights(arrays)
    return model


def load_matconvnet(path: str | os.PathLike) -> keras.Model:
    """Converts a SimpleNN or DagNN `.mat` file into a Keras model named after its
    architecture."""
    return to_keras(read_matconvnet(path))


def convert(mat_path: str | os.PathLike,
            keras_path: str | os.PathLike) -> tuple[keras.Model, dict[str, Any]]:
    """Converts `mat_path` and writes the model to `keras_path` atomically.

    Returns the model and the network's summary (with Keras' parameter count). On any error
    nothing is written.
    """
    keras_path = Path(keras_path)
    if keras_path.suffix != ".keras":
        raise ValueError(f"output {keras_path} must end in .keras")
    network = read_matconvnet(mat_path)
    model = to_keras(network)
    with atomic_path(keras_path) as tmp:
        model.save(tmp)
    summary = network.summary()
    summary["keras_parameters"] = int(model.count_params())
    summary["output"] = str(keras_path)
    return model, summary
