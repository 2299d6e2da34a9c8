"""experiments/export_tflite.py end to end through its flags, on a mini run directory."""
import json

import keras
import numpy as np
import pytest
from absl import app
from absl.testing import flagsaver

from experiments import export_tflite
from fer_distill.data.occlusion import occlude
from fer_distill.models import mini
from fer_distill.serving.predict import Predictor

NO_FLAGS = dict(model=None, output=None, view=None, kd_student=None, triplet_student=None,
                quantization="dynamic_range")



def test_a_student_run_exports_with_its_view(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = mini(8, 32)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"stage": "student",
                                                 "view": "lower_half_visible"}))
    (run / "metrics.json").write_text("{}")
    with flagsaver.flagsaver(**{**NO_FLAGS, "model": str(run), "output": str(tmp_path / "lite"),
                                "quantization": "none"}):
        export_tflite.main(["export_tflite"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["view"] == "lower_half_visible" and printed["quantization"] == "none"
    assert printed["megabytes"] > 0
    predictor = Predictor.load(tmp_path / "lite")
    assert predictor.metadata["source"]["export_config"]["model"] == str(run)
    crops = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = predictor(list(crops))["logits"]
    want = model(occlude(crops.astype(np.float32), "lower_half_visible")).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_usage_errors(tmp_path):
    with flagsaver.flagsaver(**NO_FLAGS):
        with pytest.raises(app.UsageError, match="--model and --output"):
            export_tflite.main(["export_tflite"])
    with flagsaver.flagsaver(**{**NO_FLAGS, "model": str(tmp_path / "none"),
                                "output": str(tmp_path / "out")}):
        with pytest.raises(FileNotFoundError, match="none"):
            export_tflite.main(["export_tflite"])
    assert not (tmp_path / "out").exists()
