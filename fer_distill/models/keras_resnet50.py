"""Keras' own ImageNet ResNet50 weights (`keras.applications.ResNet50`) in this package's
`resnet50`.

`load_keras_resnet50(path)` reads a weights file of `keras.applications.ResNet50` (`.h5`, with
or without the top, or `.weights.h5`) with Keras' own loader and moves every weight into
`resnet50(pool1_pad=KERAS_POOL1_PAD)` through an explicit name table (`keras_name_map`); the
result computes what Keras' model computes (BGR mean, conv biases and BN epsilon folded in).
Why each fold holds: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import keras
import numpy as np

from fer_distill.models.resnet50 import INPUT_SIZE, KERAS_POOL1_PAD, STAGES, resnet50

# `keras.applications.resnet.preprocess_input` subtracts these from BGR pixels.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
KERAS_BN_EPSILON = 1.001e-5
_CLASSES = 1000


def keras_name_map() -> dict[str, tuple[str, str]]:
    """{Keras ResNet50 layer: (our conv or dense layer, our batch norm or "")}."""
    table = {"conv1_conv": ("conv1", "bn_conv1"), "predictions": ("fc1000", "")}
    for stage, units, _ in STAGES:
        for u in range(units):
            unit = f"{stage}{'abcdef'[u]}"
            block = f"conv{stage}_block{u + 1}"
            branches = {1: "branch2a", 2: "branch2b", 3: "branch2c"}
            if u == 0:
                branches[0] = "branch1"
            for k, branch in branches.items():
                table[f"{block}_{k}_conv"] = (f"res{unit}_{branch}", f"bn{unit}_{branch}")
    return table


def _keras_bn(conv_name: str) -> str:
    return "conv1_bn" if conv_name == "conv1_conv" else conv_name.replace("_conv", "_bn")


def load_keras_resnet50(path: str | os.PathLike, input_size: int = INPUT_SIZE) -> keras.Model:
    """`resnet50` (1000 classes, Keras' pool1 padding, `input_size` square inputs) holding
    the weights of a `keras.applications.ResNet50` weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras ResNet50 weights file not found: {path}")
    with_top = _has_top(path)
    source = keras.applications.ResNet50(weights=None, include_top=with_top,
                                         input_shape=(input_size, input_size, 3))
    try:
        source.load_weights(path)
    except Exception as error:  # Keras raises ValueError, KeyError, OSError ... by format
        raise ValueError(f"{path}: not the weights of keras.applications.ResNet50"
                         f"{'' if with_top else ' (include_top=False)'}: "
                         f"{type(error).__name__}: {error}") from None
    return from_keras_resnet50(source, where=str(path))


def _has_top(path: Path) -> bool:
    """Whether the file holds the 1000-way classifier: a `predictions` group in the legacy
    HDF5 format (by layer name), a `layers/dense` group in Keras 3's `.weights.h5` (by
    object path; ResNet50's only Dense layer)."""
    found = []

    def visit(name):
        if name.rsplit("/", 1)[-1] == "predictions" or name == "layers/dense":
            found.append(name)

    try:
        with h5py.File(path, "r") as handle:
            handle.visit(visit)
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 weights file: {error}") from None
    return bool(found)


def from_keras_resnet50(source: keras.Model, where: str = "model") -> keras.Model:
    """`resnet50` computing what the Keras ResNet50 `source` computes (on RGB 0-255 input
    instead of `preprocess_input`'s BGR minus the mean)."""
    mean_rgb = np.asarray(KERAS_MEAN_BGR[::-1], np.float32)
    size = source.input_shape[1]
    if size is None or source.input_shape[2] != size:
        raise ValueError(f"{where}: takes inputs {source.input_shape}; expected square ones")
    target = resnet50(_CLASSES, int(size), average_image=mean_rgb, pool1_pad=KERAS_POOL1_PAD)
    has_top = any(layer.name == "predictions" for layer in source.layers)
    for keras_name, (conv_name, bn_name) in keras_name_map().items():
        if keras_name == "predictions" and not has_top:
            continue
        try:
            layer = source.get_layer(keras_name)
        except ValueError:
            raise ValueError(f"{where}: has no layer {keras_name!r}; expected "
                             f"keras.applications.ResNet50's layers") from None
        kernel, bias = (w.numpy().astype(np.float64) for w in layer.weights)
        if keras_name == "conv1_conv":
            kernel = kernel[:, :, ::-1, :]  # BGR → RGB input channels
        if not bn_name:
            _assign(target.get_layer(conv_name), [kernel, bias], where, keras_name)
            continue
        ours = target.get_layer(conv_name)
        if ours.use_bias:
            _assign(ours, [kernel, bias], where, keras_name)
            shift = np.zeros_like(bias)
        else:
            _assign(ours, [kernel], where, keras_name)
            shift = bias  # BN(x + b) = BN with its mean moved by -b
        gamma, beta, mean, variance = (w.numpy().astype(np.float64)
                                       for w in source.get_layer(_keras_bn(keras_name)).weights)
        bn = target.get_layer(bn_name)
        variance = variance + KERAS_BN_EPSILON - bn.epsilon
        _assign(bn, [gamma, beta, mean - shift, variance], where, _keras_bn(keras_name))
    return target


def _assign(layer, arrays, where, keras_name):
    expected = [tuple(w.shape) for w in layer.weights]
    found = [tuple(a.shape) for a in arrays]
    if expected != found:
        raise ValueError(f"{where}: layer {keras_name!r} has weights {found}; our "
                         f"{layer.name!r} needs {expected}")
    layer.set_weights([a.astype(np.float32) for a in arrays])
