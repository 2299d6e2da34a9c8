"""MatConvNet DagNN networks (a graph of named layers) built into Keras Functional models.

A layer is a dict `{"name", "type", "inputs", "outputs", "params", "block"}` with `type`
MatConvNet's class name ('dagnn.Conv', 'dagnn.BatchNorm', ...) and `block` its options
(`normalise_block`); `conv`, `bnorm`, `relu`, `pool`, `add` write such dicts for the builders,
`interpret` reads them from a `saveobj` struct (via `matconvnet.read_matconvnet`), and
`build_dag` turns a list into Keras, layer names kept, loss layers dropped. Errors (`DagError`)
name the file, the layer (1-based index and name) and what was expected.
File format and layer mapping: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from fer_distill.models import layers as mcn

SUPPORTED_TYPES = ("dagnn.Conv", "dagnn.BatchNorm", "dagnn.ReLU", "dagnn.Pooling", "dagnn.Sum",
                   "dagnn.DropOut", "dagnn.LRN", "dagnn.SoftMax", "dagnn.Loss",
                   "dagnn.SoftMaxLoss")
LOSS_TYPES = ("dagnn.SoftMax", "dagnn.Loss", "dagnn.SoftMaxLoss")
UNKNOWN_ARCHITECTURE = "dagnn"
_RESERVED = ("image", "normalization")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")
# 0-255 pixels have a standard deviation of about 64 after mean subtraction (as in simplenn).
_PIXEL_STD = 64.0

Layer = dict[str, Any]


class DagError(ValueError):
    """A layer that cannot be read or built; `index` (0-based) and `name` name the culprit."""

    def __init__(self, index: int | None, name: str | None, message: str):
        where = f"layer {index + 1} ({name!r}): " if index is not None else ""
        super().__init__(f"{where}{message}")


# --------------------------------------------------------------------------------------------
# Layer descriptions, as MatConvNet lists them (for builders)
# --------------------------------------------------------------------------------------------

def conv(name: str, input: str, size: Sequence[int], *, stride=1, pad=0, has_bias=False,
         output: str | None = None) -> Layer:
    params = [f"{name}_filter"] + ([f"{name}_bias"] if has_bias else [])
    return _layer(name, "dagnn.Conv", [input], output, params,
                  {"size": [int(s) for s in size], "stride": stride, "pad": pad,
                   "hasBias": has_bias})


def bnorm(name: str, input: str, channels: int, *, epsilon: float = 1e-5,
          output: str | None = None) -> Layer:
    return _layer(name, "dagnn.BatchNorm", [input], output,
                  [f"{name}_mult", f"{name}_bias", f"{name}_moments"],
                  {"numChannels": int(channels), "epsilon": float(epsilon)})


def relu(name: str, input: str, *, leak: float = 0.0, output: str | None = None) -> Layer:
    return _layer(name, "dagnn.ReLU", [input], output, [], {"leak": float(leak)})


def pool(name: str, input: str, size, *, stride=1, pad=0, method: str = "max",
         output: str | None = None) -> Layer:
    return _layer(name, "dagnn.Pooling", [input], output, [],
                  {"poolSize": size, "stride": stride, "pad": pad, "method": method})


def add(name: str, inputs: Sequence[str], *, output: str | None = None) -> Layer:
    return _layer(name, "dagnn.Sum", list(inputs), output, [], {})


def _layer(name, kind, inputs, output, params, block) -> Layer:
    return {"name": name, "type": kind, "inputs": list(inputs), "outputs": [output or name],
            "params": list(params), "block": normalise_block(kind, block)}


def normalise_block(kind: str, block: dict) -> dict:
    """A layer's options with MatConvNet's defaults filled in and its vectors as tuples
    (`pad` [top bottom left right], `stride`/`poolSize`/`dilate` [y x])."""
    block = dict(block or {})
    if kind == "dagnn.Conv":
        size = [int(v) for v in np.ravel(np.asarray(block.get("size", []), dtype=np.float64))]
        if len(size) < 4:
            size = size + [1] * (4 - len(size))  # dagnn.Conv's set.size pads with ones
        return {"size": tuple(size[:4]), "pad": mcn.four_pads(block.get("pad", 0)),
                "stride": mcn.two_ints(block.get("stride", 1), "stride"),
                "dilate": mcn.two_ints(block.get("dilate", 1), "dilate"),
                "hasBias": _flag(block.get("hasBias", True))}
    if kind == "dagnn.BatchNorm":
        channels = block.get("numChannels")
        channels = (int(np.ravel(channels)[0]) if channels is not None
                    and np.size(channels) else None)
        return {"numChannels": channels,
                "epsilon": _scalar(block.get("epsilon"), 1e-4)}  # dagnn.BatchNorm's default
    if kind == "dagnn.ReLU":
        leak = block.get("leak")
        opts = block.get("opts")
        if leak is None and isinstance(opts, list) and "leak" in opts[:-1]:
            leak = opts[opts.index("leak") + 1]  # {'leak', value} as vl_nnrelu options
        return {"leak": _scalar(leak, 0.0)}
    if kind == "dagnn.Pooling":
        method = block.get("method", "max")
        if method not in ("max", "avg"):
            raise ValueError(f"pooling method {method!r}; expected 'max' or 'avg'")
        return {"poolSize": mcn.two_ints(block.get("poolSize", 1), "poolSize"),
                "pad": mcn.four_pads(block.get("pad", 0)),
                "stride": mcn.two_ints(block.get("stride", 1), "stride"), "method": method}
    if kind == "dagnn.DropOut":
        return {"rate": _scalar(block.get("rate"), 0.5)}
    if kind == "dagnn.LRN":
        param = np.ravel(np.asarray(block.get("param", [5, 1, 0.0001 / 5, 0.75]), np.float64))
        if param.size != 4:
            raise ValueError(f"LRN param has {param.size} values; expected [N kappa alpha beta]")
        return {"param": tuple(float(p) for p in param)}
    return {}


def _flag(value) -> bool:
    if isinstance(value, (bool, int, float, np.bool_)):
        return bool(value)
    values = np.ravel(np.asarray(value))
    return bool(values[0]) if values.size else True


def _scalar(value, default: float) -> float:
    if value is None or (isinstance(value, (np.ndarray, list, str)) and np.size(value) == 0):
        return float(default)
    return float(np.ravel(np.asarray(value, dtype=np.float64))[0])


# --------------------------------------------------------------------------------------------
# The graph, in order
# --------------------------------------------------------------------------------------------

def without_losses(layers: Sequence[Layer]) -> tuple[list[Layer], list[str]]:
    """The layers without softmax/loss layers, and the names of those dropped. A dropped
    layer's output must not feed a kept layer."""
    kept = [layer for layer in layers if layer["type"] not in LOSS_TYPES]
    dropped = [layer for layer in layers if layer["type"] in LOSS_TYPES]
    dropped_vars = {v for layer in dropped for v in layer["outputs"]}
    for index, layer in enumerate(layers):
        if layer["type"] not in LOSS_TYPES and set(layer["inputs"]) & dropped_vars:
            raise DagError(index, layer["name"],
                           f"reads {sorted(set(layer['inputs']) & dropped_vars)}, the output of "
                           f"a softmax/loss layer; expected those only at the end")
    return kept, [layer["name"] for layer in dropped]


