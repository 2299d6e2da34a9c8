"""A Keras model of fer_distill as a MatConvNet SimpleNN `.mat` file: the writer half of
fer_distill.models.matconvnet, kept out of the package (the converter never writes).

`save_matconvnet(model, path, layout=...)` writes a model of this package in each layout the
converter reads, the way MatConvNet itself stores nets (`cnn_imagenet_init.m` +
`vl_simplenn_tidy.m` field sets, `cnn_train.m` checkpoints, `import-caffe.py` conventions), as
MATLAB v5 (scipy) or v7.3 (HDF5 in MATLAB's conventions, `write_v73`). Tests use it to
produce real-format files, the MatConvNet path of the reproduction tests to stand in for
MatConvNet-trained networks, and `experiments.convert_matconvnet --write_example` to give a
fresh machine a file to convert.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import keras
import numpy as np
import scipy.io

from fer_distill.atomic import atomic_path
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.models import build
from fer_distill.models import layers as mcn
from fer_distill.models import matconvnet as mc
from fer_distill.models import simplenn as nn



class StructArray(list):
    """A list of structs with the same fields, written as a MATLAB struct ARRAY (1 x N), not a
    cell: `cnn_train`'s `stats.train` / `stats.val` are struct arrays."""


def save_matconvnet(model: keras.Model, path: str | os.PathLike, layout: str = "beta17", *,
                    matlab_version: str = "5", class_names: Sequence[str] | None = None,
                    epoch: int = 1) -> Path:
    """Writes `model` (built by this package) as a MatConvNet SimpleNN file, atomically.

    layout "beta17": `layers` + `meta`, conv weights as `weights = {filters, biases}` (biases
    C x 1), a final softmax `prob` (as the model zoo's deployed files); "beta16": `layers`,
    `normalization`, `classes`, conv `filters`/`biases` (biases 1 x C), LRN type 'normalize';
    "net": one struct `net` with `layers`, `classes`, `normalization` (the VGG-Face
    release's shape); "checkpoint": `net` (with `meta`, a trailing softmaxloss `loss`, the
    training fields cnn_train adds), `state` (zero momentum) and `stats`, as
    `cnn_train.m` saves `net-epoch-N.mat`. `matlab_version` "5" writes with scipy, "7.3"
    writes HDF5 in MATLAB's conventions.
    """
    if layout not in mc.LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {mc.LAYOUTS}")
    if matlab_version not in mc.MATLAB_VERSIONS:
        raise ValueError(f"unknown MATLAB version {matlab_version!r}; expected "
                         f"{mc.MATLAB_VERSIONS}")
    variables = matconvnet_variables(model, layout, class_names=class_names, epoch=epoch)
    path = Path(path)
    with atomic_path(path) as tmp:
        if matlab_version == "5":
            scipy.io.savemat(tmp, _to_v5(variables), format="5", long_field_names=True,
                             do_compression=False, oned_as="column")
        else:
            write_v73(tmp, variables)
    return path


def matconvnet_variables(model: keras.Model, layout: str = "beta17", *,
                         class_names: Sequence[str] | None = None,
                         epoch: int = 1) -> dict[str, Any]:
    """The top-level MATLAB variables of `model` in `layout`, as plain Python (dict = struct,
    list = cell, str = char, ndarray = numeric in MATLAB's dimension order)."""
    chain = nn.chain_of(model)
    modern = layout in ("beta17", "checkpoint")
    layers = []
    for spec in chain:
        layer = model.get_layer(spec["name"])
        layers.append(_layer_struct(spec, layer, modern=modern,
                                    training=layout == "checkpoint"))
    if layout == "checkpoint":
        layers.append({"type": "softmaxloss", "name": "loss", "precious": False})
    else:
        layers.append({"name": "prob", "type": "softmax"} if modern else
                      {"type": "softmax", "name": "prob"})
    height, width, channels = (int(d) for d in model.input.shape[1:])
    average = model.get_layer("normalization").average_image.numpy().astype(np.float32)
    normalization = {"imageSize": np.array([[height, width, channels]], np.float64),
                     "averageImage": average, "interpolation": "bilinear",
                     "keepAspect": True, "border": np.zeros((1, 2)), "cropSize": 1.0}
    num_classes = int(chain[-1]["size"][3])
    names = list(class_names) if class_names is not None else _default_class_names(num_classes)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
    classes = {"name": names, "description": names}
    if layout == "beta17":
        return {"layers": layers, "meta": {"inputs": [{"name": "input",
                                                       "size": np.array([[height, width,
                                                                          channels, 1]],
                                                                        np.float64)}],
                                           "classes": classes,
                                           "normalization": normalization}}
    if layout == "beta16":
        return {"classes": classes, "layers": layers, "normalization": normalization}
    if layout == "net":
        return {"net": {"layers": layers, "classes": classes, "normalization": normalization}}
    solver_state = [[np.zeros(w.shape, np.float32) for w in lay.get("weights", [])]
                    for lay in layers]
    train_stats = StructArray(
        {"num": 64.0 * (e + 1), "time": 10.0 * (e + 1), "objective": 2.0 / (e + 1),
         "top1err": 0.5 / (e + 1), "top5err": 0.1 / (e + 1)} for e in range(epoch))
    return {
        "net": {"meta": {"normalization": normalization, "classes": classes,
                         "inputSize": np.array([[height, width, channels, 64]], np.float64),
                         "trainOpts": {"learningRate": np.full((1, epoch), 1e-3),
                                       "numEpochs": float(epoch), "batchSize": 64.0,
                                       "weightDecay": 5e-4}},
                "layers": layers},
        "state": {"solverState": solver_state},
        "stats": {"train": train_stats, "val": train_stats},
    }


