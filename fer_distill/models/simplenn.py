"""A MatConvNet SimpleNN layer list, built into a Keras Functional model.

A layer is a dict with MatConvNet's own field names (`type`, `name`, and per type `size`,
`stride`, `pad`, ...); `conv`, `relu`, `pool`, `lrn`, `dropout`, `bnorm` write them, and
`build_chain(layers, input_shape=..., name=...)` builds the model, so the builders (`vgg_f`,
`vgg_face`, `mini`), the `.mat` converter and writer share one description; `chain_of(model)`
reads it back. Fully connected layers become `Flatten` + `Dense`.
Why, and the field list: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import keras
import numpy as np

from fer_distill.models import layers as mcn

# Input images are float32 RGB in 0-255; after mean subtraction their standard deviation is
# about 64, so the first layer's He initialisation is scaled down by 64^2 to keep activations
# of a freshly built network near unit scale.
_PIXEL_STD = 64.0
_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")

Layer = dict[str, Any]


def conv(name: str, size: Sequence[int], stride=1, pad=0, dilate=1) -> Layer:
    return {"type": "conv", "name": name, "size": [int(s) for s in size], "stride": stride,
            "pad": pad, "dilate": dilate}


def relu(name: str, leak: float = 0.0) -> Layer:
    return {"type": "relu", "name": name, "leak": float(leak)}


def pool(name: str, size, stride=1, pad=0, method: str = "max") -> Layer:
    return {"type": "pool", "name": name, "pool": size, "stride": stride, "pad": pad,
            "method": method}


def lrn(name: str, param: Sequence[float]) -> Layer:
    return {"type": "lrn", "name": name, "param": [float(p) for p in param]}


def dropout(name: str, rate: float = 0.5) -> Layer:
    return {"type": "dropout", "name": name, "rate": float(rate)}


def bnorm(name: str, channels: int, epsilon: float = 1e-5) -> Layer:
    return {"type": "bnorm", "name": name, "channels": int(channels), "epsilon": float(epsilon)}


class ChainError(ValueError):
    """A layer list that cannot be built; `index` (0-based) and `layer` name the culprit."""

    def __init__(self, index: int, layer: Layer, message: str):
        self.index = index
        self.layer_name = layer.get("name")
        super().__init__(
            f"layer {index + 1} ({layer.get('name')!r}, type {layer.get('type')!r}): {message}")


def _kernel_init(first: bool, last: bool):
    if last:
        # A fresh classifier as MatConvNet initialises one for fine-tuning: N(0, 0.01^2).
        return keras.initializers.RandomNormal(stddev=0.01)
    scale = 2.0 / _PIXEL_STD**2 if first else 2.0
    return keras.initializers.VarianceScaling(scale, "fan_in", "truncated_normal")


def build_chain(layers: Sequence[Layer], *, input_shape: Sequence[int], name: str,
                average_image=None, average_image_shape: Sequence[int] | None = None,
                zero_init: bool = False) -> keras.Model:
    """Builds the Keras model of a SimpleNN chain.

    `input_shape` is (H, W, 3). Give either `average_image` (values: 3, 1x1x3 or HxWx3) or,
    for a model whose weights are set afterwards, only `average_image_shape`.
    `zero_init=True` skips the (seconds-long, for VGG) random initialisation when every weight
    is set afterwards, as the converter does; the layers still record their usual
    initialisers, so the model's config is the builder's.
    Raises `ChainError` naming the layer when shapes do not chain.
    """
    image, normalization = mcn.input_and_normalization(input_shape, average_image,
                                                       average_image_shape)
    x = normalization(image)
    weight_layers = [i for i, layer in enumerate(layers) if layer["type"] in ("conv",)]
    if not weight_layers:
        raise ValueError(f"network {name!r} has no conv layer")
    first, last = weight_layers[0], weight_layers[-1]
    names = set()
    for index, layer in enumerate(layers):
        if not _NAME_OK.match(str(layer["name"])):
            raise ChainError(index, layer, "layer names may use only letters, digits, '_.-'")
        if layer["name"] in names or layer["name"] in ("image", "normalization", "flatten"):
            raise ChainError(index, layer, "layer name used twice")
        names.add(layer["name"])
        try:
            x = _add_layer(x, layer, first=index == first, last=index == last,
                           zero_init=zero_init)
        except ChainError:
            raise
        except ValueError as error:
            raise ChainError(index, layer, str(error)) from None
    if len(x.shape) != 2:
        raise ValueError(
            f"network {name!r} ends with a {tuple(x.shape[1:])} map, not a vector of logits: "
            f"its last conv should cover the whole map (a fully connected layer)")
    return keras.Model(image, x, name=name)


def _add_layer(x, layer: Layer, *, first: bool, last: bool, zero_init: bool):
    kind, name = layer["type"], layer["name"]
    if kind == "conv":
        return _add_conv(x, layer, first=first, last=last, zero_init=zero_init)
    if kind == "relu":
        return keras.layers.ReLU(negative_slope=float(layer.get("leak", 0.0)), name=name)(x)
    if kind == "pool":
        if len(x.shape) != 4:
            raise ValueError(f"pooling needs a map, but the input is a vector {tuple(x.shape)}")
        pooling = mcn.MatConvNetPooling2D(layer["pool"], layer.get("stride", 1),
                                          layer.get("pad", 0), layer.get("method", "max"),
                                          name=name)
        ph, pw = pooling.pool_size
        top, bottom, left, right = pooling.pad
        if x.shape[1] + top + bottom < ph or x.shape[2] + left + right < pw:
            raise ValueError(
                f"pool {ph}x{pw} is larger than the padded {x.shape[1]}x{x.shape[2]} input")
        return pooling(x)
    if kind == "lrn":
        param = np.asarray(layer["param"], dtype=np.float64).ravel()
        if param.size != 4:
            raise ValueError(f"LRN param must be [N kappa alpha beta], got {param.tolist()}")
        depth, kappa, alpha, beta = param
        return mcn.MatConvNetLRN(depth, kappa, alpha, beta, name=name)(x)
    if kind == "dropout":
        return keras.layers.Dropout(float(layer.get("rate", 0.5)), name=name)(x)
    if kind == "bnorm":
        if layer["channels"] != x.shape[-1]:
            raise ValueError(
                f"batch normalization for {layer['channels']} channels, input has {x.shape[-1]}")
        return keras.layers.BatchNormalization(epsilon=float(layer.get("epsilon", 1e-5)),
                                               name=name)(x)
    raise ValueError(f"unsupported layer type {kind!r}")


def _add_conv(x, layer: Layer, *, first: bool, last: bool, zero_init: bool):
    size = [int(s) for s in layer["size"]]
    if len(size) != 4:
        raise ValueError(f"conv size must be [kh kw cin cout], got {size}")
    kh, kw, cin, cout = size
    pad = mcn.four_pads(layer.get("pad", 0))
    stride = mcn.two_ints(layer.get("stride", 1), "stride")
    dilate = mcn.two_ints(layer.get("dilate", 1), "dilate")
    real_init = _kernel_init(first, last)
    init = "zeros" if zero_init else real_init
    bias_init = "zeros"
    dtype = {"dtype": "float32"} if last else {}  # logits in float32 under mixed precision
    name = layer["name"]
    if len(x.shape) == 2:  # already a vector: only a 1x1 filter can follow
        if (kh, kw) != (1, 1) or any(pad) or dilate != (1, 1):
            raise ValueError(
                f"a {kh}x{kw} conv with pad {list(pad)} cannot follow a fully connected "
                f"layer (input is a vector of {x.shape[-1]}); expected a 1x1 filter")
        if cin != x.shape[-1]:
            raise ValueError(f"filter expects {cin} input channels, input has {x.shape[-1]}")
        return _restore_init(keras.layers.Dense(cout, kernel_initializer=init,
                                                bias_initializer=bias_init, name=name,
                                                **dtype), x, real_init)
    _, height, width, channels = x.shape
    if channels % cin != 0:
        raise ValueError(
            f"filter expects {cin} input channels, input has {channels} "
            f"(shape {height}x{width}x{channels})")
    groups = channels // cin
    whole_map = ((kh, kw) == (height, width) and not any(pad) and dilate == (1, 1)
                 and groups == 1)
    if whole_map:
        flat = keras.layers.Flatten(name="flatten")(x)
        return _restore_init(keras.layers.Dense(cout, kernel_initializer=init,
                                                bias_initializer=bias_init, name=name,
                                                **dtype), flat, real_init)
    if dilate != (1, 1) and stride != (1, 1):
        raise ValueError(f"dilation {list(dilate)} with stride {list(stride)} is not supported")
    top, bottom, left, right = pad
    eff_h, eff_w = (kh - 1) * dilate[0] + 1, (kw - 1) * dilate[1] + 1
    if height + top + bottom < eff_h or width + left + right < eff_w:
        raise ValueError(
            f"{kh}x{kw} filter is larger than its padded {height}x{width} input")
    return _restore_init(
        mcn.MatConvNetConv2D(cout, (kh, kw), strides=stride, pad=pad, dilation_rate=dilate,
                             groups=groups, kernel_initializer=init,
                             bias_initializer=bias_init, name=name, **dtype), x, real_init)


def _restore_init(layer, x, initializer):
    """Calls `layer` on `x`, then records `initializer` as its kernel initialiser (it may
    have been built with zeros to save time)."""
    y = layer(x)
    layer.kernel_initializer = keras.initializers.get(initializer)
    return y


def chain_of(model: keras.Model) -> list[Layer]:
    """The SimpleNN layer list of a model built by `build_chain` (inverse of it)."""
    result = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, mcn.MeanSubtraction,
                              keras.layers.Flatten)):
            continue
        if isinstance(layer, mcn.MatConvNetConv2D):
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            result.append(conv(layer.name, (kh, kw, cin, cout), list(layer.strides),
                               list(layer.pad), list(layer.dilation_rate)))
        elif isinstance(layer, keras.layers.Dense):
            in_shape = layer.input.shape
            if len(in_shape) == 2 and _follows_flatten(model, layer):
                h, w, c = (int(d) for d in _flatten_input_shape(model))
                size = (h, w, c, layer.units)
            else:
                size = (1, 1, int(in_shape[-1]), layer.units)
            result.append(conv(layer.name, size))
        elif isinstance(layer, keras.layers.ReLU):
            leak = layer.negative_slope
            result.append(relu(layer.name, float(leak) if leak is not None else 0.0))
        elif isinstance(layer, mcn.MatConvNetPooling2D):
            result.append(pool(layer.name, list(layer.pool_size), list(layer.strides),
                               list(layer.pad), layer.method))
        elif isinstance(layer, mcn.MatConvNetLRN):
            result.append(lrn(layer.name, layer.param))
        elif isinstance(layer, keras.layers.Dropout):
            result.append(dropout(layer.name, layer.rate))
        elif isinstance(layer, keras.layers.BatchNormalization):
            result.append(bnorm(layer.name, int(layer.gamma.shape[0]), layer.epsilon))
        else:
            raise ValueError(
                f"model {model.name!r}: layer {layer.name!r} ({type(layer).__name__}) has no "
                f"SimpleNN equivalent")
    return result


def _follows_flatten(model: keras.Model, dense: keras.layers.Layer) -> bool:
    producer = dense.input._keras_history.operation
    return isinstance(producer, keras.layers.Flatten)


def _flatten_input_shape(model: keras.Model):
    flatten = next(l for l in model.layers if isinstance(l, keras.layers.Flatten))
    return flatten.input.shape[1:]
