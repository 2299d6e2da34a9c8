"""The standard teacher-student (knowledge distillation) loss of the paper, eqs. 1-2.

    L_KD'(θ_S) = (1 − λ)·CE(y, softmax(A_S)) + λ·CE(softmax(A_T/τ), softmax(A_S/τ))

with A_S, A_T the student's and teacher's pre-softmax activations (fc8), λ = 0.7 and τ = 20
(paper section III-A). `kd_loss(labels, student_logits, teacher_logits, lam=,
temperature=)`; float32 whatever the logits' dtype; `temperature_squared=True` adds Hinton's
τ² factor, which eq. 1 does not have.
Why a cross-entropy, not a KL, and why no τ²: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import tensorflow as tf

REDUCTIONS = ("mean", "sum", "none")


def kd_loss(
    labels,
    student_logits,
    teacher_logits,
    *,
    lam: float,
    temperature: float,
    temperature_squared: bool,
    reduction: str = "mean",
) -> tf.Tensor:
    """Eq. 1 with eq. 2: the knowledge-distillation loss, batch mean by default.

    Args:
      labels: integer class indices, shape (B,) (or (B, 1), as Keras sometimes hands them).
      student_logits: A_S, shape (B, K), any float dtype.
      teacher_logits: A_T, shape (B, K), any float dtype. Treated as a constant
        (`tf.stop_gradient`): only the student learns (our reading of the paper; docs/DESIGN.md,
        "Distillation").
      lam: λ, the weight of the soft term, in [0, 1] (no default here: the one default of
        every hyper-parameter is TrainConfig's, fer_distill/train/config.py).
      temperature: τ > 0 (the paper uses τ = 20; τ > 1 softens).
      temperature_squared: multiply the soft term by τ² (Hinton's gradient-scale correction).
        Off by default because eq. 1 has no such factor.
      reduction: "mean" (eq. 1 averaged over the batch; the default), "sum", or "none" (the
        per-example losses, shape (B,): what a custom step under `tf.distribute` needs to
        scale by the global batch size itself with `tf.nn.compute_average_loss`).

    Returns:
      A float32 scalar (or (B,) for reduction="none").

    Worked example (checked in tests): one example, K = 2, y = 0, A_S = (0, 0) and
    A_T = (τ·ln 3, 0), so A_T/τ = (ln 3, 0), softmax(A_T/τ) = (3/4, 1/4), and
    softmax(A_S) = softmax(A_S/τ) = (1/2, 1/2). Hard term: −ln(1/2) = ln 2. Soft term:
    −(3/4·ln ½ + 1/4·ln ½) = ln 2. Loss = (1 − λ)·ln 2 + λ·ln 2 = ln 2 ≈ 0.6931 for every λ, and with
    temperature_squared=True: (1 − λ)·ln 2 + λ·τ²·ln 2.
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"kd_loss: lam (λ) must be in [0, 1], got {lam!r}")
    if not float(temperature) > 0.0:
        raise ValueError(f"kd_loss: temperature (τ) must be > 0, got {temperature!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"kd_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")

    # why float32: mixed precision (docs/DESIGN.md, "Distillation").
    student_logits = tf.cast(student_logits, tf.float32)
    teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(
            f"kd_loss: labels must be integer class indices, got dtype {labels.dtype.name}"
        )
    if labels.shape.rank == 2 and labels.shape[-1] == 1:
        labels = tf.squeeze(labels, axis=-1)
    if labels.shape.rank != 1 or student_logits.shape.rank != 2:
        raise ValueError(
            "kd_loss: expected labels of shape (B,) and logits of shape (B, K), got labels "
            f"{labels.shape} and student logits {student_logits.shape}"
        )
    if not student_logits.shape.is_compatible_with(teacher_logits.shape):
        raise ValueError(
            f"kd_loss: student logits {student_logits.shape} and teacher logits "
            f"{teacher_logits.shape} must have the same shape (same batch, same classes)"
        )

    # Hard term, CE(y, N_S) in eq. 1: the fused op takes log-softmax internally (stable).
    hard = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=student_logits
    )
    # Soft term, CE(N_T^τ, N_S^τ) in eq. 1 with the softening of eq. 2.
    tau = tf.constant(float(temperature), tf.float32)
    teacher_soft = tf.nn.softmax(teacher_logits / tau, axis=-1)  # N_T^τ, eq. 2
    student_log_soft = tf.nn.log_softmax(student_logits / tau, axis=-1)  # log N_S^τ, eq. 2
    soft = -tf.reduce_sum(teacher_soft * student_log_soft, axis=-1)
    if temperature_squared:
        soft = soft * tau * tau
    lam_t = tf.constant(float(lam), tf.float32)
    per_example = (1.0 - lam_t) * hard + lam_t * soft  # eq. 1
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return tf.reduce_sum(per_example)
    return tf.reduce_mean(per_example)
