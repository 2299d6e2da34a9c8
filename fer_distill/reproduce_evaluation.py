"""The reproduction's evaluate and figure stages (`fer_distill.reproduce`), for any scenario.

`evaluate_runs(reproduction, stages)` tests every finished run of the reproduction's scenario on its own
view, and the teacher on full faces and on both of the scenario's views (the paper: ○, ◐, ◑),
writing an `experiments.evaluate` flagfile for each teacher row; `draw_figure(reproduction)`
draws the paper's Figure 3 (Grad-CAM of the fused model, else the KD student, in the run's own
view) into the report directory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fer_distill import rundir
from fer_distill.atomic import write_text
from fer_distill.data.prepared import read_prepared
from fer_distill.evaluation.evaluate import (EvaluateConfig, default_views, evaluate, open_model,
                                             results_path)
from fer_distill.explain.gradcam import explain, figure
from fer_distill.serving.servable import load_servable

# The paper's teacher rows keep their flagfile names (experiments/configs/*_teacher_on_*.flags).
PAPER_EVALUATION_NAMES = {"lower_half_visible": "lower", "upper_half_visible": "upper"}
SYMBOLS = {"lower_half_visible": "◐", "upper_half_visible": "◑"}


def teacher_views(scenario) -> tuple[str, ...]:
    """The views a scenario tests its teacher on: full, then the students' and the other."""
    return ("full", scenario.student_view, scenario.other_view)


def evaluate_runs(reproduction, stages, optional=()) -> dict[str, Any]:
    """The evaluate stage over the training `stages` (see the module docstring); returns the
    stage's record. A stage in `optional` without a run is skipped silently (ours, absent unless
    asked for)."""
    config, layout = reproduction.config, reproduction.layout
    done, skipped, missing = [], [], []
    for stage in stages:
        run_dir = layout.run(stage)
        metrics = run_dir / rundir.METRICS
        if not metrics.is_file():
            if stage not in optional:
                missing.append(stage)
            continue
        evaluable = open_model(run_dir)
        views = (teacher_views(reproduction.scenario) if stage == "teacher"
                 else default_views(evaluable))
        todo = [v for v in views
                if not (results_path(run_dir, "test", v).is_file()
                        and results_path(run_dir, "test", v).stat().st_mtime
                        >= metrics.stat().st_mtime)]
        skipped += [f"{stage}/{v}" for v in views if v not in todo]
        for view in todo:
            flagfile = _evaluation_flagfile(reproduction, stage, view, run_dir)
            evaluate(EvaluateConfig(
                model=str(run_dir), data=str(reproduction.data_dir), views=(view,),
                batch_size=config.eval_batch_size or _batch_size(run_dir),
                provenance={"by": "fer_distill.reproduce",
                            "flagfile": None if flagfile is None else str(flagfile)}),
                evaluable=evaluable, verbose=bool(config.verbose))
            done.append(f"{stage}/{view}")
    if missing:
        reproduction._say(f"   not evaluated (no finished run): {', '.join(missing)}")
    return {"status": "done" if done else "finished earlier", "evaluated": done,
            "already_evaluated": skipped, "no_run": missing}


def _evaluation_flagfile(reproduction, stage: str, view: str, run_dir: Path) -> Path | None:
    """The flagfile of a table row that is an evaluation (the teacher on an occluded view)."""
    if stage != "teacher" or view == "full":
        return None
    config, scenario = reproduction.config, reproduction.scenario
    name = PAPER_EVALUATION_NAMES.get(view, view) if not scenario.ours else view
    flagfile = reproduction.layout.flagfile(f"teacher_on_{name}")
    table = (f"Scenario {scenario.name!r} (ours, not the paper's)" if scenario.ours
             else "Table I")
    symbol = f" ({SYMBOLS[view]})" if view in SYMBOLS else ""
    write_text(flagfile, "\n".join([
        f"# {table}, {config.dataset} {config.arch}: the teacher tested on {view}{symbol}.",
        "# Written by fer_distill.reproduce. Re-run with:",
        f"#   python -m experiments.evaluate --flagfile={flagfile}",
        f"--model={run_dir}", f"--data={reproduction.data_dir}", f"--views={view}",
        "--split=test", ""]))
    return flagfile


def _batch_size(run_dir: Path) -> int:
    try:
        config = json.loads((run_dir / rundir.CONFIG).read_text(encoding="utf-8"))
        return int(config.get("eval_batch_size") or config.get("batch_size") or 64)
    except (OSError, ValueError, TypeError):
        return 64


def draw_figure(reproduction) -> dict[str, Any]:
    """The paper's Figure 3 for the best model here (the fused one, else the KD student):
    Grad-CAM on the first test face of each class, in the run's view. An extra: a failure is
    printed and recorded, and the report is still written."""
    config, layout = reproduction.config, reproduction.layout
    for stage in ("fuse", "kd"):
        if rundir.is_finished(layout.run(stage)):
            break
    else:
        return {"status": "no finished fuse or kd run"}
    output = layout.figure
    try:
        prepared = read_prepared(reproduction.data_dir)
        labels = np.asarray(prepared.labels("test"))
        rows = [int(np.flatnonzero(labels == k)[0])
                for k in range(len(prepared.class_names)) if np.any(labels == k)]
        images = [np.asarray(prepared.images("test")[i]) for i in rows]
        servable = load_servable(layout.run(stage))  # the view its run recorded
        explanation = explain(servable, images)
        figure(explanation, output, prepared.class_names, labels[rows],
               title=f"Grad-CAM of the {stage} model ({config.dataset}, {config.arch}, view "
                     f"{servable.view}), first test face of each class\n"
                     "heat on the black part: the network sees black pixels as input too; on "
                     "the borders: the convolutions' zero padding")
    except Exception as error:  # noqa: BLE001  (an extra must not cost the table)
        reproduction.out(f"!! figure: Grad-CAM failed ({type(error).__name__}: {error}); the "
                         "report is written without it")
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    reproduction._say(f"   Figure 3 (Grad-CAM of the {stage} model): {output}")
    return {"status": "done", "model": stage, "path": str(output)}
