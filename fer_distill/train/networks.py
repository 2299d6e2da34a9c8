"""Getting the networks of a stage ready, and refusing bad ones before any training starts.

Every check here runs before the run directory is written: a teacher of another architecture
than the student, a model whose head is not as wide as the data set has classes, a model
trained on other class names, a missing file, or an input size the data will not be resized
to, all stop the run with a message naming the file and what was expected.
"""
from __future__ import annotations

import json
import warnings
import weakref
from pathlib import Path
from typing import Sequence

import keras

from fer_distill import models, rundir
from fer_distill.models.matconvnet import read_matconvnet, to_keras
from fer_distill.train.execution import dtype_policy

SCRATCH = "scratch"

# The class names a MatConvNet file records (meta.classes), by the network loaded from it: a
# .mat carries no config.json, so this is the only way `check_classes` can see them.
_MAT_CLASS_NAMES: "weakref.WeakKeyDictionary[keras.Model, list[str]]" = weakref.WeakKeyDictionary()


def load_network(path, *, role: str, arch: str) -> keras.Model:
    """Loads a `.keras` or MatConvNet `.mat` network and checks it is an `arch` network.

    `role` ("init", "teacher", "KD student", ...) names the file in messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{role} file {path} not found")
    try:
        if path.suffix == ".mat":
            network = read_matconvnet(path)
            model = to_keras(network)
            if network.class_names:
                _MAT_CLASS_NAMES[model] = list(network.class_names)
        else:
            model = models.load_model(path, compile=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{role} file {path} could not be loaded: {error}") from None
    try:
        found = models.architecture_of(model)
    except ValueError as error:
        raise ValueError(f"{role} file {path}: {error}") from None
    if found != arch:
        raise ValueError(
            f"{role} file {path} holds a {found} network, but this run is {arch}: teacher and "
            f"student always share the architecture (paper section III); pass --arch={found} "
            f"or a {arch} file")
    return model


def check_classes(model: keras.Model, path, *, role: str, class_names: Sequence[str]) -> None:
    """The model's head must be as wide as the data set has classes; if the model comes from a
    run directory of this package, its classes must also be the data set's, in order."""
    width = int(models.logits_layer(model).output.shape[-1])
    if width != len(class_names):
        raise ValueError(
            f"{role} file {path}: its classifier fc8 has {width} outputs, the data set has "
            f"{len(class_names)} classes {list(class_names)}")
    if model in _MAT_CLASS_NAMES:
        _check_mat_class_names(_MAT_CLASS_NAMES[model], path, role=role,
                               class_names=class_names)
    run_config = Path(path).parent / rundir.CONFIG
    if run_config.is_file():
        try:
            recorded = json.loads(run_config.read_text(encoding="utf-8")).get("class_names")
        except ValueError:
            recorded = None
        if recorded is not None and list(recorded) != list(class_names):
            raise ValueError(
                f"{role} file {path} was trained on classes {recorded} ({run_config}); the "
                f"data set has {list(class_names)}")


def _check_mat_class_names(recorded: Sequence[str], path, *, role: str,
                           class_names: Sequence[str]) -> None:
    """A MatConvNet-trained 8-way network must list the data set's classes in its order.

    The same names in another order would convert cleanly and score silently wrong, so that
    is an error. Names that are not class names at all (MatConvNet's cnn_train often stores
    '1'..'8' or WordNet ids) cannot be checked: the order is then assumed, and said so.
    """
    names = [str(name).strip().lower() for name in recorded]
    expected = [str(name).lower() for name in class_names]
    if names == expected or len(names) != len(expected):
        return  # a width mismatch is reported by the caller with the file's head width
    if sorted(names) == sorted(expected):
        raise ValueError(
            f"{role} file {path} lists its classes as {list(recorded)}; the data set's order is "
            f"{list(class_names)}: fc8's outputs would be read as the wrong classes. Reorder "
            f"fc8 (or the file's meta.classes) to that order")
    warnings.warn(
        f"{role} file {path} names its classes {list(recorded)}, which are not the data set's "
        f"class names; fc8's outputs are assumed to be in the order {list(class_names)}",
        stacklevel=3)


def input_size(model: keras.Model) -> int:
    """The square input size S of a (None, S, S, 3) classifier."""
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
        raise ValueError(f"model {model.name!r} takes {shape}; expected (None, S, S, 3) RGB")
    return int(shape[1])


def check_input_size(model: keras.Model, path, *, role: str, image_size: int,
                     source: str = "--image_size") -> None:
    """The model must take `image_size` images; `source` says where that size comes from
    (the flag, or another network of the run), so the message blames the right thing."""
    size = input_size(model)
    if size != image_size:
        raise ValueError(f"{role} file {path} takes {size}x{size} images; this run's input "
                         f"size is {image_size}x{image_size} (from {source})")


def initial_network(init: str | None, *, arch: str, num_classes: int, image_size: int | None,
                    head: str, seed: int) -> tuple[keras.Model, dict]:
    """The network a fine-tuning or distillation stage starts from, and what was done to it.

    `init` is a .keras/.mat file or None/"scratch" (a fresh random network; for VGG the
    builders' initialisation, not a pretrained one). `head`: "auto" gives a fresh fc8 when the
    init network's fc8 is not `num_classes` wide (a pretrained ImageNet or face network) and
    keeps it otherwise; "new" always; "keep" never.
    """
    if init in (None, "", SCRATCH):
        kwargs = ({"input_size": image_size}
                  if arch in models.SIZED_ARCHITECTURES and image_size else {})
        keras.utils.set_random_seed(seed)
        return models.build(arch, num_classes, **kwargs), {"init": SCRATCH, "new_head": True}
    model = load_network(init, role="init", arch=arch)
    width = int(models.logits_layer(model).output.shape[-1])
    new_head = head == "new" or (head == "auto" and width != num_classes)
    if new_head:
        model = models.with_new_head(model, num_classes, seed=seed)
    elif width != num_classes:
        raise ValueError(f"init file {init}: its fc8 has {width} outputs, the data set has "
                         f"{num_classes} classes (and --head=keep forbids a new fc8)")
    return model, {"init": str(init), "new_head": new_head, "init_classes": width}


def under_policy(model: keras.Model, policy: str, *, copy: bool = False) -> keras.Model:
    """`model` computing under `policy`: itself if it already does (and not `copy`), else a
    rebuilt, uncompiled copy.

    A `.keras` file records each layer's dtype policy, so a network saved in float32 loads in
    float32 whatever the global policy; rebuilding it under the current policy
    (`models.rebuild`: a SimpleNN chain or a DagNN graph such as ResNet-50) gives every layer
    the policy (the classifier stays float32, as the builders make it) and the weights are
    copied layer by layer, by name.
    """
    layers = [layer for layer in model.layers if layer.weights]
    head = models.logits_layer(model).name
    if not copy and all(layer.dtype_policy.name == policy or layer.name == head
                        for layer in layers):
        return model
    with dtype_policy(policy):
        rebuilt = models.rebuild(model)
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt



def apply_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """Puts MatConvNet's weight decay on `model`'s kernels (biases and other weights get none):
    an L2 term (weight_decay / 2)·‖W‖² per kernel in the model's losses, so its gradient
    weight_decay·W joins the loss gradient before momentum, as in cnn_train. Returns how many
    kernels it decays. The term lives on the variables, not in the saved model's config."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
    count = 0
    for variable in model.trainable_variables:
        if variable.path.rsplit("/", 1)[-1] == "kernel":
            variable.regularizer = regularizer
            count += 1
    return count
