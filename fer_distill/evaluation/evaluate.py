"""Evaluate any trained model on any view of a prepared split, and keep every per-image answer.

    evaluate(EvaluateConfig(model=RUN_OR_FILE, views=..., split="test"))

`open_model` takes a finished run directory (a `fuse` run included) or a bare `.keras` / `.mat`
file (then data and view must be given). Writes, atomically and the results JSON last:

    OUT/predictions/<split>_<view>.npz            index, label, pred, probs (+ scores: fusion)
    OUT/evaluation/<split>_<view>_confusion.csv   rows = true class, columns = predicted (+ .png)
    OUT/evaluation/<split>_<view>.json            accuracy, per-class accuracy, confusion, ...

Saved predictions that fit are reused. Why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fer_distill import rundir
from fer_distill.atomic import read_json, write_json
from fer_distill.data.occlusion import VIEWS, resolve_view, view_name
from fer_distill.data.prepared import SPLITS, read_prepared
from fer_distill.distill.fusion import CONFIG_FILE as SVM_CONFIG
from fer_distill.distill.fusion import FusionSVM
from fer_distill.evaluation import metrics as metrics_lib
from fer_distill.evaluation.predictions import (load_predictions, predict_split,
                                                predictions_path, save_predictions,
                                                score_predictions)
from fer_distill.models import architecture_of, embedding_layer, load_model
from fer_distill.models.outputs import split_outputs

FORMAT = "fer_distill.evaluation/1"
EVALUATION_DIR = "evaluation"
CLASSIFIER = "classifier"
FUSION = "fusion"

# The run-directory files this module reads: the names the trainer writes (rundir).
CONFIG_FILE, METRICS_FILE, MODEL_FILE = rundir.CONFIG, rundir.METRICS, rundir.MODEL
FUSION_DIR = rundir.FUSION
# Keys a fuse run's config.json may use for its two students: the trainer's (TrainConfig's
# kd_student / triplet_student) first, then the ones the serving code also accepts.
STUDENT_KEYS = (("kd_student", "triplet_student"), ("kd_model", "triplet_model"),
                ("kd", "triplet"))


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation: a model on one split of a prepared data set, in one or more views.

    model: a run directory, a fuse run directory, or a .keras/.mat file.
    data: the prepared data set; default: the run's config.json["data"].
    split: "test" (Table I), "validation" or "train".
    views: the views to evaluate on; default: the run's own view, and all three for a teacher
      (Table I tests the teachers on ○, ◐ and ◑). A bare model file needs them given.
    output: where to write; default: the run directory (a bare model file needs one).
    batch_size: images per forward pass.
    reuse_predictions: reuse a matching saved predictions file instead of re-running the model.
    provenance: recorded as given in each results JSON (the binary puts its command line and
      flagfile here, which the report shows beside each row).
    """

    model: str
    data: str | None = None
    split: str = "test"
    views: tuple[str, ...] | None = None
    output: str | None = None
    batch_size: int = 64
    reuse_predictions: bool = True
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        if not self.model:
            raise ValueError("evaluate: the model (a run directory or a .keras/.mat file) is "
                             "required")
        if self.split not in SPLITS:
            raise ValueError(f"evaluate: split must be one of {SPLITS}, got {self.split!r}")
        if self.views is not None:
            if not self.views:
                raise ValueError("evaluate: views is empty; give at least one of "
                                 f"{VIEWS}, or leave it unset for the run's own view")
            for view in self.views:
                try:
                    resolve_view(view)
                except ValueError as error:
                    raise ValueError(f"evaluate: unknown views [{view!r}]: {error}") from None
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"evaluate: batch_size must be a positive integer, got "
                             f"{self.batch_size!r}")


