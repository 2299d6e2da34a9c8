"""experiments/evaluate.py: every evaluation flagfile of Table I parses into its row's
evaluation, and the binary writes its results (with its command line) end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import evaluate as binary
from fer_distill.evaluation.paper_table import load_paper_table

FLAGS = flags.FLAGS
CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
DATASETS = {"ferplus": "FER+", "affectnet": "AffectNet"}
VIEWS = {"lower": "lower_half_visible", "upper": "upper_half_visible"}
ROWS = [(d, a, v) for d in DATASETS for a in ("vgg_f", "vgg_face") for v in VIEWS]
UNSET = dict(model=None, data=None, views=None, output=None, batch_size=None)



@pytest.mark.parametrize("dataset, arch, short", ROWS)
def test_evaluation_flagfiles_are_the_teacher_rows(dataset, arch, short):
    path = CONFIGS / f"{dataset}_{arch}_teacher_on_{short}.flags"
    text = path.read_text(encoding="utf-8")
    row = load_paper_table().find(arch, "teacher", VIEWS[short])
    assert text.startswith(f'# Table I, {DATASETS[dataset]} column, row "{row.label}" '
                           f"({row.view_symbol} ")
    assert f"{row.accuracy[dataset]:.2f}% in the paper" in text.splitlines()[0]
    assert f"python -m experiments.evaluate --flagfile=experiments/configs/{path.name}" in text
    with flagsaver.flagsaver():
        FLAGS(["evaluate", f"--flagfile={path}"])
        config = binary.config_from_flags(["evaluate", f"--flagfile={path}"])
    # the teacher run experiments/configs/<dataset>_<arch>_teacher.flags writes
    assert config.model == f"runs/{dataset}/{arch}/teacher"
    assert config.data == f"data/prepared/{dataset}"
    assert (config.views, config.split) == ((VIEWS[short],), "test")
    assert config.provenance["flagfile"] == str(path)


def test_binary_writes_results_with_its_command_line(tmp_path, monkeypatch, capsys):
    from fer_distill.data.demo import prepare_demo
    from fer_distill.models import mini

    data = tmp_path / "data"
    prepare_demo(data, sizes={"train": 16, "validation": 8, "test": 20}, seed=1)
    run = tmp_path / "teacher"
    run.mkdir()
    keras.utils.set_random_seed(0)
    mini(8, 32).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({
        "stage": "teacher", "arch": "mini", "view": "full", "data": str(data),
        "dataset": "demo"}))
    (run / "metrics.json").write_text("{}")
    argv = ["evaluate", "--flagfile=teacher_on_lower.flags"]
    monkeypatch.setattr(sys, "argv", argv)
    with flagsaver.flagsaver(**{**UNSET, "model": str(run), "views": ["lower_half_visible"],
                                "batch_size": 8}):
        binary.main(["evaluate"])
    printed = capsys.readouterr().out
    assert "teacher mini" in printed and "lower_half_visible: accuracy" in printed
    record = json.loads((run / "evaluation" / "test_lower_half_visible.json").read_text())
    assert record["provenance"] == {"argv": argv, "flagfile": "teacher_on_lower.flags"}
    from fer_distill.data.prepared import read_prepared

    assert record["count"] == read_prepared(data).count("test")
    saved = np.load(run / "predictions" / "test_lower_half_visible.npz")
    assert record["accuracy"] == float(np.mean(saved["pred"] == saved["label"]))
    assert not (run / "evaluation" / "test_full.json").exists()  # only the view asked for


def test_bad_flags_are_usage_errors(tmp_path):
    with flagsaver.flagsaver(**UNSET):
        with pytest.raises(app.UsageError, match="--model"):
            binary.main(["evaluate"])
    with flagsaver.flagsaver(**{**UNSET, "model": str(tmp_path), "views": ["sideways"]}):
        with pytest.raises(app.UsageError, match="unknown views"):
            binary.main(["evaluate"])
    with flagsaver.flagsaver(**{**UNSET, "model": str(tmp_path)}):
        with pytest.raises(app.UsageError, match="unexpected arguments"):
            binary.main(["evaluate", "extra"])