def input_and_output(layers: Sequence[Layer]) -> tuple[str, str]:
    """The one variable no layer produces (the image) and the one no layer reads (logits)."""
    produced = {}
    for index, layer in enumerate(layers):
        if len(layer["outputs"]) != 1:
            raise DagError(index, layer["name"],
                           f"has outputs {layer['outputs']}; expected exactly one")
        out = layer["outputs"][0]
        if out in produced:
            raise DagError(index, layer["name"],
                           f"writes variable {out!r}, which layer {produced[out] + 1} "
                           f"({layers[produced[out]]['name']!r}) writes too")
        produced[out] = index
    read = {v for layer in layers for v in layer["inputs"]}
    sources = sorted(read - set(produced))
    sinks = [v for v in produced if v not in read]
    if len(sources) != 1:
        raise DagError(None, None, f"the network reads variables {sources} that no layer "
                                   f"writes; expected exactly one input image")
    if len(sinks) != 1:
        raise DagError(None, None, f"variables {sinks} are written but never read; expected "
                                   f"exactly one network output (the logits)")
    return sources[0], sinks[0]


def topological_order(layers: Sequence[Layer]) -> list[int]:
    """Indices of `layers` so that every layer comes after the layers it reads from."""
    source, _ = input_and_output(layers)
    available, order, pending = {source}, [], list(range(len(layers)))
    while pending:
        ready = [i for i in pending if set(layers[i]["inputs"]) <= available]
        if not ready:
            i = pending[0]
            raise DagError(i, layers[i]["name"],
                           f"reads {sorted(set(layers[i]['inputs']) - available)}, which no "
                           f"layer computes before it (a cycle?)")
        for i in ready:
            order.append(i)
            available.update(layers[i]["outputs"])
        pending = [i for i in pending if i not in ready]
    return order


