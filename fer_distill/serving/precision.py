"""bfloat16 copies of the networks, for CPUs with bfloat16 matrix units (AMX-BF16, AVX512-BF16).

Why weights in bfloat16, not a mixed policy. Under Keras' `mixed_bfloat16` policy (and under
TensorFlow's `auto_mixed_precision_onednn_bfloat16` rewrite) the weights stay float32 and are
cast to bfloat16 on every call: at batch 1 that cast reads and writes all 56.8 M VGG-f weights
per image and costs more than the bfloat16 arithmetic saves (measured while writing this
module, VGG-f at batch 1 on 2 cores: about twice the float32 latency). Here the weights are
stored in bfloat16 once, so a call reads half the bytes and oneDNN runs the convolutions and
matrix products on the bfloat16 units. The logits layer (fc8) stays float32, as the builders make it, and so do the outputs
handed to softmax, distances and SVMs.

bfloat16 keeps 8 significant bits: pixel values and the mean image are rounded to about 0.4 %,
so the numbers change. `BENCHMARKS.md` reports the top-1 agreement and the largest probability
difference against the float32 model; `tests/serving/test_precision.py` bounds the difference.
Use it through a `Servable`, which export and predict take as they are:

    servable = bfloat16_servable(load_servable("runs/ferplus_vgg_f_student"))
    export_savedmodel(servable, "exports/fer_bf16/1")
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from fer_distill.models import simplenn
from fer_distill.models.layers import MeanSubtraction

POLICY = "bfloat16"


def bfloat16_network(model: keras.Model) -> keras.Model:
    """A copy of a SimpleNN network (vgg_f, vgg_face, mini, a converted chain) with bfloat16
    weights and arithmetic; same layers, names, input and output (fc8 float32 logits)."""
    normalization = next((layer for layer in model.layers
                          if isinstance(layer, MeanSubtraction)), None)
    if normalization is None:
        raise ValueError(f"model {model.name!r} has no MeanSubtraction layer: not a network "
                         "built by fer_distill.models")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICY)
    try:
        copy = simplenn.build_chain(
            simplenn.chain_of(model), input_shape=model.input_shape[1:], name=model.name,
            average_image_shape=normalization.image_shape, zero_init=True)
    finally:
        keras.config.set_dtype_policy(previous)
    for layer in copy.layers:
        if layer.weights:
            source = model.get_layer(layer.name).get_weights()
            layer.set_weights([np.asarray(w, dtype=np.float32) for w in source])
    return copy


def bfloat16_servable(servable):
    """The same `Servable` with every network replaced by its `bfloat16_network` copy."""
    return dataclasses.replace(
        servable, models=tuple(bfloat16_network(m) for m in servable.models),
        source={**servable.source, "precision": POLICY})
