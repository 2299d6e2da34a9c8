"""fer_distill/evaluation/figures.py: a run's training curves as a PNG, and the report's
figure links with their captions."""
from __future__ import annotations

import numpy as np
from matplotlib import image

from fer_distill.evaluation import figures

HISTORY = [{"epoch": e, "loss": 2.0 / e, "accuracy": 0.2 * e, "val_loss": 2.2 / e,
            "val_accuracy": 0.18 * e, "kd": 1.0 / e, "learning_rate": 0.01} for e in (1, 2, 3)]


def test_curves_are_a_png_of_every_logged_series(tmp_path):
    path = figures.write_curves(HISTORY, tmp_path / "run" / figures.CURVES_FILE, title="kd")
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert np.std(pixels[..., :3]) > 0  # something is drawn
    assert [p.name for p in path.parent.iterdir()] == [figures.CURVES_FILE]  # no temp file
    assert set(figures._series(HISTORY)) == {"loss", "accuracy", "val_loss", "val_accuracy",
                                               "kd"}


def test_no_history_no_file(tmp_path):
    assert figures.write_curves([], tmp_path / figures.CURVES_FILE) is None
    assert not list(tmp_path.iterdir())


def test_links_are_relative_to_the_report_and_captioned(tmp_path):
    run = tmp_path / "runs" / "kd"
    figures.write_curves(HISTORY, run / figures.CURVES_FILE)
    report = tmp_path / "report"
    report.mkdir()
    (report / figures.GRADCAM_FILE).write_bytes(b"png")
    found = figures.find([("demo mini kd", run), ("demo mini fuse", tmp_path / "runs" / "fuse")],
                         report)
    assert found == {"curves": [{"label": "demo mini kd",
                                 "path": "../runs/kd/training_curves.png"}],
                     "gradcam": "figure3_gradcam.png"}
    text = "\n".join(figures.markdown(found))
    assert "![Grad-CAM](figure3_gradcam.png)" in text and "zero padding" in text
    assert "- demo mini kd: [../runs/kd/training_curves.png](../runs/kd/training_curves.png)" \
        in text
    assert figures.markdown({"curves": [], "gradcam": None}) == []
