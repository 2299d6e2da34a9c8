"""Keras layers that compute exactly what MatConvNet's SimpleNN blocks compute.

`MeanSubtraction`, `MatConvNetConv2D` and `MatConvNetPooling2D` (per-side, possibly asymmetric
padding; average pooling over in-image cells) and `MatConvNetLRN` (alpha times the plain sum of
squares), registered for `.keras` serialization (`CUSTOM_OBJECTS`); they run under float32 and
`mixed_float16`, eagerly, in `tf.function` and under XLA.
Why Keras' stock layers do not do: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

PACKAGE = "fer_distill"


def four_pads(pad, what: str = "pad") -> tuple[int, int, int, int]:
    """MatConvNet's `pad` (a scalar or [top bottom left right]) as a 4-tuple of ints."""
    values = np.asarray(pad, dtype=np.float64).ravel()
    if values.size == 1:
        values = np.repeat(values, 4)
    if values.size == 2:  # [vertical horizontal], accepted by some MatConvNet versions
        values = np.repeat(values, 2)
    if values.size != 4 or np.any(values < 0) or np.any(values != np.round(values)):
        raise ValueError(
            f"{what} must be a non-negative integer or [top bottom left right], got {pad!r}")
    return tuple(int(v) for v in values)


def two_ints(value, what: str) -> tuple[int, int]:
    """MatConvNet's `stride`/`pool` (a scalar or [y x]) as a 2-tuple of positive ints."""
    values = np.asarray(value, dtype=np.float64).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or np.any(values < 1) or np.any(values != np.round(values)):
        raise ValueError(f"{what} must be a positive integer or [y x], got {value!r}")
    return tuple(int(v) for v in values)


def _pad_spatial(x, pads, value=0.0):
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)


