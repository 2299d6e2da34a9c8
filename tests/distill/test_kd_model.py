"""KDModel: eq. 1 through Keras' own train step; the teacher frozen; cached == live teacher;
XLA and mixed precision agree with float32 eager, on `mini` at 32x32."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.occlusion import occlude
from fer_distill.distill.kd import kd_loss
from fer_distill.distill.kd_model import KDModel
from fer_distill.models import mini
from fer_distill.train.execution import dtype_policy
from fer_distill.train.networks import under_policy

N, BATCH = 32, 8
LR = 1e-3
SPREAD = 40.0  # std of the rescaled logits (`_spread`)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    full = rng.uniform(0, 255, (N, 32, 32, 3)).astype(np.float32)
    return {"full": full, "occluded": occlude(full, "lower_half_visible"),
            "label": rng.integers(0, 8, N).astype(np.int32), "index": np.arange(N)}


def _spread(model, images):
    """Rescales fc8 so the logits spread over about ±SPREAD (a fresh mini's are near 0), so
    the softened outputs softmax(A/20) differ clearly between images."""
    from fer_distill.models import embedding_model

    fc8 = model.get_layer("fc8")
    kernel, bias = fc8.get_weights()
    logits = embedding_model(model).predict(images, verbose=0)["logits"]
    fc8.set_weights([kernel * (SPREAD / logits.std()), bias])
    return model


@pytest.fixture(scope="module")
def networks(data):
    """(student weights, teacher): a fresh student, a teacher with spread-out logits, so the
    soft term's gradient (softmax(A_S/τ) − softmax(A_T/τ))/τ depends on the pairing."""
    keras.utils.set_random_seed(1)
    student = mini(8, 32)
    keras.utils.set_random_seed(2)
    teacher = _spread(mini(8, 32), data["full"])
    return student.get_weights(), teacher


def _dataset(data, live: bool, order=None):
    order = np.arange(N) if order is None else order
    x = {"image": data["occluded"][order], "index": data["index"][order]}
    if live:
        x["full"] = data["full"][order]
    return tf.data.Dataset.from_tensor_slices((x, data["label"][order])).batch(BATCH)


class StepLosses(keras.callbacks.Callback):
    """The loss of every step (Keras logs a running mean over the epoch; undo it)."""

    def on_train_begin(self, logs=None):
        self.means, self.losses = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))
        k = len(self.means)
        previous = self.means[-2] * (k - 1) if k > 1 else 0.0
        self.losses.append(self.means[-1] * k - previous)


def _train(networks, data, *, live: bool, jit: bool = False, policy: str = "float32",
           epochs: int = 2):
    student_weights, teacher = networks
    with dtype_policy(policy):
        student = mini(8, 32)
        student.set_weights(student_weights)
        student = under_policy(student, policy)
        teacher = under_policy(teacher, policy)
        table = None if live else teacher.predict(data["full"], verbose=0)
        model = KDModel(student, teacher if live else None, train_logits=table, lam=0.7,
                        temperature=20.0, temperature_squared=False)
        model.compile(optimizer=keras.optimizers.SGD(LR, momentum=0.9), jit_compile=jit)
        log = StepLosses()
        model.fit(_dataset(data, live), epochs=epochs, callbacks=[log], verbose=0,
                  shuffle=False)
    return model, log.losses


def test_teacher_weights_are_bit_identical_after_fit(networks, data):
    _, teacher = networks
    before = [w.copy() for w in teacher.get_weights()]
    model, _ = _train(networks, data, live=True)
    assert model.teacher is teacher
    teacher_ids = {id(v) for v in teacher.weights}
    assert not teacher_ids & {id(v) for v in model.trainable_weights}
    for old, new in zip(before, teacher.get_weights()):
        assert np.array_equal(old, new)
    changed = [not np.array_equal(a, b)
               for a, b in zip(networks[0], model.student.get_weights())]
    assert any(changed)  # the student did learn


