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
from fer_distill.models.outputs import split_outputs

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
    """Runs `model` (0-255 RGB of its input size -> logits) over one split in one view
    (`fer_distill.models.outputs.split_outputs`).

    Returns {"index", "label", "pred", "probs"} in row order (all rows, or `indices` as
    given).
    """
    out = split_outputs(model, prepared, split, view, batch_size=batch_size, indices=indices,
                        verbose=verbose)
    rows, logits = out["index"], out["logits"]
    return {"index": rows, "label": np.asarray(prepared.labels(split))[rows].astype(np.int32),
            "pred": np.argmax(logits, axis=1).astype(np.int32), "probs": softmax(logits)}


def score_predictions(scores, prepared, split: str) -> dict[str, np.ndarray]:
    """The predictions of per-class `scores` (N, K) on every image of `split` (row order), as
    the fused SVM gives them: {"index", "label", "pred", "probs", "scores"}."""
    scores = np.asarray(scores, dtype=np.float32)
    return {"index": np.arange(prepared.count(split), dtype=np.int64),
            "label": np.asarray(prepared.labels(split), dtype=np.int32),
            "pred": np.argmax(scores, axis=1).astype(np.int32),
            "probs": softmax(scores), "scores": scores}


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
