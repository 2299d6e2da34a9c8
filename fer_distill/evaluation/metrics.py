"""Accuracy, per-class accuracy and the confusion matrix, from integer labels and predictions.

Table I reports plain accuracy; per-class accuracy and the confusion matrix are what a user
needs to see WHERE an occluded-face model fails (contempt and disgust are rare in FER+, so a
good overall accuracy can hide a class the model never predicts). All functions take integer
class indices in the package's class order (`fer_distill.data.classes.CLASS_NAMES`).

The confusion matrix's rows are the true classes and its columns the predicted ones
(scikit-learn's convention), so row k divided by its sum gives class k's recall, whose
diagonal is the per-class accuracy.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_distill.atomic import atomic_path, write_text
from fer_distill.data.classes import CLASS_NAMES


def accuracy(labels, predictions) -> float:
    """Fraction of predictions equal to the labels (in [0, 1]; Table I shows it ×100)."""
    labels, predictions = _check(labels, predictions)
    if labels.size == 0:
        raise ValueError("accuracy: no examples (empty labels)")
    return float(np.mean(labels == predictions))


def confusion_matrix(labels, predictions, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: [true class, predicted class]."""
    labels, predictions = _check(labels, predictions, num_classes)
    # One bincount over the pair code: exact integer counts, no per-class loop.
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(labels, predictions, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(num_classes,) float64: for each true class, the fraction predicted correctly.

    NaN for a class with no example in `labels` (its accuracy is undefined, not 0).
    """
    cm = confusion_matrix(labels, predictions, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def summary(labels, predictions, class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """Everything above in one JSON-ready dict (per-class values keyed by class name)."""
    k = len(class_names)
    cm = confusion_matrix(labels, predictions, k)
    pca = per_class_accuracy(labels, predictions, k)
    return {
        "count": int(cm.sum()),
        "accuracy": accuracy(labels, predictions),
        "per_class_accuracy": {
            name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, pca)
        },
        "per_class_count": {name: int(n) for name, n in zip(class_names, cm.sum(axis=1))},
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }


def confusion_matrix_csv(cm, class_names: Sequence[str] = CLASS_NAMES) -> str:
    """CSV text: header `true\\predicted,<names...>`, then one row per true class."""
    cm = _check_cm(cm, class_names)
    lines = ["true\\predicted," + ",".join(class_names)]
    for name, row in zip(class_names, cm):
        lines.append(name + "," + ",".join(str(int(v)) for v in row))
    return "\n".join(lines) + "\n"


def write_confusion_csv(
    path: str | os.PathLike, cm, class_names: Sequence[str] = CLASS_NAMES
) -> Path:
    """Writes `confusion_matrix_csv` atomically."""
    return write_text(path, confusion_matrix_csv(cm, class_names))


def plot_confusion_matrix(
    path: str | os.PathLike,
    cm,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """Writes a PNG of the confusion matrix atomically.

    Colours show row-normalised rates (each true class's distribution over predictions, so
    rare classes are as visible as common ones) when `normalize`; every cell is annotated
    with its count. Uses a bare Agg canvas, never pyplot: no global figure state, no display
    needed, safe in threads and on servers.
    """
    # why here: matplotlib takes seconds to import and only this figure needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why here: see above
    from matplotlib.figure import Figure  # why here: see above

    cm = _check_cm(cm, class_names)
    k = len(class_names)
    support = cm.sum(axis=1, keepdims=True)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            shown = np.where(support > 0, cm / np.maximum(support, 1), 0.0)
        vmax = 1.0
    else:
        shown = cm.astype(float)
        vmax = max(float(shown.max()), 1.0)

    fig = Figure(figsize=(1.0 + 0.8 * k, 1.0 + 0.75 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of the true class" if normalize else "count")
    ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(k):
        for j in range(k):
            dark = shown[i, j] > 0.6 * vmax
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def _check(labels, predictions, num_classes: int | None = None):
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.ndim != 1:
            raise ValueError(f"metrics: {name} must be a 1-D array of class indices, got {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"metrics: {name} must be integer class indices, got {a.dtype}")
        if num_classes is not None and a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = a[(a < 0) | (a >= num_classes)][0]
            raise ValueError(
                f"metrics: {name} holds class {bad}, outside 0..{num_classes - 1}"
            )
    if labels.shape != predictions.shape:
        raise ValueError(
            f"metrics: {labels.shape[0]} labels but {predictions.shape[0]} predictions; they "
            "must be the same images in the same order"
        )
    return labels.astype(np.int64), predictions.astype(np.int64)


def _check_cm(cm, class_names):
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(
            f"confusion matrix has shape {cm.shape}, expected ({k}, {k}) for {k} class names"
        )
    return cm
