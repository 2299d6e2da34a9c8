"""experiments/report.py end to end through its flags: reads a finished run, prints the table
and writes it, with the McNemar variant it was asked for."""
from __future__ import annotations

import json

import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import report as binary
from fer_distill.evaluation.predictions import save_predictions

FLAGS = flags.FLAGS
UNSET = dict(runs=None, output=None, paper_table=None)



def write_run(root, stage, correct):
    """A finished run in the contract's format: 10 test images, right on the first `correct`."""
    run = root / stage
    view = "full" if stage == "teacher" else "lower_half_visible"
    labels = np.arange(10, dtype=np.int32) % 8
    pred = np.where(np.arange(10) < correct, labels, (labels + 1) % 8).astype(np.int32)
    save_predictions(run / "predictions" / f"test_{view}.npz", {
        "index": np.arange(10), "label": labels, "pred": pred,
        "probs": np.eye(8, dtype=np.float32)[pred]})
    (run / "config.json").write_text(json.dumps({"stage": stage, "arch": "vgg_face",
                                                 "dataset": "ferplus", "view": view}))
    (run / "metrics.json").write_text(json.dumps({
        "stage": stage, "arch": "vgg_face", "dataset": "ferplus", "view": view,
        "test": {"accuracy": correct / 10, "count": 10}}))


def test_prints_and_writes_the_table(tmp_path, capsys):
    write_run(tmp_path / "runs", "teacher", 9)
    write_run(tmp_path / "runs", "student", 5)
    write_run(tmp_path / "runs", "kd", 7)
    with flagsaver.flagsaver(**{**UNSET, "runs": str(tmp_path / "runs"),
                                "output": str(tmp_path / "out"), "mcnemar": "chi2"}):
        binary.main(["report"])
    printed = capsys.readouterr().out
    assert "| Teacher VGG-face | ○ | 59.03 | not run |  | 84.79 | 90.00 | +5.21 |" in printed
    assert "| VGG-face (standard T-S) | ◐ | 49.75 | not run |  | 82.37 | 70.00 | -12.37 |" \
        in printed
    assert "chi-square with continuity correction" in printed
    written = json.loads((tmp_path / "out" / "table_i.json").read_text())
    assert written["mcnemar"]["method"].startswith("chi-square")
    assert (tmp_path / "out" / "table_i.md").read_text() in printed
    assert (tmp_path / "out" / "table_i.csv").read_text().startswith("table,row_key,")


def test_bad_flags_are_usage_errors(tmp_path):
    with flagsaver.flagsaver(**UNSET):
        with pytest.raises(app.UsageError, match="--runs"):
            binary.main(["report"])
    with flagsaver.flagsaver(**{**UNSET, "runs": str(tmp_path / "missing")}):
        with pytest.raises(app.UsageError, match="not found"):
            binary.main(["report"])
