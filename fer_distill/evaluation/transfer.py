"""Transfer diagnostics: how close a student's outputs are to its teacher's, image by image.

    transfer(teacher_probs, student_probs)  -> {"kl": ..., "agreement": ..., "n": ...}
    transfer_between(teacher_run, student_run, split, student_view)  (reads saved predictions)

`kl` is the mean over images of KL(teacher ‖ student) = Σ_k p_T,k · (ln p_T,k − ln p_S,k), in
nats, with the teacher on the FULL face and the student on its own view; `agreement` is the
share of images on which both give the same top-1 class. Distillation is meant to lower the
first and raise the second; a student trained without its teacher gives the yardstick.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from fer_distill.evaluation.predictions import load_predictions, predictions_path

# Probabilities are clipped here before the logarithm: a saved softmax can hold exact zeros.
EPSILON = 1e-7


def transfer(teacher_probs, student_probs) -> dict[str, float]:
    """{kl, agreement, n} of two (N, K) probability arrays over the same images (rows paired)."""
    p = np.asarray(teacher_probs, dtype=np.float64)
    q = np.asarray(student_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape or p.shape[0] == 0:
        raise ValueError(f"transfer: teacher and student probabilities must both be (N, K) "
                         f"with N > 0, got {p.shape} and {q.shape}")
    p = np.clip(p, EPSILON, 1.0)
    q = np.clip(q, EPSILON, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=1)
    agreement = np.argmax(p, axis=1) == np.argmax(q, axis=1)
    return {"kl": float(kl.mean()), "agreement": float(agreement.mean()), "n": int(len(p))}


def transfer_of_predictions(teacher: Mapping[str, np.ndarray],
                            student: Mapping[str, np.ndarray], where: str = "") -> dict:
    """`transfer` of two saved prediction dicts, after checking they cover the same images."""
    if not np.array_equal(np.asarray(teacher["index"]), np.asarray(student["index"])):
        raise ValueError(f"transfer{': ' + where if where else ''}: teacher and student "
                         "predictions cover different images (their `index` arrays differ)")
    return transfer(teacher["probs"], student["probs"])


def transfer_between(teacher_run: str | os.PathLike, student_run: str | os.PathLike,
                     split: str, student_view: str) -> dict[str, float]:
    """`transfer` of a teacher run (its full-view predictions) and a student run (its view),
    both read from `RUN/predictions/<split>_<view>.npz`."""
    teacher_file = predictions_path(teacher_run, split, "full")
    student_file = predictions_path(student_run, split, student_view)
    return transfer_of_predictions(load_predictions(teacher_file), load_predictions(student_file),
                                   where=f"{teacher_file} vs {student_file}")