def _default_class_names(num_classes: int) -> list[str]:
    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class{i + 1}" for i in range(num_classes)]


def _layer_struct(spec: dict, layer, *, modern: bool, training: bool) -> dict:
    kind, name = spec["type"], spec["name"]
    extra = {"precious": False} if modern else {}
    if kind == "conv":
        kernel, bias = (w.numpy().astype(np.float32) for w in layer.weights)
        filters = kernel.reshape(spec["size"])  # Dense kernels back to H x W x Cin x Cout
        fields = {"name": name, "type": "conv"}
        if modern:
            fields["weights"] = [filters, bias.reshape(-1, 1)]
        else:
            fields["filters"] = filters
            fields["biases"] = bias.reshape(1, -1)
        fields.update({"size": np.array([spec["size"]], np.float64),
                       "pad": np.array([mcn.four_pads(spec["pad"])], np.float64),
                       "stride": np.array([mcn.two_ints(spec["stride"], "stride")], np.float64),
                       "dilate": np.array([mcn.two_ints(spec["dilate"], "dilate")], np.float64)})
        if modern:
            fields["opts"] = []
        if training:
            fields["learningRate"] = np.array([[1.0, 2.0]])
            fields["weightDecay"] = np.array([[1.0, 0.0]])
        return {**fields, **extra}
    if kind == "relu":
        return {"name": name, "type": "relu", "leak": float(spec["leak"]), **extra}
    if kind == "pool":
        return {"name": name, "type": "pool", "method": spec["method"],
                "pool": np.array([mcn.two_ints(spec["pool"], "pool")], np.float64),
                "stride": np.array([mcn.two_ints(spec["stride"], "stride")], np.float64),
                "pad": np.array([mcn.four_pads(spec["pad"])], np.float64),
                **({"opts": []} if modern else {}), **extra}
    if kind == "lrn":
        return {"name": name, "type": "lrn" if modern else "normalize",
                "param": np.array([spec["param"]], np.float64), **extra}
    if kind == "dropout":
        return {"name": name, "type": "dropout", "rate": float(spec["rate"]), **extra}
    if kind == "bnorm":
        gamma, beta, mean, variance = (w.numpy().astype(np.float64) for w in layer.weights)
        sigma = np.sqrt(variance + layer.epsilon)
        moments = np.stack([mean, sigma], axis=1).astype(np.float32)
        return {"name": name, "type": "bnorm",
                "weights": [gamma.astype(np.float32).reshape(-1, 1),
                            beta.astype(np.float32).reshape(-1, 1), moments],
                "epsilon": float(layer.epsilon), **extra}
    raise ValueError(f"layer {name!r}: no MatConvNet form for type {kind!r}")


def _to_v5(value):
    """Plain Python → what scipy.io.savemat writes as the intended MATLAB type."""
    if isinstance(value, dict):
        return {key: _to_v5(item) for key, item in value.items()}
    if isinstance(value, StructArray):
        fields = list(value[0])
        array = np.empty((1, len(value)), dtype=[(f, object) for f in fields])
        for i, item in enumerate(value):
            for field in fields:
                array[field][0, i] = _to_v5(item[field])
        return array
    if isinstance(value, list):
        cell = np.empty((1, len(value)) if value else (0, 0), dtype=object)
        for i, item in enumerate(value):
            cell[0, i] = _to_v5(item)
        return cell
    if isinstance(value, bool):
        return np.array([[value]], dtype=bool)
    if isinstance(value, (int, float)):
        return np.array([[value]], dtype=np.float64)
    return value


# MATLAB v7.3 = HDF5 with a 512-byte user block holding MATLAB's header, every variable
# carrying a MATLAB_class attribute, arrays stored with their dimensions reversed (MATLAB is
# column-major), char as uint16, cells as object references into "#refs#", structs as groups
# with a MATLAB_fields attribute, and empty values as their dimensions with MATLAB_empty=1.
_H5_CLASSES = {np.dtype(np.float64): "double", np.dtype(np.float32): "single",
               np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8",
               np.dtype(np.int16): "int16", np.dtype(np.uint16): "uint16",
               np.dtype(np.int32): "int32", np.dtype(np.uint32): "uint32",
               np.dtype(np.int64): "int64", np.dtype(np.uint64): "uint64"}


