"""The paper's networks (VGG-f, VGG-face), a small stand-in (`mini`), the journal
extension's ResNet-50 (`resnet50`), and what every stage needs from a model: a fresh
classifier (`with_new_head`), the embedding E beside the logits A (`embedding_model`: relu7
and fc8 for the VGG networks and mini, pool5 and fc1000 for ResNet-50; `EMBEDDING_LAYERS`,
`LOGITS_LAYERS`), and loading from `.keras`, MatConvNet `.mat` (SimpleNN or DagNN) or Keras'
own ResNet50 weight files (`.h5`, `.weights.h5`).

Importing this package registers the custom layers, so `keras.saving.load_model` opens any
`.keras` file the package wrote. Layer names are MatConvNet's (`conv1` … `fc8`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from fer_distill.models import layers  # (importing it registers the custom layers)
from fer_distill.models import simplenn
from fer_distill.models import resnet50 as _resnet50
from fer_distill.models.keras_resnet50 import load_keras_resnet50
from fer_distill.models.matconvnet import load_matconvnet
from fer_distill.models.mini import mini
from fer_distill.models.resnet50 import resnet50
from fer_distill.models.vgg_f import vgg_f
from fer_distill.models.vgg_face import vgg_face

ARCHITECTURES = ("vgg_f", "vgg_face", "mini", "resnet50")
# A converted MatConvNet chain (SimpleNN) or graph (DagNN) that is none of the above keeps
# one of these names.
UNKNOWN_ARCHITECTURE = "simplenn"
UNKNOWN_DAG_ARCHITECTURE = "dagnn"
EMBEDDING_LAYER = "relu7"
LOGITS_LAYER = "fc8"
# The embedding E and the logits A by architecture (MatConvNet's layer names).
EMBEDDING_LAYERS = {"vgg_f": EMBEDDING_LAYER, "vgg_face": EMBEDDING_LAYER,
                    "mini": EMBEDDING_LAYER, "resnet50": _resnet50.EMBEDDING_LAYER}
LOGITS_LAYERS = {"vgg_f": LOGITS_LAYER, "vgg_face": LOGITS_LAYER, "mini": LOGITS_LAYER,
                 "resnet50": _resnet50.LOGITS_LAYER}
# Architectures whose builder takes `input_size` (the others are 224x224 only).
SIZED_ARCHITECTURES = ("mini", "resnet50")

_BUILDERS = {"vgg_f": vgg_f, "vgg_face": vgg_face, "mini": mini, "resnet50": resnet50}
_UNKNOWN = (UNKNOWN_ARCHITECTURE, UNKNOWN_DAG_ARCHITECTURE)


def build(arch: str, num_classes: int = 8, **kwargs) -> keras.Model:
    """Builds `arch` ("vgg_f" | "vgg_face" | "mini" | "resnet50") with `num_classes` logits."""
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return _BUILDERS[arch](num_classes, **kwargs)


def architecture_of(model: keras.Model) -> str:
    """The architecture a model records in its name ("vgg_f", "vgg_face", "mini",
    "resnet50", or "simplenn"/"dagnn" for unrecognised converted networks)."""
    if model.name in ARCHITECTURES or model.name in _UNKNOWN:
        return model.name
    raise ValueError(
        f"model {model.name!r} is not a fer_distill network: its name should be one of "
        f"{ARCHITECTURES + _UNKNOWN}")


def _named(model: keras.Model, table: dict[str, str], default: str):
    names = {layer.name for layer in model.layers}
    name = table.get(model.name, default)
    return model.get_layer(name) if name in names else None


def logits_layer(model: keras.Model) -> keras.layers.Layer:
    """The classifier A: the architecture's (`fc8`, ResNet-50's `fc1000`) when present,
    else the output layer."""
    return _named(model, LOGITS_LAYERS, LOGITS_LAYER) or model.layers[-1]


def embedding_layer(model: keras.Model) -> keras.layers.Layer:
    """The embedding E: the architecture's (`relu7`, ResNet-50's `pool5`) when present, else
    the layer feeding the classifier (dropout skipped), i.e. the penultimate activation of
    any converted network."""
    named = _named(model, EMBEDDING_LAYERS, EMBEDDING_LAYER)
    if named is not None:
        return named
    producer = logits_layer(model).input._keras_history.operation
    while isinstance(producer, keras.layers.Dropout):
        producer = producer.input._keras_history.operation
    return producer


def embedding_model(model: keras.Model) -> keras.Model:
    """Same input → {"embedding": E (float32), "logits": A}: relu7 and fc8, or ResNet-50's
    pool5 and fc1000.

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


def rebuild(model: keras.Model) -> keras.Model:
    """An uncompiled copy of `model`'s architecture, built under the current global dtype
    policy (the classifier in float32, as the builders make it); weights are NOT copied.

    A SimpleNN chain is rebuilt by `simplenn.build_chain`; any other network (a DagNN graph
    such as ResNet-50) by cloning its layers from their configs without their dtype.
    """
    if architecture_of(model) not in ("resnet50", UNKNOWN_DAG_ARCHITECTURE):
        normalization = next(layer for layer in model.layers
                             if isinstance(layer, layers.MeanSubtraction))
        return simplenn.build_chain(
            simplenn.chain_of(model), input_shape=model.input_shape[1:], name=model.name,
            average_image_shape=normalization.image_shape, zero_init=True)
    head = logits_layer(model).name

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name == head else None
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def with_new_head(model: keras.Model, num_classes: int, seed: int | None = None) -> keras.Model:
    """A copy of `model` whose classifier (`fc8`, `fc1000`) is fresh, `num_classes` wide.

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
    """Loads a `.keras` file (keyword arguments go to `keras.saving.load_model`), converts a
    MatConvNet `.mat` file with `matconvnet.load_matconvnet`, or reads Keras' own ResNet50
    weights (`.h5`/`.weights.h5`) into `resnet50` with `keras_resnet50.load_keras_resnet50`
    (`compile` is accepted and ignored for both: they hold no training state)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".keras":
        _check_keras_archive(path)
        return keras.saving.load_model(path, **kwargs)
    kwargs.pop("compile", None)
    if path.suffix in (".mat", ".h5"):
        if kwargs:
            raise ValueError(f"{path}: options {sorted(kwargs)} apply to .keras files only")
        if path.suffix == ".h5":
            return load_keras_resnet50(path)
        return load_matconvnet(path)
    raise ValueError(f"{path}: expected a .keras file, a MatConvNet .mat file or Keras' "
                     f"ResNet50 weights (.h5, .weights.h5)")


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
    "ARCHITECTURES", "EMBEDDING_LAYERS", "LOGITS_LAYERS", "SIZED_ARCHITECTURES",
    "UNKNOWN_ARCHITECTURE", "UNKNOWN_DAG_ARCHITECTURE", "architecture_of", "build",
    "embedding_layer", "embedding_model", "load_model", "logits_layer", "mini", "rebuild",
    "resnet50", "vgg_f", "vgg_face", "with_new_head",
]
