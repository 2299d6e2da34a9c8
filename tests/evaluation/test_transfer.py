"""Transfer diagnostics against values worked out by hand."""
import math

import numpy as np
import pytest

from fer_distill.evaluation.transfer import transfer, transfer_of_predictions


def test_kl_and_agreement_by_hand():
    """Row 1: p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3).
    Row 2: p = q = (0.9, 0.1): KL 0. Top-1: row 1 differs (0 vs 1; ties go to the first
    class), row 2 agrees: agreement 1/2."""
    teacher = np.array([[0.5, 0.5], [0.9, 0.1]])
    student = np.array([[0.25, 0.75], [0.9, 0.1]])
    result = transfer(teacher, student)
    assert result["kl"] == pytest.approx(0.5 * math.log(4 / 3) / 2, abs=1e-6)
    assert result["agreement"] == 0.5 and result["n"] == 2


def test_identical_outputs_give_zero_and_full_agreement():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8), size=20)
    result = transfer(p, p)
    assert abs(result["kl"]) < 1e-9 and result["agreement"] == 1.0


def test_zero_probabilities_stay_finite():
    result = transfer(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert math.isfinite(result["kl"]) and result["kl"] > 10


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="both be"):
        transfer(np.ones((3, 2)) / 2, np.ones((2, 2)) / 2)
    a = {"index": np.array([0, 1]), "probs": np.ones((2, 2)) / 2}
    b = {"index": np.array([1, 0]), "probs": np.ones((2, 2)) / 2}
    with pytest.raises(ValueError, match="different images"):
        transfer_of_predictions(a, b)
