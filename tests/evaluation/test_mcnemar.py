"""McNemar's test against values derived by hand and the formulas of NOTES §1."""
import math

import numpy as np
import pytest
from scipy.stats import binom, chi2

from fer_distill.evaluation.mcnemar import CHI2, EXACT, mcnemar_from_predictions, mcnemar_test


def _paired(b, c, both_right=0, both_wrong=0):
    """Labels and two prediction vectors with exactly b images only A gets right and c images
    only B gets right (class 0 is the truth everywhere; 1 is a wrong answer)."""
    a_pred = [0] * b + [1] * c + [0] * both_right + [1] * both_wrong
    b_pred = [1] * b + [0] * c + [0] * both_right + [1] * both_wrong
    return np.zeros(len(a_pred), int), np.array(a_pred), np.array(b_pred)


def test_hand_example():
    """b = 1, c = 9: exact p = 2·(C(10,0) + C(10,1))/2¹⁰ = 22/1024 = 0.021484375;
    chi-square (|1 − 9| − 1)²/10 = 4.9, p = erfc(√2.45) ≈ 0.026857."""
    labels, a, b = _paired(1, 9, both_right=30, both_wrong=5)
    exact = mcnemar_test(labels, a, b)
    assert (exact.b, exact.c, exact.n) == (1, 9, 45)
    assert exact.pvalue == 22 / 1024 and exact.statistic == 1.0
    assert exact.method == EXACT and exact.significant and exact.b_significantly_better
    approx = mcnemar_test(labels, a, b, exact=False)
    assert approx.statistic == pytest.approx(4.9)
    assert approx.pvalue == pytest.approx(math.erfc(math.sqrt(2.45)), rel=1e-9)
    assert approx.pvalue == pytest.approx(0.026857, abs=1e-6)
    assert approx.method == CHI2 and approx.significant


@pytest.mark.parametrize("b,c", [(0, 5), (3, 4), (7, 20), (40, 25), (12, 12), (150, 110)])
def test_against_the_formulas_of_notes(b, c):
    labels, a_pred, b_pred = _paired(b, c, both_right=17, both_wrong=3)
    n = b + c
    exact = mcnemar_test(labels, a_pred, b_pred)
    assert exact.pvalue == pytest.approx(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)), rel=1e-9)
    approx = mcnemar_test(labels, a_pred, b_pred, exact=False)
    statistic = (abs(b - c) - 1) ** 2 / n
    assert approx.statistic == pytest.approx(statistic)
    assert approx.pvalue == pytest.approx(chi2.sf(statistic, 1), rel=1e-9)
    for r in (exact, approx):
        assert r.significant == (r.pvalue < 0.05)
        assert r.b_better == (c > b)


def test_symmetry_and_direction():
    labels, a, b = _paired(2, 15)
    forward = mcnemar_test(labels, a, b)
    backward = mcnemar_test(labels, b, a)
    assert (backward.b, backward.c) == (forward.c, forward.b)
    assert backward.pvalue == forward.pvalue
    assert forward.b_significantly_better and not backward.b_significantly_better
    assert mcnemar_test(labels, a, b, alpha=1e-6).significant is False


def test_no_discordant_pairs_means_no_evidence():
    labels, a, b = _paired(0, 0, both_right=5, both_wrong=5)
    for exact in (True, False):
        r = mcnemar_test(labels, a, b, exact=exact)
        assert (r.b, r.c, r.pvalue, r.statistic, r.significant) == (0, 0, 1.0, 0.0, False)


def test_pairing_is_checked():
    labels, a, b = _paired(3, 4)
    with pytest.raises(ValueError, match="predictions_b has 6 entries but labels has 7"):
        mcnemar_test(labels, a, b[:-1])
    other = labels.copy()
    other[2] = 3
    with pytest.raises(ValueError, match="differ at 1 positions \\(first at position 2: 0 vs 3\\)"):
        mcnemar_test(labels, a, b, labels_b=other)
    idx = np.arange(7)
    with pytest.raises(ValueError, match="index_a and index_b differ"):
        mcnemar_test(labels, a, b, index_a=idx, index_b=idx[::-1])
    with pytest.raises(ValueError, match="both index_a and index_b"):
        mcnemar_test(labels, a, b, index_a=idx)
    with pytest.raises(ValueError, match="alpha"):
        mcnemar_test(labels, a, b, alpha=5)


def test_from_saved_prediction_files(tmp_path):
    labels, a, b = _paired(1, 9, both_right=4)
    index = np.arange(len(labels)) + 100
    probs = np.zeros((len(labels), 8), np.float32)
    np.savez(tmp_path / "a.npz", index=index, label=labels, pred=a, probs=probs)
    np.savez(tmp_path / "b.npz", index=index, label=labels, pred=b, probs=probs)
    r = mcnemar_from_predictions(tmp_path / "a.npz", tmp_path / "b.npz")
    assert (r.b, r.c, r.pvalue) == (1, 9, 22 / 1024)
    assert r.to_dict()["b_significantly_better"] is True
    np.savez(tmp_path / "c.npz", index=index[::-1], label=labels, pred=b, probs=probs)
    with pytest.raises(ValueError, match="a.npz vs .*c.npz: .*index_a and index_b differ"):
        mcnemar_from_predictions(tmp_path / "a.npz", tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", index=index, pred=b)
    with pytest.raises(ValueError, match=r"lacks arrays \['label'\]"):
        mcnemar_from_predictions(tmp_path / "a.npz", tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match="e.npz"):
        mcnemar_from_predictions(tmp_path / "a.npz", tmp_path / "e.npz")
