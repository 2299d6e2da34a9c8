"""kd_loss against eqs. 1-2 written out by hand and as a slow NumPy loop."""
import math

import numpy as np
import pytest
import tensorflow as tf

from fer_distill.distill.kd import kd_loss


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _loop_kd(labels, student, teacher, lam, tau, squared):
    """Eq. 1 with eq. 2, one example at a time, in float64: the obvious implementation."""
    losses = []
    for y, s, t in zip(labels, student, teacher):
        hard = -math.log(_softmax(s)[y])
        p_t = _softmax(np.asarray(t, np.float64) / tau)
        p_s = _softmax(np.asarray(s, np.float64) / tau)
        soft = -sum(p_t[k] * math.log(p_s[k]) for k in range(len(s)))
        losses.append((1 - lam) * hard + lam * (tau * tau if squared else 1.0) * soft)
    return np.array(losses)


def test_hand_example_soft_term_equal_to_hard_term():
    """K = 2, y = 0, A_S = (0, 0), A_T = (τ ln 3, 0): softmax(A_T/τ) = (3/4, 1/4) and the
    student's distributions are (1/2, 1/2) at any temperature. Hard term −ln ½ = ln 2; soft term
    −(¾ ln ½ + ¼ ln ½) = ln 2; so eq. 1 is ln 2 for every λ, and with the τ² factor
    (1 − λ) ln 2 + λ τ² ln 2 = 0.3·ln 2 + 0.7·400·ln 2 = 280.3·ln 2 for λ = 0.7, τ = 20."""
    tau = 20.0
    student = [[0.0, 0.0]]
    teacher = [[tau * math.log(3.0), 0.0]]
    for lam in (0.0, 0.3, 0.7, 1.0):
        got = kd_loss([0], student, teacher, lam=lam, temperature=tau, temperature_squared=False)
        assert got.dtype == tf.float32
        assert float(got) == pytest.approx(math.log(2.0), rel=1e-6)
    got = kd_loss([0], student, teacher, lam=0.7, temperature=tau, temperature_squared=True)
    assert float(got) == pytest.approx(280.3 * math.log(2.0), rel=1e-6)


def test_hand_example_teacher_matters():
    """τ = 1, λ = ½, y = 0, A_S = (ln 3, 0) → softmax (¾, ¼); A_T = (0, 0) → (½, ½).
    Hard: −ln ¾ = ln(4/3) ≈ 0.287682. Soft: −(½ ln ¾ + ½ ln ¼) = ln 4 − ½ ln 3 ≈ 0.836988.
    Loss: ½·0.287682 + ½·0.836988 ≈ 0.562335."""
    got = kd_loss([0], [[math.log(3.0), 0.0]], [[0.0, 0.0]], lam=0.5, temperature=1.0,
                  temperature_squared=False)
    expected = 0.5 * math.log(4 / 3) + 0.5 * (math.log(4) - 0.5 * math.log(3))
    assert expected == pytest.approx(0.562335, abs=1e-6)
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "lam,tau,squared", [(0.7, 20.0, False), (0.7, 20.0, True), (0.2, 2.5, False), (1.0, 1.0, False)]
)
def test_matches_numpy_loop_on_random_logits(lam, tau, squared):
    rng = np.random.default_rng(0)
    b, k = 16, 8
    labels = rng.integers(0, k, b)
    student = rng.normal(scale=5.0, size=(b, k)).astype(np.float32)
    teacher = rng.normal(scale=30.0, size=(b, k)).astype(np.float32)
    expected = _loop_kd(labels, student, teacher, lam, tau, squared)
    kwargs = dict(lam=lam, temperature=tau, temperature_squared=squared)
    per_example = kd_loss(labels, student, teacher, reduction="none", **kwargs)
    np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(kd_loss(labels, student, teacher, **kwargs)),
                               expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(kd_loss(labels, student, teacher, reduction="sum", **kwargs)),
                               expected.sum(), rtol=1e-5)