@dataclasses.dataclass
class Evaluable:
    """A model opened for evaluation (see `open_model`).

    kind: "classifier" (one network, logits) or "fusion" (the SVM on [E_KD ; E_triplet]).
    models: the network(s): (classifier,) or (kd student, triplet student).
    svm: the FusionSVM of a fusion, else None.
    path: what was given; run_dir: the run directory, when there is one.
    stage, arch, dataset, view, data: what the run records (None when unknown); `view` is the
      view the model was trained for.
    files: the files the model was loaded from (predictions older than any of them are stale).
    """

    kind: str
    models: tuple
    svm: Any
    path: Path
    run_dir: Path | None
    stage: str | None
    arch: str | None
    dataset: str | None
    view: str | None
    data: str | None
    class_names: tuple[str, ...] | None
    files: tuple[Path, ...]

    def describe(self) -> dict[str, Any]:
        """The JSON record of what was evaluated."""
        return {
            "path": str(self.path),
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "run_dir_absolute": None if self.run_dir is None else str(self.run_dir.resolve()),
            "kind": self.kind,
            "stage": self.stage,
            "arch": self.arch,
            "dataset": self.dataset,
            "trained_view": self.view,
            "files": [str(f) for f in self.files],
        }


def results_path(output: str | os.PathLike, split: str, view: str) -> Path:
    """OUT/evaluation/<split>_<view>.json."""
    return Path(output) / EVALUATION_DIR / f"{split}_{view_name(view)}.json"


def confusion_paths(output: str | os.PathLike, split: str, view: str) -> tuple[Path, Path]:
    """(CSV, PNG) of the confusion matrix of one evaluation."""
    base = Path(output) / EVALUATION_DIR / f"{split}_{view_name(view)}_confusion"
    return base.with_suffix(".csv"), base.with_suffix(".png")


def _load_network(path: Path):
    kwargs = {"compile": False} if path.suffix == ".keras" else {}
    return load_model(path, **kwargs)