def _padded_size(size, before, after, window, stride):
    if size is None:
        return None
    return (size + before + after - window) // stride + 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanSubtraction(keras.layers.Layer):
    """Subtracts MatConvNet's `normalization.averageImage` from 0-255 RGB input.

    The average image lives in the model as a non-trainable weight, so training, evaluation
    and serving share one preprocessing and a converted `.keras` file carries it. It is 1x1x3
    (VGG-face: one mean colour) or HxWx3 (VGG-f: a full 224x224 mean image). The subtraction
    runs in float32 even under a mixed policy, so means such as 129.1863 are not rounded to
    float16 before they are subtracted.
    """

    def __init__(self, image_shape: Sequence[int] = (1, 1, 3), initial_value=None, **kwargs):
        kwargs.setdefault("autocast", False)  # keep the mean in float32 under mixed precision
        super().__init__(**kwargs)
        if initial_value is not None:
            initial_value = np.asarray(initial_value, dtype=np.float32)
            if initial_value.size == 3:
                initial_value = initial_value.reshape(1, 1, 3)
            image_shape = initial_value.shape
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(
                f"average image must be HxWxC (1x1x3 or a full image), got shape {image_shape}")
        self.image_shape = image_shape
        self._initial_value = initial_value

    @property
    def input_dtype(self):
        # why: pixels arrive as float32 0-255; subtract before any cast to float16.
        return self.variable_dtype

    def build(self, input_shape):
        height, width, channels = self.image_shape
        if input_shape[-1] is not None and input_shape[-1] != channels:
            raise ValueError(
                f"layer {self.name!r}: average image has {channels} channels, "
                f"input has {input_shape[-1]} (shape {tuple(input_shape)})")
        for axis, size in ((1, height), (2, width)):
            if size != 1 and input_shape[axis] is not None and input_shape[axis] != size:
                raise ValueError(
                    f"layer {self.name!r}: average image is {height}x{width}, which does not "
                    f"match the input's {input_shape[1]}x{input_shape[2]}")
        init = ("zeros" if self._initial_value is None
                else keras.initializers.Constant(self._initial_value))
        self.average_image = self.add_weight(
            name="average_image", shape=self.image_shape, initializer=init, trainable=False)
        self._initial_value = None  # the weight holds it now; do not keep a second copy

    def call(self, inputs):
        return ops.cast(inputs - self.average_image, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MatConvNetConv2D(keras.layers.Conv2D):
    """`vl_nnconv`: a correlation with zero padding `pad = [top bottom left right]`.

    The kernel is MatConvNet's `[H W Cin Cout]` filter as stored (Keras HWIO, no transpose,
    no flip). Padding is applied explicitly and the convolution is 'valid', so the output is
    floor((H + top + bottom - kh) / stride) + 1 as in MatConvNet, for any pads.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), pad=(0, 0, 0, 0), **kwargs):
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)
        self.pad = four_pads(pad)

    def call(self, inputs):
        return super().call(_pad_spatial(inputs, self.pad))

    def compute_output_shape(self, input_shape):
        top, bottom, left, right = self.pad
        padded = list(input_shape)
        if padded[1] is not None:
            padded[1] += top + bottom
        if padded[2] is not None:
            padded[2] += left + right
        return super().compute_output_shape(tuple(padded))

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return {**config, "pad": list(self.pad)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MatConvNetPooling2D(keras.layers.Layer):
    """`vl_nnpool`: max or average pooling with per-side padding, MatConvNet's way.

    Output size is floor((H + top + bottom - pool) / stride) + 1. Max pooling treats padding
    as -inf (it never wins); average pooling divides each window's sum by the number of its
    cells that lie inside the image (padding is not counted), as `vl_nnpool` does.
    """

    def __init__(self, pool_size=(2, 2), strides=(2, 2), pad=(0, 0, 0, 0), method="max",
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = two_ints(pool_size, "pool")
        self.strides = two_ints(strides, "stride")
        self.pad = four_pads(pad)
        if method not in ("max", "avg"):
            raise ValueError(f"pooling method must be 'max' or 'avg', got {method!r}")
        self.method = method
        top, bottom, left, right = self.pad
        pool_h, pool_w = self.pool_size
        if max(top, bottom) >= pool_h or max(left, right) >= pool_w:
            # vl_nnpool requires it: a window made only of padding has no value.
            raise ValueError(
                f"pooling padding {list(self.pad)} must be smaller than the pool "
                f"{list(self.pool_size)}")

    def call(self, inputs):
        if self.method == "max":
            padded = _pad_spatial(inputs, self.pad, value=float("-inf"))
            return ops.max_pool(padded, self.pool_size, self.strides, padding="valid")
        padded = _pad_spatial(inputs, self.pad)
        mean_with_padding = ops.average_pool(padded, self.pool_size, self.strides,
                                             padding="valid")
        if not any(self.pad):
            return mean_with_padding
        # Fraction of each window inside the image; mean_with_padding / fraction is the sum
        # of the in-image cells divided by their count.
        ones = ops.ones_like(inputs[:1, :, :, :1])
        fraction = ops.average_pool(_pad_spatial(ones, self.pad), self.pool_size, self.strides,
                                    padding="valid")
        return mean_with_padding / fraction

    def compute_output_shape(self, input_shape):
        top, bottom, left, right = self.pad
        return (input_shape[0],
                _padded_size(input_shape[1], top, bottom, self.pool_size[0], self.strides[0]),
                _padded_size(input_shape[2], left, right, self.pool_size[1], self.strides[1]),
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "pad": list(self.pad), "method": self.method}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MatConvNetLRN(keras.layers.Layer):
    """`vl_nnnormalize` with `param = [N kappa alpha beta]`, over the last (channel) axis.

    y_k = x_k / (kappa + alpha * sum_{q in Q(k)} x_q^2)^beta with
    Q(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)] clipped to the channels. alpha is NOT
    divided by N. The window sum is a matmul with a 0/1 band matrix: exact, any N (N >= 2D
    turns LRN into an L2 normalization), XLA-able, and on CPU faster than adding N shifted
    channel slices (80 vs 121 ms for VGG-f's norm2 at batch 32, measured here). Everything is
    computed in float32 because squared activations overflow float16.
    """

    def __init__(self, depth=5, kappa=1.0, alpha=1e-4 / 5, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if int(depth) != depth or depth < 1:
            raise ValueError(f"LRN window N must be a positive integer, got {depth!r}")
        self.depth = int(depth)
        self.kappa = float(kappa)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"layer {self.name!r} needs a known number of channels")
        before = (self.depth - 1) // 2
        after = self.depth - 1 - before
        source = np.arange(channels)[:, None]
        target = np.arange(channels)[None, :]
        # band[q, k] = 1 when channel q is in the window of output channel k.
        self._band = np.asarray((source >= target - before) & (source <= target + after),
                                dtype=np.float32)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        window_sums = ops.matmul(ops.square(x), ops.convert_to_tensor(self._band))
        y = x * ops.power(self.kappa + self.alpha * window_sums, -self.beta)
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def param(self) -> list[float]:
        """MatConvNet's `param` vector [N kappa alpha beta]."""
        return [self.depth, self.kappa, self.alpha, self.beta]

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "kappa": self.kappa,
                "alpha": self.alpha, "beta": self.beta}


CUSTOM_OBJECTS = {
    cls.__name__: cls
    for cls in (MeanSubtraction, MatConvNetConv2D, MatConvNetPooling2D, MatConvNetLRN)
}


def input_and_normalization(input_shape, average_image=None, average_image_shape=None):
    """The `image` Input of a MatConvNet network and its `normalization` layer (not yet called):
    the mean is `average_image` when given, else zeros of `average_image_shape` (1x1xC)."""
    height, width, channels = (int(d) for d in input_shape)
    image = keras.Input(shape=(height, width, channels), name="image")
    if average_image is not None:
        return image, MeanSubtraction(initial_value=average_image, name="normalization")
    return image, MeanSubtraction(image_shape=average_image_shape or (1, 1, channels),
                                  name="normalization")
