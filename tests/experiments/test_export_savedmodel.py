"""experiments/export_savedmodel.py end to end through its flags, on mini models."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app
from absl.testing import flagsaver

from experiments import export_savedmodel
from fer_distill.data.occlusion import occlude
from fer_distill.models import mini

NO_FLAGS = dict(model=None, output=None, view=None, kd_student=None, triplet_student=None,
                precision="float32", verify=True)



def _run_dir(path, seed, **config):
    keras.utils.set_random_seed(seed)
    model = mini(8, 32)
    path.mkdir(parents=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text("{}")
    return model


def _export(capsys, **values):
    with flagsaver.flagsaver(**{**NO_FLAGS, **values}):
        export_savedmodel.main(["export_savedmodel"])
    return json.loads(capsys.readouterr().out)


def test_a_student_run_exports_with_its_view(tmp_path, capsys):
    model = _run_dir(tmp_path / "run", 0, stage="student", view="lower_half_visible")
    printed = _export(capsys, model=str(tmp_path / "run"), output=str(tmp_path / "m" / "1"))
    assert printed["view"] == "lower_half_visible" and printed["kind"] == "classifier"
    metadata = json.loads((tmp_path / "m" / "1" / "assets" / "metadata.json").read_text())
    assert metadata["source"]["export_config"]["model"] == str(tmp_path / "run")
    images = np.random.default_rng(0).integers(0, 256, (2, 45, 50, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(str(tmp_path / "m" / "1"))
    got = loaded.signatures["predict_images"](images=tf.constant(images))["logits"].numpy()
    want = model(occlude(tf.image.resize(images, [32, 32]), "lower_half_visible")).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_bare_model_file_needs_view_and_usage_errors(tmp_path, capsys):
    _run_dir(tmp_path / "run", 1, stage="teacher")  # config.json without a view
    keras_file = tmp_path / "run" / "model.keras"
    with pytest.raises(ValueError, match="no occlusion view.*--view"):
        _export(capsys, model=str(keras_file), output=str(tmp_path / "a" / "1"))
    assert not (tmp_path / "a").exists()
    printed = _export(capsys, model=str(keras_file), output=str(tmp_path / "b" / "1"),
                      view="full", verify=False)
    assert printed["view"] == "full"
    with pytest.raises(app.UsageError, match="--model and --output"):
        _export(capsys, model=str(keras_file))


def test_a_fuse_run_exports_the_svm(tmp_path, capsys):
    from fer_distill.distill.fusion import FusionSVM
    from fer_distill.models import embedding_model

    kd = _run_dir(tmp_path / "kd", 2, stage="kd", view="lower_half_visible")
    triplet = _run_dir(tmp_path / "triplet", 3, stage="triplet", view="lower_half_visible")
    x = occlude(np.random.default_rng(1).uniform(0, 255, (24, 32, 32, 3)).astype(np.float32),
                "lower_half_visible")
    e_kd, e_tr = (embedding_model(m)(x)["embedding"].numpy() for m in (kd, triplet))
    svm = FusionSVM().fit(e_kd, e_tr, np.arange(24) % 8)
    svm.save(tmp_path / "fuse" / "fusion")
    (tmp_path / "fuse" / "config.json").write_text(json.dumps({
        "stage": "fuse", "view": "lower_half_visible",
        "kd_student": str(tmp_path / "kd" / "model.keras"),
        "triplet_student": str(tmp_path / "triplet" / "model.keras")}))
    printed = _export(capsys, model=str(tmp_path / "fuse"), output=str(tmp_path / "f" / "1"))
    assert printed["kind"] == "fusion" and printed["embedding_size"] == 128
    loaded = tf.saved_model.load(str(tmp_path / "f" / "1"))
    image = np.full((1, 32, 32, 3), 77, np.uint8)  # a flat grey face
    out = loaded.signatures["predict_images"](images=tf.constant(image))
    seen = occlude(np.full((1, 32, 32, 3), 77, np.float32), "lower_half_visible")
    want = svm.decision_function(embedding_model(kd)(seen)["embedding"].numpy(),
                                 embedding_model(triplet)(seen)["embedding"].numpy())
    np.testing.assert_allclose(out["decision"].numpy(), want, rtol=1e-4, atol=1e-4)


def test_bfloat16_precision_exports_bfloat16_weights_close_to_float32(tmp_path, capsys):
    """--precision=bfloat16 goes through fer_distill.serving.precision: the SavedModel's
    variables are bfloat16 and its probabilities stay close to the float32 export's."""
    _run_dir(tmp_path / "run", 3, stage="student", view="lower_half_visible")
    exports = {}
    for precision in ("float32", "bfloat16"):
        printed = _export(capsys, model=str(tmp_path / "run"), precision=precision,
                          output=str(tmp_path / precision / "1"))
        assert printed["precision"] == precision
        exports[precision] = tf.saved_model.load(str(tmp_path / precision / "1"))

    def stored_dtypes(precision):  # the dtypes of the exported checkpoint's variables
        reader = tf.train.load_checkpoint(str(tmp_path / precision / "1" / "variables" /
                                              "variables"))
        return set(reader.get_variable_to_dtype_map().values())

    assert tf.bfloat16 in stored_dtypes("bfloat16")
    assert tf.bfloat16 not in stored_dtypes("float32")
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), np.uint8))
    got, want = (exports[p].predict_images(images)["probabilities"].numpy()
                 for p in ("bfloat16", "float32"))
    assert np.max(np.abs(got - want)) <= 0.03