def open_model(path: str | os.PathLike) -> Evaluable:
    """Opens a run directory, a fuse run directory or a model file for evaluation."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"evaluate: model {path} not found")
    if path.is_file():
        model = _load_network(path)
        run_dir = path.parent if (path.parent / CONFIG_FILE).is_file() else None
        config = rundir.read_config(run_dir) if run_dir is not None else {}
        if run_dir is not None and path.name == MODEL_FILE:
            _require_finished(run_dir)
        return Evaluable(
            kind=CLASSIFIER, models=(model,), svm=None, path=path, run_dir=run_dir,
            stage=config.get("stage"), arch=config.get("arch") or _architecture(model),
            dataset=config.get("dataset"), view=config.get("view"), data=config.get("data"),
            class_names=_names(config), files=(path,))
    config = rundir.read_config(path)
    _require_finished(path)
    common = dict(path=path, run_dir=path, stage=config.get("stage"), arch=config.get("arch"),
                  dataset=config.get("dataset"), view=config.get("view"),
                  data=config.get("data"), class_names=_names(config))
    if config.get("stage") == "fuse" or (path / FUSION_DIR).is_dir():
        svm = FusionSVM.load(path / FUSION_DIR)
        references = _student_references(config, path)
        files = [rundir.student_model_file(str(ref), path, key) for key, ref in references]
        students = tuple(_load_network(f) for f in files)
        for (key, _), student, dim in zip(references, students, svm.dims_):
            width = int(embedding_layer(student).output.shape[-1])
            if width != dim:
                raise ValueError(f"{path}: the fusion SVM was trained on embeddings of width "
                                 f"{dim} for {key}, but that model gives {width}")
        return Evaluable(kind=FUSION, models=students, svm=svm,
                         files=(path / FUSION_DIR / SVM_CONFIG, *files), **common)
    model_file = path / MODEL_FILE
    if not model_file.is_file():
        raise FileNotFoundError(f"{path}: no {MODEL_FILE} although {METRICS_FILE} exists; the "
                                "run directory is damaged")
    return Evaluable(kind=CLASSIFIER, models=(_load_network(model_file),), svm=None,
                     files=(model_file,), **common)


def _architecture(model) -> str | None:
    """The fer_distill architecture a model records, or None for any other Keras classifier
    (which can be evaluated too; it has no row in Table I)."""
    try:
        return architecture_of(model)
    except ValueError:
        return None


def _names(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    names = config.get("class_names")
    return tuple(names) if names else None


def _require_finished(run_dir: Path) -> None:
    if not rundir.is_finished(run_dir):
        raise ValueError(
            f"{run_dir}: the run has not finished (no {METRICS_FILE}), so its model may be a "
            "half-trained one; finish it first (experiments.train --resume), or evaluate a "
            "model file explicitly")


def _student_references(config: Mapping[str, Any], run_dir: Path):
    for kd_key, triplet_key in STUDENT_KEYS:
        if config.get(kd_key) and config.get(triplet_key):
            return ((kd_key, config[kd_key]), (triplet_key, config[triplet_key]))
    raise ValueError(f"{run_dir / CONFIG_FILE}: a fuse run must name its two students "
                     f"({STUDENT_KEYS[0][0]!r} and {STUDENT_KEYS[0][1]!r}); found keys "
                     f"{sorted(config)}")


def default_views(evaluable: Evaluable) -> tuple[str, ...]:
    """The views Table I tests a model on: all three for a teacher, else its own view."""
    if evaluable.stage == "teacher":
        return VIEWS
    if evaluable.view:
        return (evaluable.view,)
    raise ValueError(f"evaluate: {evaluable.path} records no view; give the views to evaluate "
                     "on (--views=lower_half_visible for a student, full for a teacher)")


def _embeddings(model, prepared, split: str, view: str, batch_size: int) -> np.ndarray:
    return split_outputs(model, prepared, split, view, batch_size=batch_size,
                         embeddings=True)["embedding"]


def predict(evaluable: Evaluable, prepared, split: str, view: str,
            batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image predictions of the model on every image of `split` in `view` (row order)."""
    if evaluable.kind == CLASSIFIER:
        return predict_split(evaluable.models[0], prepared, split, view, batch_size=batch_size)
    kd, triplet = (_embeddings(m, prepared, split, view, batch_size) for m in evaluable.models)
    return score_predictions(evaluable.svm.class_scores(kd, triplet, len(prepared.class_names)),
                             prepared, split)


def _reusable(path: Path, prepared, split: str, newer_than: Sequence[Path]):
    """The saved predictions at `path` if they cover exactly the split's rows, with its labels,
    and were written after every model file; else None."""
    if not path.is_file():
        return None
    mtime = path.stat().st_mtime
    if any(f.exists() and f.stat().st_mtime > mtime for f in newer_than):
        return None
    try:
        saved = load_predictions(path)
    except (ValueError, OSError):
        return None
    n = prepared.count(split)
    if (len(saved["index"]) != n or not np.array_equal(saved["index"], np.arange(n))
            or not np.array_equal(saved["label"], prepared.labels(split))
            or saved["probs"].shape[1] != len(prepared.class_names)):
        return None
    return saved


def _check_data(evaluable: Evaluable, prepared) -> None:
    if evaluable.class_names is not None and tuple(prepared.class_names) != evaluable.class_names:
        raise ValueError(f"{evaluable.path} was trained on classes {list(evaluable.class_names)}; "
                         f"data set {prepared.path} has {list(prepared.class_names)}")
    if evaluable.dataset is not None and evaluable.dataset != prepared.dataset:
        # why not an error: testing a FER+ model on AffectNet is a legitimate experiment; the
        # results record both names, and the report places rows by the data set tested on.
        print(f"note: {evaluable.path} was trained on {evaluable.dataset!r}, evaluated on "
              f"{prepared.dataset!r} ({prepared.path})")


