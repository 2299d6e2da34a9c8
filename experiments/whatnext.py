"""The "what you got" block a binary that made runs prints last: where the report, the figures
and the runs are, the TensorBoard command, and export and predict commands to paste.

    print(whatnext.block(runs=[RUN, ...], report=REPORT_DIR, logdir=RUNS_ROOT))

Paths are shown relative to the working directory when they lie under it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from fer_distill.evaluation.figures import CURVES_FILE, GRADCAM_FILE
from fer_distill.evaluation.report import CSV_FILE, JSON_FILE, MARKDOWN_FILE

PHOTOS = "path/to/photos_or_videos/"  # predict's input: the user's own files


def shown(path: str | os.PathLike) -> str:
    """`path` relative to the working directory if it lies under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def commands(run: str | os.PathLike, name: str) -> list[str]:
    """Export (SavedModel, TFLite) and predict commands for one run directory."""
    model = shown(run)
    return [f"python -m experiments.export_savedmodel --model={model} --output=exports/{name}/1",
            f"python -m experiments.export_tflite --model={model} --output=exports/{name}_tflite",
            f"python -m experiments.predict --model={model} --output={name}_predictions.csv "
            f"{PHOTOS}"]


def block(*, runs: Sequence[str | os.PathLike], report: str | os.PathLike | None = None,
          logdir: str | os.PathLike | None = None, flags_dir: str | os.PathLike | None = None,
          model: str | os.PathLike | None = None) -> str:
    """The block: `runs` made (or reused), `report` directory, TensorBoard `logdir`,
    `flags_dir` of per-stage flagfiles, and the run to show the commands for (`model`,
    default the last of `runs`)."""
    runs = [Path(r) for r in runs if (Path(r) / "metrics.json").is_file()]
    lines = ["", "== what you got =="]
    if report is not None and (Path(report) / MARKDOWN_FILE).is_file():
        report = Path(report)
        lines.append(f"report:    {shown(report / MARKDOWN_FILE)} (also {CSV_FILE}, "
                     f"{JSON_FILE} beside it: which run and flagfile gave each number)")
        if (report / GRADCAM_FILE).is_file():
            lines.append(f"figure:    {shown(report / GRADCAM_FILE)} (Grad-CAM, the paper's "
                         "Figure 3; the report explains it)")
    curves = [r / CURVES_FILE for r in runs if (r / CURVES_FILE).is_file()]
    if len(curves) == 1:
        lines.append(f"curves:    {shown(curves[0])}")
    elif curves:
        lines.append(f"curves:    {CURVES_FILE} in each run directory, e.g. {shown(curves[0])}")
    parents = {run.parent for run in runs}
    if len(runs) > 1 and len(parents) == 1:
        lines.append(f"runs:      {shown(parents.pop())}/ ({', '.join(r.name for r in runs)}: "
                     "each with metrics.json, config.json, its model)")
    for run in runs if len(runs) == 1 or len(parents) > 1 else ():
        lines.append(f"run:       {shown(run)} (metrics.json, config.json, its model)")
    if flags_dir is not None:
        lines.append(f"flagfiles: {shown(flags_dir)} (re-run one stage with python -m "
                     "experiments.train --flagfile=...)")
    if logdir is not None and Path(logdir).is_dir():
        lines.append(f"watch:     tensorboard --logdir {shown(logdir)}")
    chosen = Path(model) if model is not None else (runs[-1] if runs else None)
    if chosen is not None and (chosen / "metrics.json").is_file():
        lines += [f"next, with {shown(chosen)} (any run directory works the same; predict "
                  f"reads your own images and videos, {PHOTOS}):"]
        lines += [f"  {command}" for command in commands(chosen, chosen.name)]
    return "\n".join(lines)
