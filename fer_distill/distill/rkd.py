"""Relational knowledge distillation (RKD; Park et al., CVPR 2019): the student copies the
distances and angles of the teacher's embedding of a batch. `rkd_loss(s, t)`, `rkd_terms(s, t)`.

With t_i the teacher's embedding of image i (its full view) and s_i the student's (its own,
occluded, view of the same image), in one batch of B images:

    ψ_D(t_i, t_j)      = ||t_i − t_j|| / μ_t,   μ_t = mean over pairs i ≠ j of ||t_i − t_j||
    ψ_A(t_i, t_j, t_k) = cos ∠t_i t_j t_k = <e_ij, e_kj>,  e_ij = (t_i − t_j) / ||t_i − t_j||
    L_dist  = mean over ordered pairs i ≠ j         of  l_δ(ψ_D(s_i, s_j) − ψ_D(t_i, t_j))
    L_angle = mean over ordered triples i, j, k distinct of l_δ(ψ_A(s_·) − ψ_A(t_·))
    l_δ(x)  = x²/2 if |x| ≤ 1 else |x| − 1/2         (Huber, δ = 1, the paper's eq. 5)
    L_RKD   = w_d·L_dist + w_a·L_angle,   w_d = 25, w_a = 50

Why these weights, means and the Gram matrix: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import tensorflow as tf

# Park et al. 2019, image classification: λ_RKD-D = 25, λ_RKD-A = 50, the defaults RepDistiller
# and OpenMMLab mmrazor use (the paper's section number was not checked here).
DISTANCE_WEIGHT = 25.0
ANGLE_WEIGHT = 50.0
_EPS = 1e-12


def huber(x, delta: float = 1.0):
    """Element-wise Huber loss l_δ (the paper's eq. 5; PyTorch's smooth L1 for δ = 1)."""
    x = tf.abs(x)
    return tf.where(x <= delta, 0.5 * x * x, delta * (x - 0.5 * delta))


def _geometry(embeddings):
    """(distances (B, B), cosines (B, B, B) with [i, j, k] = cos of the angle at j, offdiag)."""
    e = tf.cast(embeddings, tf.float32)
    if e.shape.rank != 2:
        raise ValueError(f"rkd: embeddings must be (B, D), got shape {e.shape}")
    e = e - tf.reduce_mean(e, axis=0, keepdims=True)  # why: smaller Gram entries, less cancel.
    gram = tf.matmul(e, e, transpose_b=True)
    sq = tf.linalg.diag_part(gram)
    b = tf.shape(e)[0]
    off = 1.0 - tf.eye(b)
    d2 = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, _EPS) * off
    dist = tf.sqrt(tf.maximum(d2, _EPS)) * off  # guard: no sqrt'(0)
    # <t_i − t_j, t_k − t_j> = G_ik − G_ij − G_jk + G_jj, indexed [i, j, k]
    inner = (gram[:, None, :] - gram[:, :, None] - gram[None, :, :]
             + sq[None, :, None])
    norms = dist[:, :, None] * tf.transpose(dist)[None, :, :]  # ||t_i − t_j||·||t_k − t_j||
    cos = tf.where(norms > 0.0, inner / tf.maximum(norms, _EPS), 0.0)
    return dist, cos


def _masks(b):
    eye = tf.eye(b)
    pairs = 1.0 - eye
    triples = pairs[:, :, None] * pairs[None, :, :] * pairs[:, None, :]  # i≠j, j≠k, i≠k
    return pairs, triples


def rkd_terms(student_embeddings, teacher_embeddings) -> tuple[tf.Tensor, tf.Tensor]:
    """(L_dist, L_angle) of the module docstring for one batch, float32 scalars.

    Both arguments are (B, D_S) and (B, D_T) (the dimensions may differ: only distances and
    angles are compared), row i the same image. B must be >= 3 for angles (>= 2 for
    distances); smaller batches give 0 for the terms they cannot form.
    """
    student = tf.cast(student_embeddings, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher_embeddings, tf.float32))
    if student.shape.rank != 2 or teacher.shape.rank != 2:
        raise ValueError(f"rkd: embeddings must be (B, D); got student {student.shape}, "
                         f"teacher {teacher.shape}")
    if (student.shape[0] is not None and teacher.shape[0] is not None
            and student.shape[0] != teacher.shape[0]):
        raise ValueError(f"rkd: student batch {student.shape[0]} != teacher batch "
                         f"{teacher.shape[0]} (row i must be the same image)")
    b = tf.shape(student)[0]
    pairs, triples = _masks(b)
    terms = []
    d_s, a_s = _geometry(student)
    d_t, a_t = _geometry(teacher)
    n_pairs = tf.reduce_sum(pairs)
    psi = []
    for d in (d_s, d_t):
        mu = tf.reduce_sum(d) / tf.maximum(n_pairs, 1.0)
        psi.append(d / tf.maximum(mu, _EPS))
    terms.append(tf.reduce_sum(huber(psi[0] - psi[1]) * pairs) / tf.maximum(n_pairs, 1.0))
    terms.append(tf.reduce_sum(huber(a_s - a_t) * triples)
                 / tf.maximum(tf.reduce_sum(triples), 1.0))
    return terms[0], terms[1]


def rkd_loss(student_embeddings, teacher_embeddings, *,
             distance_weight: float = DISTANCE_WEIGHT,
             angle_weight: float = ANGLE_WEIGHT) -> tf.Tensor:
    """L_RKD = w_d·L_dist + w_a·L_angle (module docstring), a float32 scalar.

    Worked example (checked in tests): teacher points (0,0), (1,0), (2,0) on a line, student
    points (0,0), (3,0), (3,4), a 3-4-5 triangle. Teacher distances 1, 2, 1 (μ = 4/3) → ψ_D =
    3/4, 3/2, 3/4; student 3, 5, 4 (μ = 4) → 3/4, 5/4, 1; differences 0, −1/4, 1/4, so L_dist =
    (0 + 1/32 + 1/32)/3 = 1/48. Angles at the vertices 0, 1, 2: teacher cosines 1, −1, 1;
    student 3/5, 0, 4/5; Huber of the differences 0.08, 0.5, 0.02, so L_angle = 0.6/3 = 0.2.
    L_RKD = 25/48 + 50·0.2 ≈ 10.5208.
    """
    for name, value in (("distance_weight", distance_weight), ("angle_weight", angle_weight)):
        if not float(value) >= 0.0:
            raise ValueError(f"rkd_loss: {name} must be >= 0, got {value!r}")
    dist, angle = rkd_terms(student_embeddings, teacher_embeddings)
    return float(distance_weight) * dist + float(angle_weight) * angle
