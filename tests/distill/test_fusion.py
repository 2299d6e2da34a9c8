"""FusionSVM: same decisions as scikit-learn's LinearSVC, portable save/load, the linear map
that serving uses, and honest convergence reporting."""
import json
import warnings

import keras
import numpy as np
import pytest
from sklearn.svm import LinearSVC

from fer_distill.distill.fusion import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    FusionConvergenceWarning,
    FusionSVM,
)


def _embeddings(seed=0, n=240, d_kd=12, d_tr=9, classes=4):
    """Two relu-like embeddings of the same images, each carrying part of the class signal."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    kd = np.maximum(rng.normal(size=(n, d_kd)), 0).astype(np.float32)
    tr = np.maximum(rng.normal(size=(n, d_tr)), 0).astype(np.float32)
    kd[np.arange(n), labels] += 2.0
    tr[np.arange(n), labels % d_tr] += 1.0 + 3.0 * rng.random(n)
    return kd, tr, labels


@pytest.mark.parametrize("standardize", [False, True])
def test_decisions_match_linearsvc_on_the_concatenation(standardize):
    kd, tr, y = _embeddings()
    model = FusionSVM(standardize=standardize).fit(kd, tr, y)
    x = np.concatenate([kd, tr], axis=1).astype(np.float64)
    if standardize:
        x = (x - x.mean(0)) / x.std(0)
    reference = LinearSVC(C=1.0, max_iter=10_000, random_state=0).fit(x, y)
    assert model.converged_
    np.testing.assert_allclose(model.decision_function(kd, tr), reference.decision_function(x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(model.predict(kd, tr), reference.predict(x))
    assert np.mean(model.predict(kd, tr) == y) > 0.8  # it learnt something


def test_save_load_round_trip_is_bit_identical_and_portable(tmp_path):
    kd, tr, y = _embeddings(seed=1)
    model = FusionSVM(standardize=True).fit(kd, tr, y)
    out = model.save(tmp_path / "fusion")
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    assert [p.name for p in tmp_path.iterdir()] == ["fusion"]  # no temporary left behind
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["settings"]["C"] == 1.0 and config["converged"] is True
    assert config["dims"] == {"kd": 12, "triplet": 9}
    with np.load(out / WEIGHTS_FILE, allow_pickle=False) as z:  # arrays only, no pickle
        assert set(z.files) == {"coef", "intercept", "classes", "mean", "scale"}
    again = FusionSVM.load(out)
    kd_test, tr_test, _ = _embeddings(seed=2, n=50)
    np.testing.assert_array_equal(again.decision_function(kd_test, tr_test),
                                  model.decision_function(kd_test, tr_test))
    np.testing.assert_array_equal(again.predict(kd_test, tr_test), model.predict(kd_test, tr_test))
    assert again.settings() == model.settings()


@pytest.mark.parametrize("standardize", [False, True])
def test_linear_map_reproduces_the_decision_as_a_keras_dense_layer(standardize):
    kd, tr, y = _embeddings(seed=3)
    model = FusionSVM(standardize=standardize).fit(kd, tr, y)
    w, b = model.linear_map()
    assert w.shape == (21, 4) and b.shape == (4,) and w.dtype == np.float32
    x = np.concatenate([kd, tr], axis=1)
    np.testing.assert_allclose(x @ w + b, model.decision_function(kd, tr), rtol=1e-4, atol=1e-4)

    emb_kd = keras.Input((12,))
    emb_tr = keras.Input((9,))
    dense = keras.layers.Dense(4)
    scores = dense(keras.layers.Concatenate()([emb_kd, emb_tr]))
    dense.set_weights([w, b])
    served = keras.Model([emb_kd, emb_tr], scores).predict([kd, tr], verbose=0)
    np.testing.assert_array_equal(np.argmax(served, axis=1), model.predict(kd, tr))


def test_linear_map_lays_out_all_classes_when_one_is_missing():
    kd, tr, y = _embeddings(seed=4, classes=4)
    y = np.where(y == 2, 3, y)  # class 2 never seen in training
    model = FusionSVM().fit(kd, tr, y)
    np.testing.assert_array_equal(model.classes_, [0, 1, 3])
    w, b = model.linear_map(num_classes=5)
    assert w.shape == (21, 5)
    scores = np.concatenate([kd, tr], axis=1) @ w + b
    np.testing.assert_array_equal(np.argmax(scores, axis=1), model.predict(kd, tr))
    assert np.all(w[:, [2, 4]] == 0) and np.all(b[[2, 4]] == np.finfo(np.float32).min)


def test_two_classes_follow_sklearn_conventions():
    kd, tr, y = _embeddings(seed=5, classes=2)
    model = FusionSVM().fit(kd, tr, y)
    assert model.decision_function(kd, tr).shape == (240,)
    w, b = model.linear_map(num_classes=2)
    scores = np.concatenate([kd, tr], axis=1) @ w + b
    np.testing.assert_array_equal(np.argmax(scores, axis=1), model.predict(kd, tr))


def test_class_scores_lay_decisions_out_by_class_index():
    """A two-class SVM trained on classes 1 and 5: its score s becomes (-s, s) in those two
    columns of 8, the classes it never saw get the lowest float32 score (never predicted), and
    the layout equals the serving linear map's."""
    kd, tr, y = _embeddings(seed=9, classes=2)
    y = np.where(y == 0, 1, 5)
    model = FusionSVM().fit(kd, tr, y)
    s = model.decision_function(kd, tr)
    scores = model.class_scores(kd, tr, 8)
    assert scores.shape == (240, 8) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores[:, 1], -s)
    np.testing.assert_array_equal(scores[:, 5], s)
    np.testing.assert_array_equal(np.argmax(scores, axis=1), model.predict(kd, tr))
    assert np.all(scores[:, [0, 2, 3, 4, 6, 7]] == np.finfo(np.float32).min)
    w, b = model.linear_map(num_classes=8)
    np.testing.assert_allclose(np.concatenate([kd, tr], axis=1) @ w + b, scores,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="outside 0..3"):
        model.class_scores(kd, tr, 4)