def test_gradient_is_the_textbook_one_and_teacher_gets_none():
    """d(eq. 1)/dA_S = (1 − λ)(softmax(A_S) − onehot(y)) + λ(N_S^τ − N_T^τ)/τ, per example,
    divided by B for the batch mean; the teacher is a constant."""
    rng = np.random.default_rng(1)
    b, k, lam, tau = 4, 5, 0.7, 3.0
    labels = rng.integers(0, k, b)
    s = tf.constant(rng.normal(size=(b, k)), tf.float32)
    t = tf.constant(rng.normal(size=(b, k)) * 4, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([s, t])
        loss = kd_loss(labels, s, t, lam=lam, temperature=tau, temperature_squared=False)
    grad_s, grad_t = tape.gradient(loss, [s, t])
    assert grad_t is None
    onehot = np.eye(k)[labels]
    expected = ((1 - lam) * (tf.nn.softmax(s).numpy() - onehot)
                + lam * (tf.nn.softmax(s / tau).numpy() - tf.nn.softmax(t / tau).numpy()) / tau) / b
    np.testing.assert_allclose(grad_s.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_float16_logits_give_a_float32_loss_from_float32_arithmetic():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 8, 8)
    s16 = rng.normal(scale=8, size=(8, 8)).astype(np.float16)
    t16 = rng.normal(scale=60, size=(8, 8)).astype(np.float16)
    got = kd_loss(labels, tf.constant(s16), tf.constant(t16), lam=0.7, temperature=20.0,
                  temperature_squared=False)
    assert got.dtype == tf.float32
    reference = kd_loss(labels, s16.astype(np.float32), t16.astype(np.float32), lam=0.7,
                        temperature=20.0, temperature_squared=False)
    assert float(got) == float(reference)
    expected = _loop_kd(labels, s16.astype(np.float64), t16.astype(np.float64), 0.7, 20.0, False)
    assert float(got) == pytest.approx(expected.mean(), rel=1e-5)


def test_stable_for_extreme_logits():
    """log_softmax, not log(softmax): a 1e4 logit gap would give log(0) = -inf otherwise."""
    got = kd_loss([1, 0], [[1e4, -1e4], [0.0, 3e4]], [[-5e4, 5e4], [1e5, 0.0]], temperature=1.0,
                  lam=0.7, temperature_squared=False)
    assert np.isfinite(float(got))
    # Student certain and wrong on both by 2e4 and 3e4; teacher certain of the other class.
    assert float(got) == pytest.approx((2e4 + 3e4) / 2, rel=1e-6)


def test_xla_matches_eager_and_column_labels_accepted():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, (6, 1)).astype(np.int64)
    s = rng.normal(size=(6, 8)).astype(np.float32)
    t = rng.normal(size=(6, 8)).astype(np.float32) * 10
    paper = dict(lam=0.7, temperature=20.0, temperature_squared=False)
    eager = kd_loss(labels, s, t, **paper)
    compiled = tf.function(kd_loss, jit_compile=True)(labels, s, t, **paper)
    np.testing.assert_allclose(float(compiled), float(eager), rtol=1e-6)
    assert float(eager) == pytest.approx(float(kd_loss(labels[:, 0], s, t, **paper)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(lam=1.5), "lam"),
        (dict(temperature=0.0), "temperature"),
        (dict(reduction="max"), "reduction"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kd_loss([0], [[0.0, 1.0]], [[0.0, 1.0]],
                **{"lam": 0.7, "temperature": 20.0, "temperature_squared": False, **kwargs})


def test_bad_shapes_and_labels_are_named():
    with pytest.raises(ValueError, match="integer"):
        kd_loss([0.0], [[0.0, 1.0]], [[0.0, 1.0]], lam=0.7, temperature=20.0,
                temperature_squared=False)
    with pytest.raises(ValueError, match="same shape"):
        kd_loss([0], [[0.0, 1.0]], [[0.0, 1.0, 2.0]], lam=0.7, temperature=20.0,
                temperature_squared=False)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        kd_loss([0], [0.0, 1.0], [0.0, 1.0], lam=0.7, temperature=20.0, temperature_squared=False)