def write_v73(path: Path, variables: dict[str, Any]):
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as handle:
        refs = handle.create_group("#refs#")
        counter = iter(range(10**9))
        for key, value in variables.items():
            _h5_write(handle, key, value, refs, counter)
    now = datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {now} HDF5 schema 1.00 ."
    header = text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as raw:
        raw.write(header.ljust(512, b"\x00"))


def _h5_class_attr(node, cls: str):
    node.attrs.create("MATLAB_class", np.bytes_(cls))


def _h5_write(parent, key: str, value, refs, counter):
    if isinstance(value, dict):
        group = parent.create_group(key)
        _h5_class_attr(group, "struct")
        _h5_fields_attr(group, list(value))
        for field, item in value.items():
            _h5_write(group, field, item, refs, counter)
        return group
    if isinstance(value, StructArray):
        group = parent.create_group(key)
        _h5_class_attr(group, "struct")
        fields = list(value[0])
        _h5_fields_attr(group, fields)
        for field in fields:
            references = np.empty((len(value), 1), dtype=h5py.ref_dtype)
            for i, item in enumerate(value):
                references[i, 0] = _h5_write(refs, _ref_name(counter), item[field], refs,
                                             counter).ref
            group.create_dataset(field, data=references)
        return group
    if isinstance(value, list):
        if not value:
            return _h5_empty(parent, key, "cell", (0, 0))
        references = np.empty((len(value), 1), dtype=h5py.ref_dtype)  # 1 x N, reversed
        for i, item in enumerate(value):
            target = _h5_write(refs, _ref_name(counter), item, refs, counter)
            references[i, 0] = target.ref
        dataset = parent.create_dataset(key, data=references)
        _h5_class_attr(dataset, "cell")
        return dataset
    if isinstance(value, str):
        if not value:
            return _h5_empty(parent, key, "char", (0, 0))
        codes = np.array([[ord(c)] for c in value], dtype=np.uint16)  # 1 x N, reversed
        dataset = parent.create_dataset(key, data=codes)
        _h5_class_attr(dataset, "char")
        dataset.attrs.create("MATLAB_int_decode", np.int32(2))
        return dataset
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray)
                                                and value.dtype == bool):
        data = np.atleast_2d(np.asarray(value, dtype=np.uint8))
        dataset = parent.create_dataset(key, data=data.T)
        _h5_class_attr(dataset, "logical")
        dataset.attrs.create("MATLAB_int_decode", np.int32(1))
        return dataset
    array = np.asarray(value, dtype=np.float64 if isinstance(value, (int, float)) else None)
    if array.dtype not in _H5_CLASSES:
        raise ValueError(f"cannot write {key!r} ({array.dtype}) to a MATLAB v7.3 file")
    if array.ndim < 2:
        array = array.reshape(1, -1)
    if array.size == 0:
        return _h5_empty(parent, key, _H5_CLASSES[array.dtype], array.shape)
    dataset = parent.create_dataset(key, data=np.ascontiguousarray(array.T))
    _h5_class_attr(dataset, _H5_CLASSES[array.dtype])
    return dataset


def _h5_fields_attr(group, fields: Sequence[str]):
    names = np.empty(len(fields), dtype=h5py.vlen_dtype(np.dtype("S1")))
    for i, field in enumerate(fields):
        names[i] = np.frombuffer(field.encode("ascii"), dtype="S1")
    group.attrs.create("MATLAB_fields", names)


def _h5_empty(parent, key: str, cls: str, shape):
    dataset = parent.create_dataset(key, data=np.array(shape, dtype=np.uint64))
    _h5_class_attr(dataset, cls)
    dataset.attrs.create("MATLAB_empty", np.uint8(1))
    return dataset


def _ref_name(counter) -> str:
    """Names in "#refs#" as MATLAB makes them: a, b, …, z, ba, bb, …"""
    n = next(counter)
    letters = ""
    while True:
        letters = chr(ord("a") + n % 26) + letters
        n //= 26
        if n == 0:
            return letters


def write_example(path: str | os.PathLike, *, arch: str = "mini", layout: str = "beta17",
                  matlab_version: str = "5", seed: int = 0, num_classes: int = 8) -> Path:
    """Writes a MatConvNet file of `arch` with seeded random weights (no download needed).

    Lets a fresh machine run a conversion end to end, and tests stand in for MatConvNet-trained
    teachers and students. The weights are random: the file is a format example, not a model.
    """
    keras.utils.set_random_seed(seed)
    model = build(arch, num_classes)
    return save_matconvnet(model, path, layout, matlab_version=matlab_version)