def test_non_convergence_is_reported_not_hidden(tmp_path):
    kd, tr, y = _embeddings(seed=6)
    with pytest.warns(FusionConvergenceWarning, match="max_iter=2"):
        model = FusionSVM(max_iter=2, dual=True).fit(kd, tr, y)
    assert model.converged_ is False and model.n_iter_ == 2
    config = json.loads((model.save(tmp_path / "svm") / CONFIG_FILE).read_text())
    assert config["converged"] is False
    assert FusionSVM.load(tmp_path / "svm").converged_ is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit warns about nothing
        assert FusionSVM().fit(kd, tr, y).converged_


def test_constant_feature_survives_standardisation():
    kd, tr, y = _embeddings(seed=7)
    kd[:, 5] = 0.0  # a relu7 unit dead on every image
    model = FusionSVM(standardize=True).fit(kd, tr, y)
    assert model.scale_[5] == 1.0
    assert np.all(np.isfinite(model.decision_function(kd, tr)))


def test_bad_input_is_named(tmp_path):
    kd, tr, y = _embeddings(seed=8)
    with pytest.raises(ValueError, match="240 rows but emb_triplet has 239"):
        FusionSVM().fit(kd, tr[:-1], y)
    with pytest.raises(ValueError, match="labels"):
        FusionSVM().fit(kd, tr, y[:-1])
    with pytest.raises(ValueError, match="not fitted"):
        FusionSVM().predict(kd, tr)
    model = FusionSVM().fit(kd, tr, y)
    with pytest.raises(ValueError, match=r"kd 11, triplet 9\) differ from training's \(kd 12"):
        model.predict(kd[:, :11], tr)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full_like(kd, np.nan), tr)
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        FusionSVM.load(tmp_path / "nothing")
    out = model.save(tmp_path / "svm")
    config = json.loads((out / CONFIG_FILE).read_text())
    config["dims"]["kd"] = 13
    (out / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'coef' has shape"):
        FusionSVM.load(out)
