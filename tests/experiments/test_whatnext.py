"""experiments/whatnext.py: the block a run-making binary ends with names real files, relative
paths, and commands whose flags the export and predict binaries define."""
from __future__ import annotations

import json
import re

from absl import flags

from experiments import export_savedmodel, export_tflite, predict, whatnext  # noqa: F401
from fer_distill.evaluation.figures import CURVES_FILE, GRADCAM_FILE


def test_block_for_a_reproduction(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "work"
    runs = [root / "runs" / "demo" / "mini" / stage for stage in ("student", "kd", "fuse")]
    for run in runs:
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    (runs[1] / CURVES_FILE).write_bytes(b"png")
    (root / "report").mkdir()
    (root / "report" / "table_i.md").write_text("# Table I")
    (root / "report" / GRADCAM_FILE).write_bytes(b"png")
    text = whatnext.block(runs=runs + [root / "runs" / "demo" / "mini" / "eyes"],
                          report=root / "report", logdir=root / "runs", flags_dir=root / "flags",
                          model=runs[2])
    assert "report:    work/report/table_i.md" in text
    assert "figure:    work/report/figure3_gradcam.png" in text
    assert "curves:    work/runs/demo/mini/kd/training_curves.png" in text
    assert "runs:      work/runs/demo/mini/ (student, kd, fuse:" in text  # eyes never finished
    assert "tensorboard --logdir work/runs" in text
    assert str(tmp_path) not in text  # everything under the working directory is relative
    commands = [line.strip() for line in text.splitlines() if line.startswith("  python -m")]
    assert [c.split()[2] for c in commands] == [
        "experiments.export_savedmodel", "experiments.export_tflite", "experiments.predict"]
    for command in commands:
        assert "--model=work/runs/demo/mini/fuse" in command
        for name in re.findall(r"--(\w+)=", command):
            assert name in flags.FLAGS, (command, name)


def test_block_for_one_training_run_outside_the_working_directory(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    text = whatnext.block(runs=[run], logdir=run / "logs")  # no logs/: no tensorboard line
    assert f"run:       {run} " in text and "tensorboard" not in text
    assert f"--model={run} --output=exports/run/1" in text
