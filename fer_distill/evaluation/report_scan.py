"""The report's reading of a runs tree: every run directory and every measurement in it.

`scan(root, split=...)` -> (runs, measurements, warnings); `choose(measurements, warnings)`
keeps one measurement per (dataset, arch, stage, view) (`fer_distill.evaluation.report` says
which wins); `flagfiles_in(argv)` lists a command line's flagfiles.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from fer_distill.evaluation import evaluate as evaluation
from fer_distill.evaluation.predictions import predictions_path

PROVENANCE_FORMAT = "fer_distill.provenance/1"
PROVENANCE_FILE = "provenance.json"
_SKIP_DIRS = {"checkpoints", "logs", "cache", "predictions", "fusion", "pretrained"}


@dataclasses.dataclass
class Run:
    """A run directory found under the runs root."""

    path: Path
    stage: str | None
    arch: str | None
    dataset: str | None
    view: str | None
    finished: bool
    finished_at: float
    metrics: dict | None
    flagfile: str | None


@dataclasses.dataclass
class Measurement:
    """One model's accuracy on one view of the report's split."""

    dataset: str
    arch: str
    stage: str
    view: str
    accuracy: float  # fraction in [0, 1]
    count: int
    predictions: Path | None
    run: Path | None
    run_flagfile: str | None
    flagfile: str | None
    source: str  # "metrics.json" or the evaluation results file
    time: float

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.arch, self.stage, self.view)


def flagfiles_in(argv: Iterable[str]) -> list[str]:
    """The `--flagfile` arguments of a command line (absl's `--flagfile=F` and `--flagfile F`)."""
    argv = list(argv or [])
    found = []
    for i, arg in enumerate(argv):
        for prefix in ("--flagfile=", "-flagfile="):
            if arg.startswith(prefix):
                found.append(arg[len(prefix):])
        if arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
            found.append(argv[i + 1])
    return found


def _read_json(path: Path, warnings: list[str]) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        warnings.append(f"{path}: unreadable ({error}); ignored")
        return None
    if not isinstance(value, dict):
        warnings.append(f"{path}: not a JSON object; ignored")
        return None
    return value


def _walk(root: Path):
    for directory, dirs, files in os.walk(root):
        # why: temporary (".x.partial-…") outputs and a run's bulky internals hold no results
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        yield Path(directory), set(files)


def _resolve(path: str | None, *bases: Path) -> str | None:
    """A recorded path as an existing one if it can be found from the cwd or `bases`."""
    if not path:
        return None
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return str(candidate)
    for base in bases:
        if (base / candidate).exists():
            return str(base / candidate)
    return str(candidate)


def _provenance_files(root: Path, warnings: list[str]) -> dict[str, str]:
    """{resolved run/evaluation path: flagfile} from every provenance.json under `root`."""
    mapping: dict[str, str] = {}
    for directory, files in _walk(root):
        if PROVENANCE_FILE not in files:
            continue
        data = _read_json(directory / PROVENANCE_FILE, warnings)
        if not data or data.get("format") != PROVENANCE_FORMAT:
            continue
        for entry in data.get("entries", []):
            target, flagfile = entry.get("path"), entry.get("flagfile")
            if target and flagfile:
                target = _resolve(target, directory)
                mapping[str(Path(target).resolve())] = _resolve(flagfile, directory)
    return mapping


def _run_flagfile(run_dir: Path, provenance: Mapping[str, str], warnings) -> str | None:
    known = provenance.get(str(run_dir.resolve()))
    if known:
        return known
    environment = run_dir / "environment.json"
    if environment.is_file():
        data = _read_json(environment, warnings) or {}
        found = flagfiles_in(data.get("argv", []))
        if found:
            return " ".join(found)
    return None


def scan(root: str | os.PathLike, *, split: str = "test") -> tuple[list[Run], list[Measurement],
                                                                  list[str]]:
    """Every run directory and every measurement on `split` under `root`, and warnings."""
    root = Path(root)
    warnings: list[str] = []
    provenance = _provenance_files(root, warnings)
    runs: dict[Path, Run] = {}
    evaluations: list[tuple[Path, dict]] = []
    for directory, files in _walk(root):
        if evaluation.CONFIG_FILE in files:
            config = _read_json(directory / evaluation.CONFIG_FILE, warnings)
            if config and "stage" in config and "arch" in config:
                metrics_file = directory / evaluation.METRICS_FILE
                metrics = (_read_json(metrics_file, warnings)
                           if evaluation.METRICS_FILE in files else None)
                source = metrics or config
                runs[directory.resolve()] = Run(
                    path=directory, stage=source.get("stage", config.get("stage")),
                    arch=source.get("arch", config.get("arch")),
                    dataset=source.get("dataset", config.get("dataset")),
                    view=source.get("view", config.get("view")), finished=metrics is not None,
                    finished_at=metrics_file.stat().st_mtime if metrics else 0.0,
                    metrics=metrics, flagfile=_run_flagfile(directory, provenance, warnings))
        if directory.name == evaluation.EVALUATION_DIR:
            for name in sorted(files):
                if name.endswith(".json"):
                    path = directory / name
                    try:
                        record = evaluation.load_results(path)
                    except ValueError as error:
                        warnings.append(f"{error}; ignored")
                        continue
                    evaluations.append((path, record))

    measurements: list[Measurement] = []
    for run in runs.values():
        if not run.finished:
            continue
        test = (run.metrics or {}).get(split)
        if not isinstance(test, dict) or "accuracy" not in test:
            warnings.append(f"{run.path}: {evaluation.METRICS_FILE} has no {split!r} accuracy")
            continue
        if None in (run.stage, run.arch, run.dataset, run.view):
            warnings.append(f"{run.path}: stage/arch/dataset/view not all recorded; ignored")
            continue
        predictions = predictions_path(run.path, split, run.view)
        measurements.append(Measurement(
            dataset=run.dataset, arch=run.arch, stage=run.stage, view=run.view,
            accuracy=float(test["accuracy"]), count=int(test.get("count", 0)),
            predictions=predictions if predictions.is_file() else None, run=run.path,
            run_flagfile=run.flagfile, flagfile=run.flagfile, source=evaluation.METRICS_FILE,
            time=run.finished_at))

    for path, record in evaluations:
        if record["split"] != split:
            continue
        model = record["model"]
        output = path.parent.parent
        run_dir = _evaluated_run(model, output)
        run = None
        if run_dir is not None:
            run = runs.get(run_dir.resolve()) if run_dir.exists() else None
            if run is not None and not run.finished:
                warnings.append(f"{path}: evaluates {run_dir}, which is now an unfinished run "
                                "(re-run after the evaluation?); ignored")
                continue
            if run is not None and path.stat().st_mtime < run.finished_at:
                warnings.append(f"{path}: older than {run_dir}/{evaluation.METRICS_FILE} (the run "
                                "was re-run after this evaluation); ignored; evaluate again")
                continue
        stage, arch = model.get("stage"), model.get("arch")
        if not stage or not arch:
            warnings.append(f"{path}: the model evaluated ({model.get('path')}) records no "
                            "stage/arch, so it has no row in Table I; ignored")
            continue
        npz = output / record["files"]["predictions"]
        flagfile = provenance.get(str(path.resolve())) or " ".join(
            flagfiles_in(record.get("provenance", {}).get("argv", []))) or record.get(
            "provenance", {}).get("flagfile") or None
        run_flagfile = run.flagfile if run is not None else None
        measurements.append(Measurement(
            dataset=record["dataset"], arch=arch, stage=stage, view=record["view"],
            accuracy=float(record["accuracy"]), count=int(record["count"]),
            predictions=npz if npz.is_file() else None,
            run=run_dir if run_dir is not None else Path(model["path"]),
            run_flagfile=run_flagfile, flagfile=flagfile or run_flagfile, source=str(path),
            time=path.stat().st_mtime))
    return sorted(runs.values(), key=lambda r: str(r.path)), measurements, warnings


def _evaluated_run(model: Mapping[str, Any], output: Path) -> Path | None:
    """The run directory an evaluation record names: the directory it was written into when
    that is the run (the default, and it survives moving the tree), else the recorded path
    (absolute first, then as given, relative to the working directory)."""
    if not model.get("run_dir"):
        return None
    if (output / evaluation.CONFIG_FILE).is_file():
        return output
    for candidate in (model.get("run_dir_absolute"), model["run_dir"]):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path(model["run_dir"])


def choose(measurements: list[Measurement], warnings: list[str]) -> dict[tuple, Measurement]:
    """One measurement per (dataset, arch, stage, view): an evaluation over the metrics.json of
    the same run, and the newest run when several runs claim the cell."""
    by_key: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        by_key.setdefault(m.key, []).append(m)
    chosen = {}
    for key, candidates in by_key.items():
        per_run: dict[str, Measurement] = {}
        for m in sorted(candidates, key=lambda m: (m.source == evaluation.METRICS_FILE, -m.time)):
            per_run.setdefault(str(Path(m.run).resolve()) if m.run else m.source, m)
        ordered = sorted(per_run.values(), key=lambda m: -m.time)
        chosen[key] = ordered[0]
        if len(ordered) > 1:
            others = ", ".join(str(m.run) for m in ordered[1:])
            warnings.append(f"{'/'.join(key)}: several runs; using the newest, {ordered[0].run} "
                            f"(also found: {others})")
    return chosen


# ------------------------------------------------------------------------------------------
# building the table
# ------------------------------------------------------------------------------------------