def classifier_name(layers: Sequence[Layer]) -> str:
    """The conv that writes the network's output (the logits)."""
    _, sink = input_and_output(layers)
    index, layer = next((i, l) for i, l in enumerate(layers) if l["outputs"][0] == sink)
    if layer["type"] != "dagnn.Conv":
        raise DagError(index, layer["name"],
                       f"is a {layer['type']} writing the network's output {sink!r}; "
                       f"expected the classifier, a dagnn.Conv")
    return layer["name"]


def signature(layers: Sequence[Layer]) -> list[tuple]:
    """Topology without variable names, BN epsilons or the classifier's width."""
    layers, _ = without_losses(layers)
    source, _ = input_and_output(layers)
    producer = {layer["outputs"][0]: layer["name"] for layer in layers}
    producer[source] = "<input>"
    last = classifier_name(layers)
    result = []
    for i in topological_order(layers):
        layer = layers[i]
        block = dict(layer["block"])
        block.pop("epsilon", None)
        block.pop("numChannels", None)
        if layer["name"] == last:
            block["size"] = tuple(block["size"][:3])
        result.append((layer["name"], layer["type"],
                       tuple(producer[v] for v in layer["inputs"]),
                       tuple(sorted(block.items()))))
    return sorted(result)


# --------------------------------------------------------------------------------------------
# Building the Keras model
# --------------------------------------------------------------------------------------------

def build_dag(layers: Sequence[Layer], *, input_shape: Sequence[int], name: str,
              average_image=None, average_image_shape: Sequence[int] | None = None,
              zero_init: bool = False) -> keras.Model:
    """Builds the Keras model of a DagNN layer list (softmax/loss layers are skipped).

    `input_shape` is (H, W, 3). Give `average_image` (3, 1x1x3 or HxWx3 values) or, for a
    model whose weights are set afterwards, only `average_image_shape`; `zero_init=True` skips
    the random initialisation (the layers still record their usual initialisers). Raises
    `DagError` naming the layer when the graph does not fit together.
    """
    layers, _ = without_losses(layers)
    names = set()
    for index, layer in enumerate(layers):
        if not _NAME_OK.match(str(layer["name"])):
            raise DagError(index, layer["name"], "layer names may use only letters, digits, "
                                                 "'_.-'")
        if layer["name"] in names or layer["name"] in _RESERVED:
            raise DagError(index, layer["name"], "layer name used twice (or reserved)")
        names.add(layer["name"])
    source, sink = input_and_output(layers)
    last = classifier_name(layers)
    image, normalization = mcn.input_and_normalization(input_shape, average_image,
                                                       average_image_shape)
    tensors = {source: normalization(image)}
    for index in topological_order(layers):
        layer = layers[index]
        inputs = [tensors[v] for v in layer["inputs"]]
        try:
            tensors[layer["outputs"][0]] = _add_layer(
                layer, inputs, first=layer["inputs"] == [source], last=layer["name"] == last,
                zero_init=zero_init, names=names)
        except DagError:
            raise
        except ValueError as error:
            raise DagError(index, layer["name"], str(error)) from None
    logits = tensors[sink]
    if len(logits.shape) != 2:
        raise DagError(None, None, f"network {name!r} ends with a {tuple(logits.shape[1:])} "
                                   f"map, not a vector of logits: its last conv should cover "
                                   f"the whole map")
    return keras.Model(image, logits, name=name)


