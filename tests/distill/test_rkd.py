"""RKD (Park et al. 2019): the worked example of `rkd_loss`, the invariances that make a
copied structure cost nothing, and the Gram-matrix computation against a NumPy loop."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from fer_distill.distill.rkd import huber, rkd_loss, rkd_terms

TEACHER = np.array([[0, 0], [1, 0], [2, 0]], np.float32)  # on a line
STUDENT = np.array([[0, 0], [3, 0], [3, 4]], np.float32)  # a 3-4-5 triangle


def test_worked_example_of_the_docstring():
    dist, angle = rkd_terms(STUDENT, TEACHER)
    assert float(dist) == pytest.approx(1 / 48, rel=1e-5)
    assert float(angle) == pytest.approx(0.2, rel=1e-5)
    assert float(rkd_loss(STUDENT, TEACHER)) == pytest.approx(25 / 48 + 50 * 0.2, rel=1e-5)
    assert float(rkd_loss(STUDENT, TEACHER, distance_weight=1, angle_weight=0)) \
        == pytest.approx(1 / 48, rel=1e-5)


def test_huber_branches():
    x = tf.constant([-3.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(huber(x).numpy(), [2.5, 0.5, 0.125, 1.5])


def test_student_equal_to_teacher_costs_nothing_and_so_do_scale_shift_and_rotation():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(6, 4)).astype(np.float32)
    assert float(rkd_loss(teacher, teacher)) == 0.0
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    moved = (3.0 * teacher @ rotation + 7.0).astype(np.float32)
    assert float(rkd_loss(moved, teacher)) == pytest.approx(0.0, abs=1e-4)
    # a structure that differs does cost something
    assert float(rkd_loss(rng.normal(size=(6, 4)).astype(np.float32), teacher)) > 0.1


def _slow(student, teacher):
    """The definition by loops (float64): mean Huber over distinct pairs and triples."""
    def geometry(e):
        b = len(e)
        d = {(i, j): np.linalg.norm(e[i] - e[j]) for i in range(b) for j in range(b) if i != j}
        mu = np.mean(list(d.values()))
        cos = {}
        for i, j, k in itertools.permutations(range(b), 3):
            u, v = e[i] - e[j], e[k] - e[j]
            cos[i, j, k] = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
        return {p: x / mu for p, x in d.items()}, cos

    def h(x):
        return 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5

    ds, cs = geometry(student.astype(np.float64))
    dt, ct = geometry(teacher.astype(np.float64))
    return (np.mean([h(ds[p] - dt[p]) for p in ds]), np.mean([h(cs[p] - ct[p]) for p in cs]))


def test_matches_the_definition_on_random_embeddings_of_different_widths():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(5, 3)).astype(np.float32)
    teacher = (rng.normal(size=(5, 7)) * 4).astype(np.float32)
    dist, angle = rkd_terms(student, teacher)
    want = _slow(student, teacher)
    assert float(dist) == pytest.approx(want[0], rel=1e-4)
    assert float(angle) == pytest.approx(want[1], rel=1e-4)


def test_gradient_is_finite_with_duplicate_points_and_reaches_the_student_only():
    student = tf.Variable([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1.0]])
    teacher = tf.Variable(TEACHER.tolist() + [[5.0, 5.0]])
    with tf.GradientTape() as tape:
        loss = rkd_loss(student, teacher)
    g_student, g_teacher = tape.gradient(loss, [student, teacher])
    assert np.isfinite(g_student.numpy()).all() and np.abs(g_student.numpy()).sum() > 0
    assert g_teacher is None


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="row i must be the same image"):
        rkd_terms(np.zeros((3, 2), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="distance_weight"):
        rkd_loss(STUDENT, TEACHER, distance_weight=-1)
