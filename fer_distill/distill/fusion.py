"""Late fusion of the two distilled students (paper section IV-C).

    svm = FusionSVM(C=1.0).fit(emb_kd, emb_triplet, labels); svm.predict(emb_kd, emb_triplet)
    svm.save(directory); FusionSVM.load(directory)

The KD student's and the triplet student's embeddings of the same occluded face are
concatenated, [E_KD ; E_triplet], and classified by scikit-learn's `LinearSVC` with C = 1
(max_iter 10,000, dual="auto"; `standardize=True` scales the features). Decisions are
computed with NumPy from the stored arrays (fusion_svm.json + .npz, no pickle).
Why these settings: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from fer_distill.atomic import atomic_path, write_json

FORMAT = "fer_distill.fusion_svm/1"
CONFIG_FILE = "fusion_svm.json"
WEIGHTS_FILE = "fusion_svm.npz"


class FusionConvergenceWarning(UserWarning):
    """The SVM stopped at max_iter before reaching its tolerance."""


class FusionSVM:
    """A linear SVM on [E_KD ; E_triplet].

    Attributes after `fit` (or `load`):
      coef_: (n_outputs, D_kd + D_triplet) float64 in the (standardised, if chosen) feature
        space; n_outputs = number of classes, or 1 for two classes (scikit-learn's convention).
      intercept_: (n_outputs,). classes_: the sorted labels seen in training.
      mean_, scale_: the standardisation (zeros and ones when standardize=False).
      dims_: (D_kd, D_triplet). converged_: bool. n_iter_: iterations liblinear ran.
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        standardize: bool = False,
        max_iter: int = 10_000,
        tol: float = 1e-4,
        dual="auto",
        random_state: int | None = 0,
    ):
        if not float(C) > 0:
            raise ValueError(f"FusionSVM: C must be > 0, got {C!r}")
        if int(max_iter) < 1:
            raise ValueError(f"FusionSVM: max_iter must be >= 1, got {max_iter!r}")
        self.C = float(C)
        self.standardize = bool(standardize)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.dual = dual
        self.random_state = random_state
        self.coef_ = None

    def settings(self) -> dict:
        return {
            "C": self.C,
            "standardize": self.standardize,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "dual": self.dual,
            "random_state": self.random_state,
        }

    # -- training -------------------------------------------------------------------------

    def fit(self, emb_kd, emb_triplet, labels) -> "FusionSVM":
        """Fits the SVM on the concatenated embeddings of the same N images."""
        # why here: scikit-learn takes seconds to import; loading and applying a saved SVM
        # (evaluation, serving) never needs it, only fitting does
        from sklearn.exceptions import ConvergenceWarning  # why here: see above
        from sklearn.svm import LinearSVC  # why here: see above

        x = _concat(emb_kd, emb_triplet, "fit")
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"FusionSVM.fit: labels must be ({x.shape[0]},) like the embeddings, got "
                f"{labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"FusionSVM.fit: labels must be integers, got {labels.dtype}")
        if len(np.unique(labels)) < 2:
            raise ValueError("FusionSVM.fit: labels hold a single class; an SVM needs two")
        if self.standardize:
            mean = x.mean(axis=0)
            scale = x.std(axis=0)
            # why: a constant feature (a relu7 unit dead on every image) has std 0; leave it
            # unscaled (it is all zeros after centring, so its weight is irrelevant).
            scale[scale == 0] = 1.0
        else:
            mean = np.zeros(x.shape[1])
            scale = np.ones(x.shape[1])
        svm = LinearSVC(
            C=self.C,
            dual=self.dual,
            tol=self.tol,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svm.fit((x - mean) / scale, labels)
        self.n_iter_ = int(np.max(svm.n_iter_))
        converged = self.n_iter_ < self.max_iter and not any(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )
        for w in caught:  # pass on anything that is not the warning we handle here
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.coef_ = np.asarray(svm.coef_, np.float64)
        self.intercept_ = np.asarray(svm.intercept_, np.float64).reshape(-1)
        self.classes_ = np.asarray(svm.classes_)
        self.mean_ = mean
        self.scale_ = scale
        self.dims_ = (int(np.shape(emb_kd)[1]), int(np.shape(emb_triplet)[1]))
        self.converged_ = bool(converged)
        self.num_train_ = int(x.shape[0])
        if not converged:
            warnings.warn(
                f"FusionSVM: liblinear stopped at max_iter={self.max_iter} before reaching "
                f"tol={self.tol}; the SVM is not the converged C={self.C} solution. Raise "
                "max_iter, or fit with standardize=True (better conditioned). Recorded as "
                "converged=false in the saved model.",
                FusionConvergenceWarning,
                stacklevel=2,
            )
        return self

    # -- inference ------------------------------------------------------------------------

    def decision_function(self, emb_kd, emb_triplet) -> np.ndarray:
        """One-vs-rest scores, (N, n_classes) (or (N,) for two classes, like scikit-learn)."""
        self._check_fitted()
        x = _concat(emb_kd, emb_triplet, "decision_function", dims=self.dims_)
        scores = ((x - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        return scores[:, 0] if self.coef_.shape[0] == 1 else scores

    def predict(self, emb_kd, emb_triplet) -> np.ndarray:
        """Predicted labels (values of `classes_`)."""
        scores = self.decision_function(emb_kd, emb_triplet)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def class_scores(self, emb_kd, emb_triplet, num_classes: int) -> np.ndarray:
        """Decision values laid out over class indices 0..num_classes-1, float64 (N, K).

        Training, evaluation and the report all index scores by the package's class order,
        not by the SVM's `classes_`: a class absent from training gets the lowest float32 value
        (never the argmax, probability 0 after a softmax), and a two-class SVM's single score s
        becomes (-s, s), scikit-learn's ranking. Same layout as `linear_map(num_classes)`.
        """
        decision = self.decision_function(emb_kd, emb_triplet)
        if decision.ndim == 1:
            decision = np.stack([-decision, decision], axis=1)
        classes = np.asarray(self.classes_).astype(int)
        if classes.min() < 0 or classes.max() >= num_classes:
            raise ValueError(
                f"FusionSVM.class_scores: classes {classes.tolist()} fall outside "
                f"0..{num_classes - 1}")
        scores = np.full((decision.shape[0], num_classes), np.finfo(np.float32).min, np.float64)
        scores[:, classes] = decision
        return scores

    def linear_map(self, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) with decision = concat(E_KD, E_triplet) @ W + b on RAW embeddings, float32.

        The standardisation is folded in: W = coefᵀ / scale, b = intercept − (mean / scale)·coef,
        so serving needs one Dense layer over the concatenated embeddings and no scaler.
        W is (D_kd + D_triplet, n_outputs). With `num_classes`, the columns are laid out by
        class index 0..num_classes-1 (the package's class order) instead of `classes_`; a
        class absent from training gets weight 0 and the lowest float32 bias, so it is never
        the argmax and has probability 0 under a softmax. Two-class models are expanded the
        same way (scores −s and s).
        """
        self._check_fitted()
        weights = (self.coef_ / self.scale_).T  # (F, n_outputs)
        bias = self.intercept_ - (self.coef_ @ (self.mean_ / self.scale_))
        if num_classes is None:
            return weights.astype(np.float32), bias.astype(np.float32)
        if self.coef_.shape[0] == 1:  # binary: class_1 score s, class_0 score -s
            weights = np.concatenate([-weights, weights], axis=1)
            bias = np.concatenate([-bias, bias])
        bad = [c for c in self.classes_.tolist() if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(
                f"FusionSVM.linear_map: classes {bad} fall outside 0..{num_classes - 1}"
            )
        full_w = np.zeros((weights.shape[0], num_classes), np.float32)
        full_b = np.full((num_classes,), np.finfo(np.float32).min, np.float32)
        full_w[:, self.classes_.astype(int)] = weights
        full_b[self.classes_.astype(int)] = bias
        return full_w, full_b

    # -- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Writes directory `path` (atomically) with fusion_svm.json and fusion_svm.npz."""
        self._check_fitted()
        path = Path(path)
        config = {
            "format": FORMAT,
            "settings": self.settings(),
            "classes": self.classes_.tolist(),
            "dims": {"kd": self.dims_[0], "triplet": self.dims_[1]},
            "converged": self.converged_,
            "n_iter": self.n_iter_,
            "num_train": self.num_train_,
            "sklearn_version": _sklearn_version(),
        }
        with atomic_path(path, directory=True) as tmp:
            write_json(tmp / CONFIG_FILE, config)
            np.savez(
                tmp / WEIGHTS_FILE,
                coef=self.coef_,
                intercept=self.intercept_,
                classes=self.classes_,
                mean=self.mean_,
                scale=self.scale_,
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FusionSVM":
        """Reads what `save` wrote; checks that the arrays fit the recorded dimensions."""
        path = Path(path)
        config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"FusionSVM.load: {p} not found (written by save?)")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ValueError(
                f"FusionSVM.load: {config_path} has format {config.get('format')!r}, expected "
                f"{FORMAT!r}"
            )
        model = cls(**config["settings"])
        with np.load(weights_path, allow_pickle=False) as z:
            model.coef_ = z["coef"]
            model.intercept_ = z["intercept"]
            model.classes_ = z["classes"]
            model.mean_ = z["mean"]
            model.scale_ = z["scale"]
        model.dims_ = (int(config["dims"]["kd"]), int(config["dims"]["triplet"]))
        model.converged_ = bool(config["converged"])
        model.n_iter_ = int(config["n_iter"])
        model.num_train_ = int(config["num_train"])
        features = sum(model.dims_)
        n_out = 1 if len(model.classes_) == 2 else len(model.classes_)
        expected = {
            "coef": (n_out, features),
            "intercept": (n_out,),
            "mean": (features,),
            "scale": (features,),
        }
        for name, shape in expected.items():
            actual = getattr(model, f"{name}_").shape
            if actual != shape:
                raise ValueError(
                    f"FusionSVM.load: {weights_path} array {name!r} has shape {actual}, expected "
                    f"{shape} for dims {model.dims_} and {len(model.classes_)} classes"
                )
        if model.classes_.tolist() != config["classes"]:
            raise ValueError(f"FusionSVM.load: classes in {weights_path} and {config_path} differ")
        return model

    def _check_fitted(self):
        if self.coef_ is None:
            raise ValueError("FusionSVM: not fitted; call fit() or FusionSVM.load() first")


def _concat(emb_kd, emb_triplet, where: str, dims=None) -> np.ndarray:
    emb_kd = np.asarray(emb_kd)
    emb_triplet = np.asarray(emb_triplet)
    for name, e in (("emb_kd", emb_kd), ("emb_triplet", emb_triplet)):
        if e.ndim != 2:
            raise ValueError(f"FusionSVM.{where}: {name} must be (N, D), got shape {e.shape}")
    if emb_kd.shape[0] != emb_triplet.shape[0]:
        raise ValueError(
            f"FusionSVM.{where}: emb_kd has {emb_kd.shape[0]} rows but emb_triplet has "
            f"{emb_triplet.shape[0]}; they must be the same images in the same order"
        )
    if dims is not None and (emb_kd.shape[1], emb_triplet.shape[1]) != tuple(dims):
        raise ValueError(
            f"FusionSVM.{where}: embedding widths (kd {emb_kd.shape[1]}, triplet "
            f"{emb_triplet.shape[1]}) differ from training's (kd {dims[0]}, triplet {dims[1]})"
        )
    # why float64: liblinear works in float64 anyway, and the decision must match it exactly.
    x = np.concatenate([emb_kd, emb_triplet], axis=1).astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"FusionSVM.{where}: the embeddings hold NaN or inf")
    return x


def _sklearn_version() -> str:
    import sklearn  # why here: as in `fit`

    return sklearn.__version__