def _data_path(config: EvaluateConfig, evaluable: Evaluable) -> Path:
    if config.data:
        return Path(config.data)
    if not evaluable.data:
        raise ValueError(f"evaluate: {evaluable.path} records no data set; give the prepared "
                         "data set (--data=DIR)")
    recorded = Path(evaluable.data)
    if recorded.is_dir() or recorded.is_absolute() or evaluable.run_dir is None:
        return recorded
    raise FileNotFoundError(
        f"evaluate: the data set recorded by {evaluable.run_dir} ({recorded}, relative to the "
        f"directory training ran in) is not found from {Path.cwd()}; give --data=DIR")


def evaluate(config: EvaluateConfig, *, evaluable: Evaluable | None = None,
             verbose: bool = True) -> dict[str, dict[str, Any]]:
    """Runs one evaluation (module docstring); returns {view: results dict}.

    `evaluable` may be passed when the caller has already opened `config.model`.
    """
    config.check()
    evaluable = evaluable or open_model(config.model)
    views = tuple(config.views) if config.views else default_views(evaluable)
    if config.output:
        output = Path(config.output)
    elif evaluable.run_dir is not None:
        output = evaluable.run_dir
    else:
        raise ValueError(f"evaluate: {evaluable.path} is not in a run directory; give an "
                         "output directory (--output=DIR)")
    data = _data_path(config, evaluable)
    prepared = read_prepared(data)
    _check_data(evaluable, prepared)
    out: dict[str, dict[str, Any]] = {}
    for view in views:
        npz = predictions_path(output, config.split, view)
        saved = (_reusable(npz, prepared, config.split, evaluable.files)
                 if config.reuse_predictions else None)
        predictions = saved if saved is not None else predict(
            evaluable, prepared, config.split, view, config.batch_size)
        if saved is None:
            save_predictions(npz, predictions)
        results = summarize(predictions, prepared.class_names)
        csv_path, png_path = confusion_paths(output, config.split, view)
        metrics_lib.write_confusion_csv(csv_path, results["confusion_matrix"],
                                        prepared.class_names)
        metrics_lib.plot_confusion_matrix(
            png_path, results["confusion_matrix"], prepared.class_names,
            title=f"{evaluable.stage or evaluable.path.name} {evaluable.arch or ''} on "
                  f"{prepared.dataset} {config.split}, {view}: "
                  f"{100 * results['accuracy']:.2f}%")
        record = {
            "format": FORMAT,
            "dataset": prepared.dataset,
            "data": str(data),
            "split": config.split,
            "view": view,
            "model": evaluable.describe(),
            **results,
            "files": {"predictions": _relative(npz, output),
                      "confusion_csv": _relative(csv_path, output),
                      "confusion_png": _relative(png_path, output)},
            "predictions_reused": saved is not None,
            "provenance": dict(config.provenance),
            "evaluated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        }
        write_json(results_path(output, config.split, view), record)  # last: complete
        out[view] = record
        if verbose:
            print(f"{evaluable.stage or 'model'} {evaluable.arch or ''} ({evaluable.path}) on "
                  f"{prepared.dataset} {config.split}, {view}: accuracy "
                  f"{100 * results['accuracy']:.2f}% ({results['count']} images)"
                  f"{', saved predictions reused' if saved is not None else ''}; "
                  f"{results_path(output, config.split, view)}")
    return out


def summarize(predictions: Mapping[str, np.ndarray], class_names: Sequence[str]) -> dict:
    """Accuracy, per-class accuracy, counts and confusion matrix of saved predictions."""
    return metrics_lib.summary(np.asarray(predictions["label"]), np.asarray(predictions["pred"]),
                               tuple(class_names))


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads one results JSON written by `evaluate`, checking its format."""
    path = Path(path)
    record = read_json(path, what="evaluation results")
    if record.get("format") != FORMAT:
        raise ValueError(f"{path}: not an evaluation results file (format "
                         f"{record.get('format')!r}, "
                         f"expected {FORMAT!r})")
    for key in ("dataset", "split", "view", "accuracy", "count", "model", "files"):
        if key not in record:
            raise ValueError(f"{path}: key {key!r} is missing")
    return record


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)
