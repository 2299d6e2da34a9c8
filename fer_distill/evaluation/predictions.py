"""Per-image predictions of a classifier on one split in one view, and their npz files.

Training, evaluation and the report all need "what did this model say about each test image",
and the McNemar test needs it paired image by image. Computing it in one place, and saving it
as `RUN/predictions/<split>_<view>.npz` (docs/DESIGN.md) with the image's row in the split,
means the significance tests and tables never re-run a network and never pair the wrong
images.

An npz holds `index` int64 (the row in the split), `label` int32, `pred` int32 (argmax) and
`probs` float32 (N, K); fusion adds `scores` (the SVM's decision values, whose softmax is its
`probs`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from fer_distill.atomic import atomic_path
from fer_distill.data.occlusion import view_name
from fer_distill.data.pipeline import make_dataset, view_input

KEYS = ("index", "label", "pred", "probs")
PREDICTIONS_DIR = "predictions"



def predictions_path(run_dir: str | os.PathLike, split: str, view) -> Path:
    """RUN/predictions/<split>_<view>.npz."""
    return Path(run_dir) / PREDICTIONS_DIR / f"{split}_{view_name(view)}.npz"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32 (stable for any logit scale)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def predict_split(model, prepared, split: str, view, batch_size: int = 64, *,
                  indices=None, verbose: int = 0) -> dict[str, np.ndarray]:
    """Runs `model` (0-255 RGB of its input size -> logits) over one split in one view.

    Returns {"index", "label", "pred", "probs"} in row order (all rows, or `indices` as
    given). The images go through the training pipeline's own `make_dataset`, so a test image
    is resized and occluded exactly as a training image was.
    """
    size = _input_size(model)
    key, occlusion = view_input(view)
    dataset = make_dataset(prepared, split, image_size=size, batch_size=int(batch_size),
                           training=False, views=(key,), occlusion=occlusion, indices=indices)
    logits = model.predict(dataset.map(lambda batch: batch[key]), verbose=verbose)
    logits = np.asarray(logits, dtype=np.float32)
    rows = (np.arange(prepared.count(split), dtype=np.int64) if indices is None
            else np.asarray(indices, dtype=np.int64))
    if logits.ndim != 2 or logits.shape[0] != len(rows):
        raise ValueError(f"model {model.name!r} gave logits of shape {logits.shape} for "
                         f"{len(rows)} images of split {split!r}; expected ({len(rows)}, K)")
    probs = softmax(logits)
    return {"index": rows, "label": np.asarray(prepared.labels(split))[rows].astype(np.int32),
            "pred": np.argmax(logits, axis=1).astype(np.int32), "probs": probs}


def save_predictions(path: str | os.PathLike, predictions: Mapping[str, np.ndarray]) -> Path:
    """Writes the arrays to an npz atomically (no pickle); checks the four keys agree."""
    _check(predictions, str(path))
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # why a handle: np.savez would append ".npz" to a name
            np.savez(f, **{k: np.asarray(v) for k, v in predictions.items()})
    return path


def load_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads an npz written by `save_predictions`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} not found")
    with np.load(path, allow_pickle=False) as z:
        predictions = {k: z[k] for k in z.files}
    _check(predictions, str(path))
    return predictions


def _check(predictions: Mapping[str, np.ndarray], where: str) -> None:
    missing = [k for k in KEYS if k not in predictions]
    if missing:
        raise ValueError(f"{where}: predictions lack {missing}; expected keys {KEYS}")
    n = len(predictions["index"])
    for key in KEYS:
        if len(predictions[key]) != n:
            raise ValueError(f"{where}: {key!r} has {len(predictions[key])} rows, index has {n}")
    probs = np.asarray(predictions["probs"])
    if probs.ndim != 2:
        raise ValueError(f"{where}: probs must be (N, K), got shape {probs.shape}")


def _input_size(model) -> int:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
        raise ValueError(f"model {model.name!r} takes {shape}; expected (None, S, S, 3) images")
    return int(shape[1])