def _add_layer(layer: Layer, inputs, *, first: bool, last: bool, zero_init: bool, names):
    kind, name, block = layer["type"], layer["name"], layer["block"]
    if kind == "dagnn.Sum":
        if len(inputs) < 2:
            raise ValueError(f"sums {len(inputs)} input; expected two or more")
        shapes = {tuple(x.shape[1:]) for x in inputs}
        if len(shapes) != 1:
            raise ValueError(f"sums inputs {layer['inputs']} of different shapes "
                             f"{[tuple(x.shape[1:]) for x in inputs]}")
        return keras.layers.Add(name=name)(inputs)
    if len(inputs) != 1:
        raise ValueError(f"has inputs {layer['inputs']}; a {kind} takes exactly one")
    x = inputs[0]
    if kind == "dagnn.Conv":
        return _add_conv(x, layer, first=first, last=last, zero_init=zero_init, names=names)
    if kind == "dagnn.BatchNorm":
        expected = block["numChannels"]
        if expected is not None and expected != x.shape[-1]:
            raise ValueError(f"numChannels is {expected}, the input has {x.shape[-1]} channels")
        return keras.layers.BatchNormalization(epsilon=block["epsilon"], name=name)(x)
    if kind == "dagnn.ReLU":
        return keras.layers.ReLU(negative_slope=block["leak"], name=name)(x)
    if kind == "dagnn.DropOut":
        return keras.layers.Dropout(block["rate"], name=name)(x)
    if kind == "dagnn.LRN":
        return mcn.MatConvNetLRN(*block["param"], name=name)(x)
    if kind == "dagnn.Pooling":
        if len(x.shape) != 4:
            raise ValueError(f"pooling needs a map, but the input is a vector {tuple(x.shape)}")
        size, pad = block["poolSize"], block["pad"]
        if size == tuple(x.shape[1:3]) and not any(pad):
            # why: one window over the whole map is a global pooling; its (None, C) output is
            # the vector a classifier (and the package's embedding) reads.
            cls = (keras.layers.GlobalAveragePooling2D if block["method"] == "avg"
                   else keras.layers.GlobalMaxPooling2D)
            return cls(name=name)(x)
        top, bottom, left, right = pad
        if x.shape[1] + top + bottom < size[0] or x.shape[2] + left + right < size[1]:
            raise ValueError(f"pool {list(size)} is larger than the padded "
                             f"{x.shape[1]}x{x.shape[2]} input")
        return mcn.MatConvNetPooling2D(size, block["stride"], pad, block["method"],
                                       name=name)(x)
    raise ValueError(f"unknown layer type {kind!r}; expected one of {', '.join(SUPPORTED_TYPES)}")


def _kernel_init(first: bool, last: bool):
    if last:
        return keras.initializers.RandomNormal(stddev=0.01)  # MatConvNet's fresh classifier
    return keras.initializers.VarianceScaling(2.0 / _PIXEL_STD**2 if first else 2.0, "fan_in",
                                              "truncated_normal")


