"""McNemar's paired test between two classifiers on the same test images (paper, Table I's †).

`mcnemar_test(labels, predictions_a, predictions_b, exact=True)` with A the baseline and B the
challenger; only the discordant pairs matter:
    b = images A classifies correctly and B does not,
    c = images B classifies correctly and A does not.
Exact:       p = min(1, 2·BinomCDF(min(b, c); b + c, ½)),  statistic = min(b, c).
Chi-square:  statistic = (|b − c| − 1)² / (b + c), p = P(χ²₁ ≥ statistic).
No discordant pair (b = c = 0): p = 1, statistic 0. Two-sided; a † is
`McNemarResult.b_significantly_better`. Why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

EXACT = "exact binomial (statsmodels mcnemar, exact=True)"
CHI2 = "chi-square with continuity correction (statsmodels mcnemar, exact=False, correction=True)"


@dataclasses.dataclass(frozen=True)
class McNemarResult:
    """b: A right and B wrong; c: B right and A wrong; n: number of paired images."""

    b: int
    c: int
    n: int
    statistic: float
    pvalue: float
    method: str
    alpha: float
    significant: bool

    @property
    def b_better(self) -> bool:
        """B was right on more of the discordant images than A."""
        return self.c > self.b

    @property
    def b_significantly_better(self) -> bool:
        """The paper's †: p < alpha and B (the distilled student) is the better one."""
        return self.significant and self.b_better

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["b_better"] = self.b_better
        d["b_significantly_better"] = self.b_significantly_better
        return d


def mcnemar_test(
    labels,
    predictions_a,
    predictions_b,
    *,
    exact: bool = True,
    alpha: float = 0.05,
    labels_b=None,
    index_a=None,
    index_b=None,
) -> McNemarResult:
    """McNemar's test of model A against model B on the same images.

    Args:
      labels: (N,) true classes.
      predictions_a, predictions_b: (N,) predicted classes of A (the baseline) and B.
      exact: True for the exact binomial test (statsmodels' default), False for chi-square
        with continuity correction.
      alpha: significance level (the paper's 0.05).
      labels_b, index_a, index_b: optional, to prove the pairing: B's own copy of the labels
        and both models' image indices (e.g. the `index` arrays of the saved predictions);
        any difference is an error, because an unpaired McNemar test means nothing.

    Worked example (checked in tests): b = 1, c = 9, so n = 10.
      Exact: P(X ≤ 1) = (C(10,0) + C(10,1)) / 2¹⁰ = 11/1024, p = 22/1024 = 0.021484375 < 0.05.
      Chi-square: (|1 − 9| − 1)² / 10 = 49/10 = 4.9, p = erfc(√(4.9/2)) ≈ 0.026857 < 0.05.
    """
    # why here: statsmodels takes seconds to import and only this test needs it
    from statsmodels.stats.contingency_tables import mcnemar  # why here: see above

    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"mcnemar_test: alpha must be in (0, 1), got {alpha!r}")
    labels = _vector("labels", labels)
    a = _vector("predictions_a", predictions_a)
    b_pred = _vector("predictions_b", predictions_b)
    for name, v in (("predictions_a", a), ("predictions_b", b_pred)):
        if v.shape != labels.shape:
            raise ValueError(
                f"mcnemar_test: {name} has {v.shape[0]} entries but labels has "
                f"{labels.shape[0]}; the test needs both models on the same images"
            )
    if labels_b is not None:
        labels_b = _vector("labels_b", labels_b)
        _same("labels", labels, "labels_b", labels_b)
    if (index_a is None) != (index_b is None):
        raise ValueError("mcnemar_test: give both index_a and index_b, or neither")
    if index_a is not None:
        index_a = _vector("index_a", index_a)
        index_b = _vector("index_b", index_b)
        if index_a.shape != labels.shape:
            raise ValueError(
                f"mcnemar_test: index_a has {index_a.shape[0]} entries for {labels.shape[0]} labels"
            )
        _same("index_a", index_a, "index_b", index_b)
    if labels.size == 0:
        raise ValueError("mcnemar_test: no images")

    right_a = a == labels
    right_b = b_pred == labels
    table = np.array(
        [
            [np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
            [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)],
        ],
        dtype=np.int64,
    )
    b, c = int(table[0, 1]), int(table[1, 0])
    method = EXACT if exact else CHI2
    if b + c == 0:
        statistic, pvalue = 0.0, 1.0  # no discordant pair: no evidence (DESIGN.md, "Evaluation")
    else:
        result = mcnemar(table, exact=bool(exact), correction=True)
        statistic, pvalue = float(result.statistic), float(result.pvalue)
    return McNemarResult(
        b=b,
        c=c,
        n=int(labels.size),
        statistic=statistic,
        pvalue=pvalue,
        method=method,
        alpha=float(alpha),
        significant=bool(pvalue < alpha),
    )


def mcnemar_from_predictions(
    path_a: str | os.PathLike, path_b: str | os.PathLike, **kwargs
) -> McNemarResult:
    """The test between two saved prediction files (`predictions/<split>_<view>.npz`, holding
    `index`, `label`, `pred`), checking that both cover the same images with the same labels."""
    arrays = []
    for path in (Path(path_a), Path(path_b)):
        if not path.is_file():
            raise FileNotFoundError(f"mcnemar: predictions file {path} not found")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("index", "label", "pred") if k not in z.files]
            if missing:
                raise ValueError(f"mcnemar: {path} lacks arrays {missing} (has {z.files})")
            arrays.append({k: z[k] for k in ("index", "label", "pred")})
    a, b = arrays
    try:
        return mcnemar_test(
            a["label"],
            a["pred"],
            b["pred"],
            labels_b=b["label"],
            index_a=a["index"],
            index_b=b["index"],
            **kwargs,
        )
    except ValueError as e:
        raise ValueError(f"mcnemar: {path_a} vs {path_b}: {e}") from None


def _vector(name, v) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"mcnemar_test: {name} must be 1-D, got shape {v.shape}")
    if v.size and not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"mcnemar_test: {name} must hold integers, got {v.dtype}")
    return v


def _same(name_a, a, name_b, b):
    if a.shape != b.shape:
        raise ValueError(
            f"mcnemar_test: {name_a} has {a.shape[0]} entries but {name_b} has {b.shape[0]}: "
            "the two models were not evaluated on the same images"
        )
    differ = np.flatnonzero(a != b)
    if differ.size:
        i = int(differ[0])
        raise ValueError(
            f"mcnemar_test: {name_a} and {name_b} differ at {differ.size} positions (first at "
            f"position {i}: {a[i]} vs {b[i]}): the two models were not evaluated on the same "
            "images in the same order"
        )
