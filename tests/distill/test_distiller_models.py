"""RKDModel and HintModel through Keras' own step on `mini` at 32x32: the loss is CE plus the
weighted terms they log, cached and live teachers agree, the teacher stays frozen, and the
hint's regressor is not part of the student."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.occlusion import occlude
from fer_distill.distill.hint import masked_hint_loss
from fer_distill.distill.hint_model import HintModel, feature_model
from fer_distill.distill.rkd import rkd_terms
from fer_distill.distill.rkd_model import RKDModel
from fer_distill.models import embedding_model, mini

N, BATCH = 16, 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    full = rng.uniform(0, 255, (N, 32, 32, 3)).astype(np.float32)
    return {"full": full, "image": occlude(full, "lower_half_visible"),
            "label": rng.integers(0, 8, N).astype(np.int32), "index": np.arange(N)}


def _pair():
    keras.utils.set_random_seed(0)
    return mini(8, 32), mini(8, 32)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_rkd_loss_is_ce_plus_the_logged_terms_and_cached_equals_live(data):
    student, teacher = _pair()
    x = {k: data[k][:BATCH] for k in ("image", "full", "index")}
    y = data["label"][:BATCH]
    table = embedding_model(teacher).predict(data["full"], verbose=0)["embedding"]
    live = RKDModel(student, teacher, lam=0.5)
    cached = RKDModel(student, None, lam=0.5, train_embeddings=table)
    losses = [float(m.compute_loss(x, y, m(x, training=True), training=True))
              for m in (live, cached)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    out = embedding_model(student)(x["image"])
    ce = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=out["logits"])))
    dist, angle = rkd_terms(out["embedding"], table[:BATCH])
    assert losses[0] == pytest.approx(ce + 0.5 * (25 * float(dist) + 50 * float(angle)),
                                      rel=1e-4)


def test_rkd_fit_logs_its_terms_and_leaves_the_teacher_alone(data):
    student, teacher = _pair()
    before = _weights(teacher)
    trainer = RKDModel(student, teacher, lam=1.0)
    trainer.compile(optimizer=keras.optimizers.SGD(1e-3),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    x = {k: data[k] for k in ("image", "full", "index")}
    logs = trainer.train_on_batch({k: v[:BATCH] for k, v in x.items()}, data["label"][:BATCH],
                                  return_dict=True)
    assert {"rkd_ce", "rkd_dist", "rkd_angle", "accuracy"} <= set(logs)
    assert logs["rkd_dist"] > 0 and logs["rkd_angle"] > 0
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_hint_loss_matches_the_masked_formula_and_fit_trains_student_and_regressor(data):
    student, teacher = _pair()
    before = _weights(teacher)
    trainer = HintModel(student, teacher, layer="relu2", view="lower_half_visible", lam=0.1)
    x = {k: data[k][:BATCH] for k in ("image", "full", "index")}
    y = data["label"][:BATCH]
    loss = float(trainer.compute_loss(x, y, trainer(x, training=True), training=True))
    fs = feature_model(student, "relu2")(x["image"])
    ft = feature_model(teacher, "relu2")(x["full"])["features"]
    visible = np.zeros((16, 16), bool)
    visible[8:] = True
    ce = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=fs["logits"])))
    # the regressor starts as the identity (same channels)
    want = ce + 0.1 * float(masked_hint_loss(fs["features"], ft, visible))
    assert loss == pytest.approx(want, rel=1e-4)
    regressor = trainer.regressor.get_weights()[0].copy()
    trainer.compile(optimizer=keras.optimizers.SGD(1e-4))
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert {"hint_ce", "hint"} <= set(logs)
    assert not np.array_equal(regressor, trainer.regressor.get_weights()[0])
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "hint_regressor" not in [layer.name for layer in student.layers]
    assert len(student.get_weights()) == len(teacher.get_weights())


def test_hint_names_a_missing_layer():
    student, teacher = _pair()
    with pytest.raises(ValueError, match="no layer 'relu5'"):
        HintModel(student, teacher, layer="relu5", view="lower_half_visible", lam=0.01)
