"""The triplet-loss distillation objective of the paper, eq. 3.

    L_triplet(θ_S) = Σ_i [Δ(E_S(a'_i), E_T(p_i)) − Δ(E_S(a'_i), E_S(n'_i)) + α]_+

with Δ the Euclidean distance, α = 0.1, E the relu7 embedding, the anchor a' and the negative
n' occluded images seen by the student, the positive p a full image seen by the teacher
(paper section III-B). `triplet_loss(anchor, positive, negative, margin=,
reduction="sum" | "mean" | "none", mask=None)`; no `stop_gradient` here (the trainer's call).
Why: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import tensorflow as tf

REDUCTIONS = ("sum", "mean", "none")


def euclidean_distance(x, y) -> tf.Tensor:
    """Row-wise Euclidean distance ‖x_i − y_i‖ in float32, with a gradient that exists at 0.

    d/dx √s = 1/(2√s) is infinite at s = 0, and 0·∞ = NaN would then poison the whole step the
    first time an anchor coincides with its positive (identical embeddings happen: a dead relu7,
    or a student initialised from the teacher). The guard, the one tensorflow/similarity's
    distances use in spirit: take the square root of 1 where s = 0 and select 0 there, so the
    forward value is exact and the gradient at 0 is 0 (a valid subgradient of ‖·‖ at 0). Both
    branches of the `where` are finite, so no NaN leaks back through it.
    """
    x = tf.cast(x, tf.float32)
    y = tf.cast(y, tf.float32)
    squared = tf.reduce_sum(tf.square(x - y), axis=-1)
    is_zero = squared <= 0.0
    safe = tf.where(is_zero, tf.ones_like(squared), squared)
    return tf.where(is_zero, tf.zeros_like(squared), tf.sqrt(safe))


def triplet_loss(
    anchor,
    positive,
    negative,
    *,
    margin: float,
    reduction: str,
    mask=None,
) -> tf.Tensor:
    """Eq. 3: Σ_i [Δ(a_i, p_i) − Δ(a_i, n_i) + α]_+ over a batch of triplets, in float32.

    Args:
      anchor: E_S(a'), shape (B, D).
      positive: E_T(p), shape (B, D).
      negative: E_S(n'), shape (B, D).
      margin: α (the paper's 0.1 is TrainConfig's default; required here).
      reduction: "sum" (eq. 3 as written; the default), "mean" (the sum divided by the number
        of triplets that count: B, or the number of True entries of `mask`, at least 1), or
        "none" (the per-triplet hinge values, shape (B,), zero where masked).
      mask: optional (B,) booleans (or 0/1 numbers); a False entry contributes nothing, neither
        value nor gradient. For anchors for which mining found no positive or no negative
        (`mine_triplets` returned -1).

    Worked example (checked in tests), α = 0.1, D = 2:
      triplet 1: a = (0, 0), p = (3, 4), n = (0, 1): Δ(a,p) = 5, Δ(a,n) = 1 → [5 − 1 + 0.1]_+ = 4.1
      triplet 2: a = (0, 0), p = (0, 0), n = (6, 8): Δ(a,p) = 0, Δ(a,n) = 10 → [−9.9]_+ = 0
      triplet 3: a = (1, 1), p = (1, 2), n = (1, 2): 1 − 1 + 0.1 = 0.1
      sum = 4.2, mean = 1.4; with mask (T, T, F): sum = 4.1, mean = 2.05.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"triplet_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}"
        )
    anchor = tf.cast(anchor, tf.float32)
    positive = tf.cast(positive, tf.float32)
    negative = tf.cast(negative, tf.float32)
    for name, t in (("positive", positive), ("negative", negative)):
        if not anchor.shape.is_compatible_with(t.shape):
            raise ValueError(
                f"triplet_loss: anchor {anchor.shape} and {name} {t.shape} must have the same "
                "shape (B, D)"
            )
    if anchor.shape.rank != 2:
        raise ValueError(f"triplet_loss: embeddings must be (B, D), got {anchor.shape}")

    hinge = tf.nn.relu(  # [·]_+ of eq. 3
        euclidean_distance(anchor, positive)
        - euclidean_distance(anchor, negative)
        + tf.constant(float(margin), tf.float32)
    )
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank != 1:
            raise ValueError(f"triplet_loss: mask must be (B,), got {mask.shape}")
        keep = tf.cast(mask, tf.bool)
        # why where, not multiply: a masked triplet holds a stand-in row (the trainer gathers
        # index max(-1, 0) = 0 for "no candidate"); `where` makes its value exactly 0 and sends
        # it a zero gradient, whatever finite numbers the stand-in holds.
        hinge = tf.where(keep, hinge, tf.zeros_like(hinge))
        count = tf.reduce_sum(tf.cast(keep, tf.float32))
    else:
        count = tf.cast(tf.shape(hinge)[0], tf.float32)
    if reduction == "none":
        return hinge
    total = tf.reduce_sum(hinge)  # Σ_i of eq. 3
    if reduction == "sum":
        return total
    return total / tf.maximum(count, 1.0)
