"""The paper's networks (VGG-f, VGG-face), a small stand-in (`mini`), and what every stage
needs from a model: a fresh classifier (`with_new_head`), the embedding E = relu7 beside the
logits A = fc8 (`embedding_model`), and loading from `.keras` or MatConvNet `.mat` files.

Importing this package registers the custom layers, so `keras.saving.load_model` opens any
`.keras` file the package wrote. Layer names are MatConvNet's (`conv1` … `fc8`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from fer_distill.models import layers  # noqa: F401  (registers the custom layers)
from fer_distill.models.mini import mini
from fer_distill.models.vgg_f import vgg_f
from fer_distill.models.vgg_face import vgg_face

ARCHITECTURES = ("vgg_f", "vgg_face", "mini")
# A converted MatConvNet chain that is none of the above keeps this name.
UNKNOWN_ARCHITECTURE = "simplenn"
EMBEDDING_LAYER = "relu7"
LOGITS_LAYER = "fc8"

_BUILDERS = {"vgg_f": vgg_f, "vgg_face": vgg_face, "mini": mini}


def build(arch: str, num_classes: int = 8, **kwargs) -> keras.Model:
    """Builds `arch` ("vgg_f" | "vgg_face" | "mini") with `num_classes` logits."""
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return _BUILDERS[arch](num_classes, **kwargs)


def architecture_of(model: keras.Model) -> str:
    """The architecture a model records in its name ("vgg_f", "vgg_face", "mini", "simplenn")."""
    if model.name in ARCHITECTURES or model.name == UNKNOWN_ARCHITECTURE:
        return model.name
    raise ValueError(
        f"model {model.name!r} is not a fer_distill network: its name should be one of "
        f"{ARCHITECTURES + (UNKNOWN_ARCHITECTURE,)}")


def logits_layer(model: keras.Model) -> keras.layers.Layer:
    """The classifier A: `fc8` when present (MatConvNet's name), else the output layer."""
    names = {layer.name for layer in model.layers}
    if LOGITS_LAYER in names:
        return model.get_layer(LOGITS_LAYER)
    return model.layers[-1]


def embedding_layer(model: keras.Model) -> keras.layers.Layer:
    """The embedding E: `relu7` when present, else the layer feeding the classifier
    (dropout skipped), i.e. the penultimate activation of any converted chain."""
    names = {layer.name for layer in model.layers}
    if EMBEDDING_LAYER in names:
        return model.get_layer(EMBEDDING_LAYER)
    producer = logits_layer(model).input._keras_history.operation
    while isinstance(producer, keras.layers.Dropout):
        producer = producer.input._keras_history.operation
    return producer


def embedding_model(model: keras.Model) -> keras.Model:
    """Same input → {"embedding": relu7 output (float32), "logits": fc8 output}.

    Shares the layers (and so the weights) of `model`. The embedding is cast to float32 so
    that distances and SVMs downstream see the same numbers under a mixed-precision policy.
    """
    embedding = embedding_layer(model).output
    if len(embedding.shape) != 2:
        raise ValueError(
            f"model {model.name!r}: embedding layer {embedding_layer(model).name!r} gives "
            f"{tuple(embedding.shape)}, expected a vector (None, D)")
    if embedding.dtype != "float32":
        embedding = keras.layers.Activation("linear", dtype="float32",
                                            name="embedding_float32")(embedding)
    return keras.Model(model.input, {"embedding": embedding,
                                     "logits": logits_layer(model).output},
                       name=f"{model.name}_embedding")


def with_new_head(model: keras.Model, num_classes: int, seed: int | None = None) -> keras.Model:
    """A copy of `model` whose classifier `fc8` is fresh, `num_classes` wide.

    Every other weight is copied (not shared): a teacher and a student fine-tuned from the
    same pretrained network must not train each other's layers. The new fc8 is initialised
    as MatConvNet initialises a classifier for fine-tuning (N(0, 0.01^2), zero bias),
    reproducibly when `seed` is given; it computes in float32, like the one it replaces.
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    head = logits_layer(model)
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(
            f"model {model.name!r}: classifier {head.name!r} is a {type(head).__name__}, "
            f"expected Dense")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    features = copy.get_layer(head.name).input
    logits = keras.layers.Dense(
        int(num_classes), name=head.name, dtype="float32",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed),
        bias_initializer="zeros")(features)
    # why: the old head stays in `copy` but not in the new graph; its name is reused.
    return keras.Model(copy.input, logits, name=model.name)


def load_model(path: str | os.PathLike, **kwargs) -> keras.Model:
    """Loads a `.keras` file (keyword arguments go to `keras.saving.load_model`) or converts
    a MatConvNet `.mat` file with `matconvnet.load_matconvnet`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".keras":
        _check_keras_archive(path)
        return keras.saving.load_model(path, **kwargs)
    if path.suffix == ".mat":
        if kwargs:
            raise ValueError(f"{path}: options {sorted(kwargs)} apply to .keras files only")
        from fer_distill.models.matconvnet import load_matconvnet
        return load_matconvnet(path)
    raise ValueError(f"{path}: expected a .keras or a MatConvNet .mat file")


def _check_keras_archive(path: Path) -> None:
    """A `.keras` file is a zip archive holding config.json; Keras says "File not found" for
    anything else, so say what is wrong first."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras .keras file: not a zip archive (truncated, or "
                         "another format saved under the .keras name?)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a readable Keras .keras file ({error})") from None
    if "config.json" not in names:
        raise ValueError(f"{path} is not a Keras .keras file: the zip archive holds no "
                         "config.json")


__all__ = [
    "ARCHITECTURES", "UNKNOWN_ARCHITECTURE", "architecture_of", "build", "embedding_layer",
    "embedding_model", "load_model", "logits_layer", "mini", "vgg_f", "vgg_face",
    "with_new_head",
]
