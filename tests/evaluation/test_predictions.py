"""predictions: per-image predictions of a model on a split and view, and their npz files."""
from __future__ import annotations

import numpy as np
import pytest

from fer_distill.data.occlusion import occlude
from fer_distill.evaluation.predictions import (load_predictions, predict_split,
                                                predictions_path, save_predictions, softmax,
                                                view_name)
from tests.conftest import write_tiny_prepared


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_tiny_prepared(tmp_path_factory.mktemp("tiny") / "prepared",
                               {"train": 4, "validation": 4, "test": 11}, seed=0)


@pytest.fixture(scope="module")
def model():
    import keras

    from fer_distill.models import mini

    keras.utils.set_random_seed(0)
    return mini(8, 32)


@pytest.mark.parametrize("view", ["full", "lower_half_visible", "upper_half_visible"])
def test_predict_split_is_the_model_on_the_occluded_images(prepared, model, view):
    got = predict_split(model, prepared, "test", view, batch_size=4)  # last batch of 3
    images = occlude(prepared.images("test").astype(np.float32), view)
    logits = model(images).numpy()
    np.testing.assert_array_equal(got["index"], np.arange(11))
    np.testing.assert_array_equal(got["label"], prepared.labels("test"))
    np.testing.assert_allclose(got["probs"], softmax(logits), atol=1e-6)
    np.testing.assert_array_equal(got["pred"], logits.argmax(1))
    assert got["probs"].dtype == np.float32 and got["pred"].dtype == np.int32


def test_predict_split_on_some_rows(prepared, model):
    rows = np.array([7, 2, 9])
    got = predict_split(model, prepared, "test", "full", indices=rows)
    np.testing.assert_array_equal(got["index"], rows)
    np.testing.assert_array_equal(got["label"], prepared.labels("test")[rows])


def test_npz_round_trip_and_checks(tmp_path):
    path = predictions_path(tmp_path, "test", "lower_half_visible")
    assert path == tmp_path / "predictions" / "test_lower_half_visible.npz"
    predictions = {"index": np.arange(3), "label": np.array([0, 1, 2], np.int32),
                   "pred": np.array([0, 2, 2], np.int32), "probs": np.eye(3, 8, dtype=np.float32),
                   "scores": np.zeros((3, 8), np.float32)}
    save_predictions(path, predictions)
    loaded = load_predictions(path)
    assert set(loaded) == set(predictions)
    for key in predictions:
        np.testing.assert_array_equal(loaded[key], predictions[key])
    with pytest.raises(ValueError, match=r"lack \['probs'\]"):
        save_predictions(path, {k: v for k, v in predictions.items() if k != "probs"})
    with pytest.raises(ValueError, match="'pred' has 2 rows, index has 3"):
        save_predictions(path, {**predictions, "pred": predictions["pred"][:2]})
    with pytest.raises(FileNotFoundError):
        load_predictions(tmp_path / "absent.npz")


def test_softmax_and_view_names():
    probs = softmax(np.array([[0.0, 0.0], [1000.0, 0.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [1.0, 0.0]])
    from fer_distill.data.occlusion import Mask

    assert view_name("full") == "full" and view_name(Mask.named("headset")) == "headset"
