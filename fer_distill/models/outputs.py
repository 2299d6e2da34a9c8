"""One way to run a network over a split of a prepared data set in one view.

    outputs = split_outputs(model, prepared, "test", "lower_half_visible", batch_size=64)
    outputs["logits"]                    # (N, K) float32, row order (or `indices` as given)
    split_outputs(..., embeddings=True)["embedding"]   # (N, D) float32 as well

The images go through the training pipeline's own `make_dataset` (resize, occlusion), so a
test image is seen exactly as a training image was. Prediction, evaluation, fusion, the
teacher cache and the triplet pools all read their networks' outputs through this function.
"""
from __future__ import annotations

import keras
import numpy as np

from fer_distill.data.pipeline import make_dataset, view_input
from fer_distill.models import embedding_model


def input_size(model: keras.Model) -> int:
    """The square input size S of a model that takes (None, S, S, 3) images."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
        raise ValueError(f"model {model.name!r} takes {shape}; expected (None, S, S, 3) images")
    return int(shape[1])


def split_outputs(model: keras.Model, prepared, split: str, view, *, batch_size: int,
                  image_size: int | None = None, indices=None, embeddings: bool = False,
                  verbose: int = 0) -> dict[str, np.ndarray]:
    """{"index", "logits"[, "embedding"]} of `model` on `split` (all rows, or `indices`) in
    `view`, float32. `model` is a classifier (images -> logits; `embeddings=True` reads its
    embedding too) or an `embedding_model` (images -> {"embedding", "logits"})."""
    if embeddings and not isinstance(model.output, dict):
        model = embedding_model(model)
    key, occlusion = view_input(view)
    dataset = make_dataset(prepared, split, image_size=image_size or input_size(model),
                           batch_size=int(batch_size), training=False, views=(key,),
                           occlusion=occlusion, indices=indices)
    out = model.predict(dataset.map(lambda batch: batch[key]), verbose=verbose)
    out = {k: np.asarray(v, np.float32) for k, v in out.items()} if isinstance(out, dict) \
        else {"logits": np.asarray(out, np.float32)}
    rows = (np.arange(prepared.count(split), dtype=np.int64) if indices is None
            else np.asarray(indices, dtype=np.int64))
    logits = out["logits"]
    if logits.ndim != 2 or logits.shape[0] != len(rows):
        raise ValueError(f"model {model.name!r} gave logits of shape {logits.shape} for "
                         f"{len(rows)} images of split {split!r}; expected ({len(rows)}, K)")
    return {"index": rows, **out}
