"""outputs.split_outputs: a network's logits (and embeddings) over a split in one view."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_distill.data.occlusion import occlude
from fer_distill.models import embedding_model, mini
from fer_distill.models.outputs import input_size, split_outputs
from tests.conftest import write_tiny_prepared


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_tiny_prepared(tmp_path_factory.mktemp("tiny") / "prepared",
                               {"train": 7, "validation": 3, "test": 3}, seed=1)


def test_logits_and_embeddings_of_rows_in_a_view_from_a_classifier_or_an_embedder(prepared):
    keras.utils.set_random_seed(0)
    model = mini(8, 32)
    rows = np.array([5, 0, 3])
    images = occlude(prepared.images("train")[rows].astype(np.float32), "upper_half_visible")
    want = embedding_model(model)(images)
    got = split_outputs(model, prepared, "train", "upper_half_visible", batch_size=2,
                        indices=rows, embeddings=True)
    np.testing.assert_array_equal(got["index"], rows)
    np.testing.assert_allclose(got["logits"], want["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["embedding"], want["embedding"].numpy(), atol=1e-5)
    assert got["logits"].dtype == got["embedding"].dtype == np.float32
    # a classifier alone gives logits only; an embedder gives both without asking
    assert set(split_outputs(model, prepared, "train", "full", batch_size=4)) == {"index",
                                                                                  "logits"}
    both = split_outputs(embedding_model(model), prepared, "train", "upper_half_visible",
                         batch_size=4, indices=rows)
    np.testing.assert_allclose(both["embedding"], got["embedding"], atol=1e-5)


def test_a_model_that_is_not_an_image_classifier_is_refused_by_name():
    flat = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8)], name="flat")
    with pytest.raises(ValueError, match="'flat' takes .*expected \\(None, S, S, 3\\)"):
        input_size(flat)