def _add_conv(x, layer: Layer, *, first: bool, last: bool, zero_init: bool, names):
    block, name = layer["block"], layer["name"]
    kh, kw, cin, cout = block["size"]
    pad, stride, dilate, bias = block["pad"], block["stride"], block["dilate"], block["hasBias"]
    real_init = _kernel_init(first, last)
    common = {"kernel_initializer": "zeros" if zero_init else real_init, "use_bias": bias,
              "bias_initializer": "zeros", "name": name,
              **({"dtype": "float32"} if last else {})}  # logits in float32 when mixed
    if len(x.shape) == 2:  # a vector: only a 1x1 filter can follow
        if (kh, kw) != (1, 1) or any(pad) or dilate != (1, 1):
            raise ValueError(f"a {kh}x{kw} conv with pad {list(pad)} cannot follow a vector "
                             f"of {x.shape[-1]}; expected a 1x1 filter")
        if cin != x.shape[-1]:
            raise ValueError(f"filter expects {cin} input channels, the input has "
                             f"{x.shape[-1]}")
        return _restore_init(keras.layers.Dense(cout, **common), x, real_init)
    _, height, width, channels = x.shape
    if channels % cin != 0:
        raise ValueError(f"filter expects {cin} input channels, the input has {channels} "
                         f"(shape {height}x{width}x{channels})")
    groups = channels // cin
    if (kh, kw) == (height, width) and not any(pad) and dilate == (1, 1) and groups == 1 \
            and ((kh, kw) != (1, 1) or last):
        # a filter over the whole map is a fully connected layer (as simplenn builds fc6); a
        # 1x1 conv that happens to meet a 1x1 map inside the network stays a conv
        flatten_name = "flatten" if "flatten" not in names else f"{name}_flatten"
        names.add(flatten_name)
        flat = keras.layers.Flatten(name=flatten_name)(x)
        return _restore_init(keras.layers.Dense(cout, **common), flat, real_init)
    if dilate != (1, 1) and stride != (1, 1):
        raise ValueError(f"dilation {list(dilate)} with stride {list(stride)} is not supported")
    top, bottom, left, right = pad
    if height + top + bottom < (kh - 1) * dilate[0] + 1 or \
            width + left + right < (kw - 1) * dilate[1] + 1:
        raise ValueError(f"{kh}x{kw} filter is larger than its padded {height}x{width} input")
    return _restore_init(mcn.MatConvNetConv2D(cout, (kh, kw), strides=stride, pad=pad,
                                              dilation_rate=dilate, groups=groups, **common),
                         x, real_init)


def _restore_init(layer, x, initializer):
    y = layer(x)
    layer.kernel_initializer = keras.initializers.get(initializer)
    return y


def set_weights(model: keras.Model, layers: Sequence[Layer], params: dict[str, np.ndarray],
                error=None):
    """Sets every conv and batch-norm weight of `model` from MatConvNet's `params` values
    (by the names each layer lists). `error(message, index, name)` makes the exception."""
    error = error or (lambda message, index, name: DagError(index, name, message))
    for index, layer in enumerate(layers):
        if layer["type"] not in ("dagnn.Conv", "dagnn.BatchNorm"):
            continue
        arrays = []
        for param in layer["params"]:
            if param not in params:
                raise error(f"names parameter {param!r}, which the file's params do not hold",
                            index, layer["name"])
            value = params[param]
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise error(f"parameter {param!r} is not a numeric array", index, layer["name"])
            arrays.append(value.astype(np.float64))
        target = model.get_layer(layer["name"])
        try:
            values = (_conv_weights(layer, arrays, target) if layer["type"] == "dagnn.Conv"
                      else _bnorm_weights(layer, arrays, target))
        except ValueError as problem:
            raise error(str(problem), index, layer["name"]) from None
        expected = [tuple(w.shape) for w in target.weights]
        if expected != [tuple(v.shape) for v in values]:
            raise error(f"parameters have shapes {[list(a.shape) for a in arrays]}; the layer "
                        f"needs {[list(s) for s in expected]}", index, layer["name"])
        target.set_weights([v.astype(np.float32) for v in values])


def _conv_weights(layer, arrays, target):
    kh, kw, cin, cout = layer["block"]["size"]
    wanted = 2 if layer["block"]["hasBias"] else 1
    if len(arrays) < wanted:
        raise ValueError(f"has {len(arrays)} parameters; expected the filters"
                         f"{' and biases' if wanted == 2 else ''}")
    filters = arrays[0]
    if filters.size != kh * kw * cin * cout:
        raise ValueError(f"filters have shape {list(filters.shape)}; block.size is "
                         f"{[kh, kw, cin, cout]}")
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops 1s
    if tuple(filters.shape) != (kh, kw, cin, cout):
        raise ValueError(f"filters have shape {list(filters.shape)}; block.size is "
                         f"{[kh, kw, cin, cout]}")
    if isinstance(target, keras.layers.Dense):
        filters = filters.reshape(-1, cout)  # C order = Flatten's order on NHWC
    values = [filters]
    if wanted == 2:
        bias = arrays[1].ravel()
        if bias.size != cout:
            raise ValueError(f"has {bias.size} biases for {cout} filters")
        values.append(bias)
    return values


