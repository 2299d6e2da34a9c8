"""MatConvNet's SimpleNN forward pass in plain NumPy (float64), for checking conversions.

Written from MatConvNet's documentation (vl_nnconv, vl_nnpool, vl_nnnormalize, vl_nnrelu,
vl_simplenn) and ../shared/NOTES.md §2, NOT from fer_distill's Keras layers: the point is
an independent second opinion. Layers are dicts with MatConvNet's field names, as they sit in
a `.mat` file's `layers` cell (`weights` = [filters, biases], filters H x W x Cin x Cout).
Arrays are single images H x W x C, as in MATLAB.
"""
from __future__ import annotations

import numpy as np


def _pads(pad):
    pad = np.ravel(np.asarray(pad, dtype=int))
    return tuple(int(p) for p in (np.repeat(pad, 4) if pad.size == 1 else pad))


def _pair(value):
    value = np.ravel(np.asarray(value, dtype=int))
    return tuple(int(v) for v in (np.repeat(value, 2) if value.size == 1 else value))


def conv(x, filters, biases, stride=1, pad=0, dilate=1):
    """vl_nnconv: y(i,j,o) = b(o) + sum_{u,v,c} w(u,v,c,o) x(s*i+d*u-pt, s*j+d*v-pl, c), zeros
    outside the image; a filter of depth Cin/groups is applied per group of channels."""
    top, bottom, left, right = _pads(pad)
    sy, sx = _pair(stride)
    dy, dx = _pair(dilate)
    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim < 4:  # MATLAB drops trailing singleton dimensions
        filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))
    kh, kw, fin, fout = filters.shape
    x = np.pad(np.asarray(x, dtype=np.float64), ((top, bottom), (left, right), (0, 0)))
    height = (x.shape[0] - (dy * (kh - 1) + 1)) // sy + 1
    width = (x.shape[1] - (dx * (kw - 1) + 1)) // sx + 1
    groups = x.shape[2] // fin
    per_group = fout // groups
    out = np.zeros((height, width, fout))
    for u in range(kh):
        for v in range(kw):
            patch = x[u * dy: u * dy + sy * (height - 1) + 1: sy,
                      v * dx: v * dx + sx * (width - 1) + 1: sx, :]
            for g in range(groups):
                outs = slice(g * per_group, (g + 1) * per_group)
                out[:, :, outs] += patch[:, :, g * fin:(g + 1) * fin] @ filters[u, v, :, outs]
    if biases is not None and np.size(biases):
        out += np.ravel(biases)
    return out


def relu(x, leak=0.0):
    """vl_nnrelu: x for x > 0, leak * x otherwise."""
    return np.where(x > 0, x, leak * x)


def pool(x, size, stride=1, pad=0, method="max"):
    """vl_nnpool: out = floor((H + pt + pb - ph) / sy) + 1 windows; max ignores padding,
    avg divides by the number of window cells inside the image."""
    top, bottom, left, right = _pads(pad)
    ph, pw = _pair(size)
    sy, sx = _pair(stride)
    height_in, width_in, channels = x.shape
    height = (height_in + top + bottom - ph) // sy + 1
    width = (width_in + left + right - pw) // sx + 1
    out = np.empty((height, width, channels))
    for i in range(height):
        y1, y2 = max(i * sy - top, 0), min(i * sy - top + ph, height_in)
        for j in range(width):
            x1, x2 = max(j * sx - left, 0), min(j * sx - left + pw, width_in)
            window = x[y1:y2, x1:x2, :]
            if method == "max":
                out[i, j] = window.max(axis=(0, 1))
            else:
                out[i, j] = window.sum(axis=(0, 1)) / ((y2 - y1) * (x2 - x1))
    return out


def lrn(x, param):
    """vl_nnnormalize: y_k = x_k / (kappa + alpha * sum_{q in Q(k)} x_q^2)^beta,
    Q(k) = [max(1, k - floor((N-1)/2)), min(D, k + ceil((N-1)/2))] (1-based)."""
    n, kappa, alpha, beta = (float(p) for p in np.ravel(param))
    n = int(n)
    depth = x.shape[-1]
    out = np.empty_like(x, dtype=np.float64)
    for k in range(1, depth + 1):
        first = max(1, k - (n - 1) // 2)
        last = min(depth, k + -(-(n - 1) // 2))
        total = np.sum(x[..., first - 1:last] ** 2, axis=-1)
        out[..., k - 1] = x[..., k - 1] / (kappa + alpha * total) ** beta
    return out


def bnorm(x, multipliers, biases, moments):
    """vl_nnbnorm in test mode: G (x - mu) / sigma + B with moments = [mu sigma]."""
    moments = np.asarray(moments, dtype=np.float64).reshape(-1, 2)
    return (np.ravel(multipliers) * (x - moments[:, 0]) / moments[:, 1] + np.ravel(biases))


def forward(layers, image, average_image):
    """Runs a SimpleNN `layers` list on one H x W x 3 image (0-255) in test mode.

    Returns {layer name: output}; fully connected outputs are 1 x 1 x C maps, as in MATLAB.
    softmax / softmaxloss / loss layers are skipped (the logits are what is compared).
    """
    x = np.asarray(image, dtype=np.float64) - np.asarray(average_image, dtype=np.float64)
    outputs = {}
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            if "weights" in layer:
                filters, biases = layer["weights"][0], layer["weights"][1]
            else:
                filters, biases = layer["filters"], layer["biases"]
            x = conv(x, filters, biases, layer.get("stride", 1), layer.get("pad", 0),
                     layer.get("dilate", 1))
        elif kind == "relu":
            x = relu(x, float(np.ravel(layer.get("leak", 0.0))[0]))
        elif kind == "pool":
            x = pool(x, layer["pool"], layer.get("stride", 1), layer.get("pad", 0),
                     layer.get("method", "max"))
        elif kind in ("normalize", "lrn"):
            x = lrn(x, layer["param"])
        elif kind == "bnorm":
            x = bnorm(x, *layer["weights"][:3])
        elif kind in ("dropout", "softmax", "softmaxloss", "loss"):
            continue  # dropout is the identity at test time
        else:
            raise ValueError(f"reference has no layer type {kind!r}")
        outputs[layer["name"]] = x
    return outputs
