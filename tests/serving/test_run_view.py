"""A run trained on a mask view (not the paper's halves): export, predict and Grad-CAM all
take the view from the run's config.json, record it and apply it to incoming faces."""
import numpy as np
import tensorflow as tf

from fer_distill.data.occlusion import occlude
from fer_distill.explain.gradcam import explain
from fer_distill.models import embedding_model
from fer_distill.serving.export import export_savedmodel, read_metadata
from fer_distill.serving.predict import Predictor
from fer_distill.serving.servable import load_servable

from .conftest import sharp_mini, write_run


def _crops(n=3, size=32):
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _keras_probs(model, crops, view):
    inputs = tf.constant(np.stack(crops).astype(np.float32))
    return tf.nn.softmax(embedding_model(model)(occlude(inputs, view))["logits"]).numpy()


def test_a_headset_run_is_served_explained_and_exported_in_its_view(tmp_path):
    model = sharp_mini(7)
    run = write_run(tmp_path / "headset_kd", model, stage="kd", view="headset")
    crops = _crops()

    predictor = Predictor.load(run)
    assert predictor.view == "headset"  # says which view the model expects
    got = predictor(crops)["probabilities"]
    np.testing.assert_allclose(got, _keras_probs(model, crops, "headset"), rtol=1e-4,
                               atol=1e-5)
    # the halves would give other answers: the headset really was applied
    assert np.abs(got - _keras_probs(model, crops, "lower_half_visible")).max() > 1e-3

    explanation = explain(load_servable(run), crops)
    assert explanation.view == "headset"
    np.testing.assert_allclose(explanation.seen, occlude(explanation.full, "headset"),
                               atol=1e-4)

    path = export_savedmodel(load_servable(run), tmp_path / "export" / "1", verify=False)
    assert read_metadata(path)["view"] == "headset"
