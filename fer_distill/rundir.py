"""The run directory: its file names, how to read a run, and when it may be reused.

The ground floor (beside fer_distill.atomic): training writes run directories; evaluation,
serving, explain and reproduce read them, all through the names here (`CONFIG`, `METRICS`,
`MODEL`, ...) and `read_config`, `is_run`, `is_finished`, `finished_metrics`, `check_reuse`.
`writing(config)` holds the run's lock (fer_distill.lock) from the reuse decision to
metrics.json, written last. The checks take a TrainConfig without importing it.
Layout, lock and reuse rules: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from fer_distill import lock
from fer_distill.atomic import read_json

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
METRICS = "metrics.json"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
CACHE = "cache"
FUSION = "fusion"
PREDICTIONS = "predictions"
EVALUATION = "evaluation"
# The settings that name files: compared as files, not as strings.
PATH_FIELDS = ("data", "init", "teacher", "kd_student", "triplet_student")


def student_model_file(reference: str, run_dir, key: str) -> Path:
    """The model file of a fuse run's student (`key` = "kd_student" / "triplet_student").

    `reference` is what the fuse run's config.json records: a run directory (its model.keras)
    or a model file, stored as given, so relative to the directory training ran in. That is
    tried first; then relative to the fuse run's directory and its parent, so a tree of runs
    moved as a whole still opens. Evaluation, export and prediction all resolve students here.
    """
    run_dir, reference_path = Path(run_dir), Path(reference)
    candidates = [reference_path]
    if not reference_path.is_absolute():
        candidates += [run_dir / reference_path, run_dir.parent / reference_path]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / MODEL).is_file():
            return candidate / MODEL
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{run_dir / CONFIG}: {key}={reference!r} is neither a run directory with {MODEL} nor "
        f"a model file (looked at {', '.join(map(str, candidates))})")


def writing(config):
    """A context manager holding the lock on `config.workdir` for this process.

    A second writer gets `fer_distill.lock.Locked` naming the holder; a lock left by a killed
    process is taken over. A multi-worker process other than the chief writes nothing into the
    run directory (its workers may share one --workdir), so it takes no lock.
    """
    if config.strategy == "multi_worker" and not _chief_by_tf_config():
        return contextlib.nullcontext()
    return lock.locked(config.workdir, what="run directory")


def _chief_by_tf_config() -> bool:
    """TensorFlow's rule for the chief, read from TF_CONFIG without starting TensorFlow."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task, cluster = tf_config.get("task") or {}, tf_config.get("cluster") or {}
    except (ValueError, AttributeError):
        return True  # make_strategy reports a bad TF_CONFIG
    if not task.get("type") or task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def read_config(run_dir) -> dict[str, Any]:
    """RUN/config.json as a dict; a directory without one is a FileNotFoundError naming it."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {CONFIG}")
    return read_json(path, what="run config")


def recorded_config(config, run_dir):
    """RUN/config.json read back as an object of `config`'s class (a TrainConfig)."""
    return type(config).from_dict(read_config(run_dir))


def is_run(directory) -> bool:
    """Whether `directory` holds a run (its config.json), finished or not."""
    return (Path(directory) / CONFIG).is_file()


def is_finished(directory) -> bool:
    """Whether `directory` holds a finished run (its metrics.json, written last)."""
    return (Path(directory) / METRICS).is_file()


def finished_metrics(workdir) -> dict | None:
    """metrics.json of a finished run in `workdir`, or None; a damaged one is a ValueError
    naming it (--overwrite trains the run again)."""
    path = Path(workdir) / METRICS
    if not path.is_file():
        return None
    try:
        return read_json(path, what="finished run's metrics")
    except ValueError as error:
        raise ValueError(f"{error}; its presence marks a finished run: pass --overwrite to "
                         "train it again") from None


def check_finished(config) -> None:
    """A finished run in `config.workdir` may only be reported for the settings it was trained
    with: other settings are a ValueError listing them (unless `overwrite`)."""
    if config.overwrite or finished_metrics(config.workdir) is None:
        return
    differences = setting_differences(config, recorded_config(config, config.workdir))
    if differences:
        raise ValueError(f"{config.workdir} holds a finished run with other settings "
                         f"({_listed(differences)}); pass --overwrite to train it again with "
                         "these, or choose another --workdir")


def setting_differences(config, recorded) -> dict:
    """{field: (now, before)} where `config` differs from a run's `recorded` config.

    Settings `config` leaves unset (None, such as a derived image size) do not count; nor does
    `workdir` (the run directory itself, wherever it is now); paths count only when they name
    different files (relative or absolute, a trailing slash: the same file is the same).
    """
    differences = config.differences(recorded.resolved())
    differences.pop("workdir", None)
    return {k: v for k, v in differences.items()
            if v[0] is not None and not (k in PATH_FIELDS and _same_file(*v))}


def _same_file(a, b) -> bool:
    return isinstance(a, str) and isinstance(b, str) and \
        os.path.realpath(a) == os.path.realpath(b)


def _listed(differences: dict) -> str:
    return "; ".join(f"{k}: {old!r} before, {new!r} now"
                     for k, (new, old) in sorted(differences.items()))


def check_reuse(config) -> tuple[str, Any]:
    """Decides what to do with `config.workdir` before anything is loaded or written.

    Returns ("new", None) (absent or empty), ("resume", the recorded config) for an unfinished
    run to continue, or ("overwrite", None) for a run to delete once the checks have passed.
    Raises ValueError when the directory holds something that must not be touched, an
    unfinished run without `resume`/`overwrite`, or a run whose settings differ from `config`
    (settings `config` leaves unset, such as a derived image size, are taken from the record).
    """
    workdir = Path(config.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"workdir {workdir} exists and is not a directory")
    if not workdir.exists() or not any(workdir.iterdir()):
        return "new", None
    is_run = (workdir / CONFIG).is_file()
    if config.overwrite:
        if not is_run:
            raise ValueError(f"workdir {workdir} is not empty and holds no {CONFIG}: it is not "
                             "a run directory, so --overwrite refuses to delete it")
        return "overwrite", None
    if not is_run:
        raise ValueError(f"workdir {workdir} is not empty and is not a run directory (no "
                         f"{CONFIG}); choose another --workdir")
    if not config.resume:
        raise ValueError(f"workdir {workdir} holds an unfinished run; pass --resume to continue "
                         "it or --overwrite to start again")
    previous = recorded_config(config, workdir).resolved()
    differences = setting_differences(config, previous)
    if differences:
        raise ValueError(f"cannot resume {workdir} with other settings "
                         f"({_listed(differences)}); resume with the same flags or pass "
                         "--overwrite")
    # The paths as given now: they name the recorded files from this working directory, and
    # the run directory may have moved.
    current = {k: getattr(config, k) for k in ("workdir", *PATH_FIELDS)
               if getattr(config, k) is not None}
    return "resume", dataclasses.replace(previous, **current)


def clear(workdir) -> None:
    """Deletes a run directory (check_reuse decided it is one)."""
    shutil.rmtree(workdir)