def test_cached_teacher_gives_the_live_teachers_loss(networks, data):
    cached_model, cached = _train(networks, data, live=False)
    live_model, live = _train(networks, data, live=True)
    np.testing.assert_allclose(cached, live, rtol=1e-5)
    for a, b in zip(cached_model.student.get_weights(), live_model.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_loss_pairs_each_student_view_with_the_teacher_output_of_the_same_image(networks,
                                                                                 data):
    """In a shuffled batch the step must gather the teacher logits by "index"."""
    student_weights, teacher = networks
    student = mini(8, 32)
    student.set_weights(student_weights)
    # why spread: the soft term's value does not depend on the teacher when the student's
    # outputs are uniform (CE(q, uniform) = ln 8 for every q)
    student = _spread(student, data["occluded"])
    table = teacher.predict(data["full"], verbose=0)
    model = KDModel(student, None, train_logits=table, lam=0.7, temperature=20.0,
                    temperature_squared=False)
    order = np.random.default_rng(3).permutation(N)[:BATCH]
    x = {"image": data["occluded"][order], "index": data["index"][order]}
    y = data["label"][order]
    loss = model.compute_loss(x, y, model(x), training=True)
    expected = kd_loss(y, student(data["occluded"][order]), teacher(data["full"][order]), lam=0.7,
                       temperature=20.0, temperature_squared=False)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    wrong = kd_loss(y, student(data["occluded"][order]), teacher(data["full"][order[::-1]]),
                    lam=0.7, temperature=20.0, temperature_squared=False)
    assert abs(float(wrong) - float(expected)) > 1e-3  # the test can tell a wrong pairing


def test_a_few_steps_lower_the_kd_loss(networks, data):
    student_weights, teacher = networks
    student = mini(8, 32)
    student.set_weights(student_weights)
    model = KDModel(student, None, train_logits=teacher.predict(data["full"], verbose=0), lam=0.7,
                    temperature=20.0, temperature_squared=False)
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=0.9))
    batch = next(iter(_dataset(data, live=False)))
    before = float(model.compute_loss(batch[0], batch[1], model(batch[0])))
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(5), verbose=0, shuffle=False)
    after = float(model.compute_loss(batch[0], batch[1], model(batch[0])))
    assert after < before


def test_the_mode_is_fixed_at_construction_and_gaps_are_clear_errors(networks, data):
    student = mini(8, 32)
    with pytest.raises(ValueError, match="cached mode.*live mode"):
        KDModel(student, None, lam=0.7, temperature=20.0, temperature_squared=False)
    assert KDModel(student, networks[1], lam=0.7, temperature=20.0, temperature_squared=False).mode == "live"
    model = KDModel(student, None, lam=0.7, temperature=20.0, temperature_squared=False, train_logits=np.zeros((N, 8)))
    assert model.mode == "cached"
    x = {"image": data["occluded"][:2], "index": data["index"][:2]}
    # a cached model without an evaluation table nor a teacher cannot evaluate
    with pytest.raises(ValueError, match="teacher must run live"):
        model.compute_loss(x, data["label"][:2], model(x), training=False)
    with pytest.raises(ValueError, match=r"must be \(N, 8\)"):
        model.set_logits(train=np.zeros((4, 7)))
    with pytest.raises(ValueError, match="no eval table"):
        model.set_logits(eval=np.zeros((4, 8)))


def test_xla_and_mixed_precision_agree_with_float32(networks, data):
    _, reference = _train(networks, data, live=False)
    _, xla = _train(networks, data, live=False, jit=True)
    np.testing.assert_allclose(xla, reference, rtol=1e-4)
    # mixed_float16 on a CPU: slow (emulated) but it runs the LossScaleOptimizer path.
    mixed_model, mixed = _train(networks, data, live=False, policy="mixed_float16", epochs=1)
    assert isinstance(mixed_model.optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(mixed, reference[:len(mixed)], rtol=2e-2)
