"""triplet_loss against eq. 3 by hand and as a slow NumPy loop; gradients at zero distance."""
import math

import numpy as np
import pytest
import tensorflow as tf

from fer_distill.distill.triplet import euclidean_distance, triplet_loss

# The docstring's example: Δ(a,p) = 5, Δ(a,n) = 1 → 4.1; Δ(a,p) = 0, Δ(a,n) = 10 → 0;
# Δ(a,p) = Δ(a,n) = 1 → 0.1. Sum 4.2, mean 1.4; masking the third: sum 4.1, mean 4.1/2 = 2.05.
ANCHOR = [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
POSITIVE = [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]
NEGATIVE = [[0.0, 1.0], [6.0, 8.0], [1.0, 2.0]]


def _loop_triplet(a, p, n, margin, mask=None):
    """Eq. 3 one triplet at a time with math.dist: the obvious implementation (float64)."""
    out = []
    for i in range(len(a)):
        keep = True if mask is None else bool(mask[i])
        value = max(0.0, math.dist(a[i], p[i]) - math.dist(a[i], n[i]) + margin)
        out.append(value if keep else 0.0)
    return np.array(out)


def test_hand_example():
    assert float(triplet_loss(ANCHOR, POSITIVE, NEGATIVE, margin=0.1,
                              reduction="sum")) == pytest.approx(4.2, rel=1e-6)
    assert float(triplet_loss(ANCHOR, POSITIVE, NEGATIVE, reduction="mean",
                              margin=0.1)) == pytest.approx(1.4)
    mask = [True, True, False]
    assert float(triplet_loss(ANCHOR, POSITIVE, NEGATIVE, mask=mask, margin=0.1,
                              reduction="sum")) == pytest.approx(4.1)
    assert float(
        triplet_loss(ANCHOR, POSITIVE, NEGATIVE, reduction="mean", mask=mask, margin=0.1)
    ) == pytest.approx(2.05)
    np.testing.assert_allclose(
        triplet_loss(ANCHOR, POSITIVE, NEGATIVE, reduction="none", margin=0.1).numpy(),
        [4.1, 0.0, 0.1],
        rtol=1e-6,
    )


@pytest.mark.parametrize("margin", [0.1, 2.0])
def test_matches_numpy_loop_on_random_embeddings(margin):
    rng = np.random.default_rng(0)
    a, p, n = (rng.normal(size=(32, 7)).astype(np.float32) for _ in range(3))
    mask = rng.random(32) < 0.7
    for m in (None, mask):
        expected = _loop_triplet(a, p, n, margin, m)
        count = 32 if m is None else mask.sum()
        got_sum = triplet_loss(a, p, n, margin=margin, mask=m, reduction="sum")
        got_mean = triplet_loss(a, p, n, margin=margin, reduction="mean", mask=m)
        got_none = triplet_loss(a, p, n, margin=margin, reduction="none", mask=m)
        assert expected.sum() > 0  # the test would be vacuous with every hinge at 0
        np.testing.assert_allclose(float(got_sum), expected.sum(), rtol=1e-5)
        np.testing.assert_allclose(float(got_mean), expected.sum() / count, rtol=1e-5)
        np.testing.assert_allclose(got_none.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gradient_finite_when_anchor_equals_positive_or_negative():
    """Identical embeddings: √ has an infinite derivative at 0, and a NaN here would poison a
    whole training step. The guard gives the subgradient 0 for the coinciding pair."""
    a = tf.Variable([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    p = tf.Variable([[1.0, 2.0, 3.0], [3.0, 3.0, 3.0]])  # row 0: Δ(a, p) = 0
    n = tf.Variable([[4.0, 6.0, 3.0], [0.5, 0.5, 0.5]])  # row 1: Δ(a, n) = 0
    with tf.GradientTape() as tape:
        loss = triplet_loss(a, p, n, margin=0.1, reduction="sum")
    grads = tape.gradient(loss, [a, p, n])
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    # Row 0: hinge = 0 − 5 + 0.1 < 0, so no gradient at all. Row 1: hinge = Δ(a,p) − 0 + 0.1 > 0
    # and only Δ(a, p) moves: d/dp = (p − a)/Δ, d/da = (a − p)/Δ (+ the zero subgradient of Δ(a,n)).
    diff = np.array([3.0, 3.0, 3.0]) - 0.5
    unit = diff / np.linalg.norm(diff)
    np.testing.assert_allclose(grads[1].numpy(), [[0, 0, 0], unit], rtol=1e-6)
    np.testing.assert_allclose(grads[0].numpy(), [[0, 0, 0], -unit], rtol=1e-6)
    np.testing.assert_allclose(grads[2].numpy(), np.zeros((2, 3)))


def test_euclidean_distance_value_and_gradient():
    """Not squared: Δ((0,0), (3,4)) = 5, gradient (a − p)/5 = (−0.6, −0.8); exact 0 at a = p."""
    a = tf.Variable([[0.0, 0.0], [2.0, 2.0]])
    with tf.GradientTape() as tape:
        d = euclidean_distance(a, [[3.0, 4.0], [2.0, 2.0]])
        total = tf.reduce_sum(d)
    np.testing.assert_array_equal(d.numpy(), [5.0, 0.0])
    np.testing.assert_allclose(tape.gradient(total, a).numpy(), [[-0.6, -0.8], [0.0, 0.0]])


def test_mask_cuts_value_and_gradient_of_masked_triplets():
    a = tf.Variable([[0.0, 0.0], [1.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = triplet_loss(a, [[3.0, 4.0], [9.0, 9.0]], [[0.0, 1.0], [1.0, 1.5]],
                            mask=[True, False], margin=0.1, reduction="sum")
    g = tape.gradient(loss, a).numpy()
    assert float(loss) == pytest.approx(4.1)
    np.testing.assert_array_equal(g[1], [0.0, 0.0])
    assert np.all(g[0] != 0.0)
    none_kept = triplet_loss(ANCHOR, POSITIVE, NEGATIVE, reduction="mean", mask=[0, 0, 0],
                             margin=0.1)
    assert float(none_kept) == 0.0


def test_float16_inputs_give_float32_and_xla_matches_eager():
    rng = np.random.default_rng(1)
    a, p, n = (rng.normal(size=(8, 16)).astype(np.float16) for _ in range(3))
    got = triplet_loss(tf.constant(a), tf.constant(p), tf.constant(n), margin=0.1, reduction="sum")
    assert got.dtype == tf.float32
    expected = _loop_triplet(a.astype(np.float64), p.astype(np.float64), n.astype(np.float64), 0.1)
    np.testing.assert_allclose(float(got), expected.sum(), rtol=1e-5)
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 1], bool)
    compiled = tf.function(triplet_loss, jit_compile=True)
    for reduction in ("sum", "mean"):
        np.testing.assert_allclose(
            float(compiled(a, p, n, margin=0.1, reduction=reduction, mask=mask)),
            float(triplet_loss(a, p, n, reduction=reduction, mask=mask, margin=0.1)),
            rtol=1e-6,
        )


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="reduction"):
        triplet_loss(ANCHOR, POSITIVE, NEGATIVE, reduction="max", margin=0.1)
    with pytest.raises(ValueError, match="negative"):
        triplet_loss(ANCHOR, POSITIVE, [[0.0, 1.0, 2.0]], margin=0.1, reduction="sum")
    with pytest.raises(ValueError, match="mask"):
        triplet_loss(ANCHOR, POSITIVE, NEGATIVE, mask=[[True, True, True]], margin=0.1,
                     reduction="sum")
