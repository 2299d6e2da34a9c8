"""experiments/export_onnx.py through its flags, and experiments/predict.py on its output."""
import csv
import json

import cv2
import numpy as np
from absl.testing import flagsaver

from experiments import export_onnx, predict
from tests.serving.conftest import sharp_mini, write_run

NO_FLAGS = dict(model=None, output=None, view=None, kd_student=None, triplet_student=None,
                quantization="none")


def test_export_then_predict_with_the_onnx_file(tmp_path, capsys):
    run = write_run(tmp_path / "run", sharp_mini(5), stage="student", view="lower_half_visible")
    with flagsaver.flagsaver(**{**NO_FLAGS, "model": str(run),
                                "output": str(tmp_path / "fer.onnx")}):
        export_onnx.main(["export_onnx"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["view"] == "lower_half_visible" and printed["quantization"] == "none"
    assert printed["probe_agreement"]["top1_agreement"] == 1.0
    image = np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), image)
    rows = {}
    for model in (run, tmp_path / "fer.onnx"):
        output = tmp_path / f"{model.name}.csv"
        with flagsaver.flagsaver(model=str(model), output=str(output), view=None,
                                 no_detect=True, every_nth_frame=1, batch_size=4,
                                 annotate_dir=None, progress=False):
            predict.main(["predict", str(tmp_path / "x.png")])
        capsys.readouterr()
        with open(output, newline="") as f:
            rows[model.suffix] = list(csv.DictReader(f))[0]
    keras_row, onnx_row = rows[""], rows[".onnx"]
    assert onnx_row["class"] == keras_row["class"]
    probs = [k for k in keras_row if k.startswith("prob_")]
    np.testing.assert_allclose([float(onnx_row[k]) for k in probs],
                               [float(keras_row[k]) for k in probs], atol=1e-5)