def _bnorm_weights(layer, arrays, target):
    if len(arrays) < 3:
        raise ValueError("has no moments (params{3} = [mean sigma]); expected multipliers, "
                         "biases and moments")
    gain, bias, moments = arrays[:3]
    channels = gain.size
    if bias.size != channels or moments.size != 2 * channels:
        raise ValueError(f"has {gain.size} multipliers, {bias.size} biases and {moments.size} "
                         f"moments; expected C, C and C x 2")
    moments = moments.reshape(channels, 2, order="F")
    mean, sigma = moments[:, 0], moments[:, 1]
    if np.any(sigma <= 0):
        raise ValueError("moments have a non-positive sigma; expected [mean sigma] with "
                         "sigma = sqrt(variance + epsilon) > 0")
    if np.min(sigma) ** 2 <= target.epsilon:
        # why: vl_nnbnorm divides by the stored sigma whatever `epsilon` says; Keras divides by
        # sqrt(variance + epsilon), so a smaller epsilon keeps a tiny sigma exact.
        target.epsilon = float(np.min(sigma) ** 2 / 2)
    variance = sigma**2 - target.epsilon
    return [gain.ravel(), bias.ravel(), mean, variance]


# --------------------------------------------------------------------------------------------
# Reading: the plain-Python variables of a DagNN file, interpreted
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DagNNNetwork:
    """What a DagNN file says, interpreted: its layers (normalised, softmax/loss dropped),
    their parameter values by name, and its meta data."""
    path: Path
    layout: str
    matlab_version: str
    layers: list[Layer]
    params: dict[str, np.ndarray]
    input_shape: tuple[int, int, int]
    average_image: np.ndarray
    class_names: list[str] | None
    dropped: list[str]
    renamed: list[tuple[str, str]]
    architecture: str = UNKNOWN_ARCHITECTURE
    architecture_description: str = "unknown DagNN graph"

    @property
    def num_classes(self) -> int:
        last = classifier_name(self.layers)
        return int(next(l for l in self.layers if l["name"] == last)["block"]["size"][3])

    def summary(self) -> dict[str, Any]:
        """A JSON-able description, for the converter's report (as SimpleNN's)."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            kind = layer["type"].removeprefix("dagnn.")
            counts[kind] = counts.get(kind, 0) + 1
        mean = self.average_image.reshape(-1, self.average_image.shape[-1]).mean(axis=0)
        used = {p for layer in self.layers for p in layer["params"]}
        return {
            "file": str(self.path), "layout": self.layout,
            "matlab_version": self.matlab_version, "architecture": self.architecture,
            "architecture_description": self.architecture_description,
            "input_shape": list(self.input_shape),
            "layers": [layer["name"] for layer in self.layers], "layer_types": counts,
            "dropped_layers": self.dropped,
            "renamed_layers": [list(pair) for pair in self.renamed],
            "num_classes": self.num_classes, "class_names": self.class_names,
            "normalization": {"average_image_shape": list(self.average_image.shape),
                              "average_rgb": [round(float(v), 4) for v in mean]},
            "lrn_params": [list(p) for p in sorted({layer["block"]["param"]
                                                    for layer in self.layers
                                                    if layer["type"] == "dagnn.LRN"})],
            "parameters": int(sum(int(np.size(self.params[p])) for p in used
                                  if p in self.params)),
        }


def is_dagnn(net: dict) -> bool:
    """Whether a struct of a `.mat` file is a saved DagNN (rather than a SimpleNN chain)."""
    layers = net.get("layers")
    first = layers[0] if isinstance(layers, list) and layers else layers
    if isinstance(first, dict):
        if str(first.get("type", "")).startswith("dagnn.") or \
                {"block", "inputs", "outputs"} <= set(first):
            return True
    return "params" in net and "vars" in net


def interpret(net: dict, *, path: Path, layout: str, matlab_version: str,
              input_shape: tuple[int, int, int], average_image: np.ndarray,
              class_names: list[str] | None) -> DagNNNetwork:
    """Reads the DagNN struct `net` (plain Python, as `matconvnet.read_mat` returns it)."""
    def error(message, index=None, name=None):
        return ValueError(f"{path}: {DagError(index, name, message)}")

    raw_layers = net.get("layers")
    if isinstance(raw_layers, dict):
        raw_layers = [raw_layers]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise error("DagNN 'layers' should be a struct array of layers")
    params = _params(net.get("params"), error)
    layers, used, renamed = [], set(), []
    for index, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            raise error("is not a layer struct", index)
        name = raw.get("name")
        name = name if isinstance(name, str) and name else f"layer{index + 1}"
        kind = raw.get("type")
        if not isinstance(kind, str) or not kind:
            raise error("has no 'type'; expected a dagnn class name such as 'dagnn.Conv'",
                        index, name)
        if kind not in SUPPORTED_TYPES:
            raise error(f"unknown layer type {kind!r}; expected one of "
                        f"{', '.join(SUPPORTED_TYPES)}", index, name)
        block = raw.get("block")
        if not isinstance(block, dict):
            block = {}  # an empty struct ([] or 0x0) holds no options
        layer_params = _names(raw.get("params"), "params", error, index, name)
        if kind == "dagnn.Conv" and np.size(block.get("size", [])) == 0 and layer_params \
                and isinstance(params.get(layer_params[0]), np.ndarray):
            block = {**block, "size": np.shape(params[layer_params[0]])}  # as initParams does
        try:
            block = normalise_block(kind, block)
        except ValueError as problem:
            raise error(str(problem), index, name) from None
        keras_name = _keras_name(name, used)
        used.add(keras_name)
        if keras_name != name:
            renamed.append((name, keras_name))
        layers.append({"name": keras_name, "type": kind,
                       "inputs": _names(raw.get("inputs"), "inputs", error, index, name),
                       "outputs": _names(raw.get("outputs"), "outputs", error, index, name),
                       "params": layer_params,
                       "block": block})
    try:
        kept, dropped = without_losses(layers)
        input_and_output(kept)
        classifier_name(kept)
        topological_order(kept)
    except DagError as problem:
        raise ValueError(f"{path}: {problem}") from None
    return DagNNNetwork(path, layout, matlab_version, kept, params, input_shape,
                        average_image, class_names, dropped, renamed)


def _params(raw, error) -> dict[str, np.ndarray]:
    if isinstance(raw, dict):
        raw = [raw]
    if raw is None or (isinstance(raw, np.ndarray) and raw.size == 0):
        raw = []
    if not isinstance(raw, list):
        raise error("DagNN 'params' should be a struct array with 'name' and 'value'")
    params = {}
    for i, param in enumerate(raw):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise error(f"params({i + 1}) has no 'name'; expected a struct with 'name' and "
                        f"'value'")
        params[param["name"]] = param.get("value")
    return params


def _names(value, field, error, index, name) -> list[str]:
    if value is None or (isinstance(value, np.ndarray) and value.size == 0):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise error(f"field {field!r} should be a cell of names", index, name)


def _keras_name(name: str, used: set[str]) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "layer"
    if safe in _RESERVED + ("flatten",):
        safe = f"{safe}_"
    candidate, n = safe, 2
    while candidate in used:
        candidate, n = f"{safe}_{n}", n + 1
    return candidate


def to_keras(network: DagNNNetwork) -> keras.Model:
    """The Keras model of a read network, every weight set from the file's params."""
    def error(message, index=None, name=None):
        return ValueError(f"{network.path}: {DagError(index, name, message)}")

    try:
        model = build_dag(network.layers, input_shape=network.input_shape,
                          average_image_shape=network.average_image.shape,
                          name=network.architecture, zero_init=True)
    except ValueError as problem:
        raise ValueError(f"{network.path}: {problem}") from None
    model.get_layer("normalization").set_weights([network.average_image])
    set_weights(model, network.layers, network.params, error)
    return model
