"""What to serve: a trained classifier or the fused SVM, with the view it expects.

`load_servable(path, view=None)` turns a run directory, a fused run or a bare `.keras` / `.mat`
file into a `Servable`: the Keras network(s), the occlusion view the network was trained for
(from the run's `config.json["view"]`; a bare file needs `view=`), the class names, and for the
fused model the SVM's linear map. Export, prediction and Grad-CAM start from it.
Why the view is part of it: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_distill import rundir
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.occlusion import resolve_view
from fer_distill.distill.fusion import FusionSVM
from fer_distill.models import embedding_layer, load_model

log = logging.getLogger(__name__)

# The run-directory files read here: the names the trainer writes (rundir).
CONFIG_FILE, MODEL_FILE = rundir.CONFIG, rundir.MODEL
FUSION_DIR, METRICS_FILE = rundir.FUSION, rundir.METRICS

CLASSIFIER = "classifier"
FUSION = "fusion"

# Keys of a `fuse` run's config.json naming its two students (a model file or a run directory
# each). docs/DESIGN.md says only "the two student model paths in config.json"; training
# (fer_distill/train/config.py) writes `kd_student` and `triplet_student`.
STUDENT_KEYS = (("kd_student", "triplet_student"),)


@dataclass
class Servable:
    """A model ready to be wrapped for serving.

    kind: "classifier" (one network: logits → softmax) or "fusion" (two students' embeddings
      concatenated [E_KD ; E_triplet], then the linear SVM).
    models: the Keras network(s), input RGB 0-255 of their own input size, output fc8 logits;
      (kd, triplet) for a fusion.
    view: the occlusion view applied to every input (a VIEWS name, a mask shape name or a mask
      file path, as `fer_distill.data.occlusion.resolve_view` accepts).
    linear_map: for a fusion, (W (D_kd + D_triplet, C), b (C,)) float32 with the SVM's decision
      = [E_KD ; E_triplet] @ W + b, columns in class order (`FusionSVM.linear_map`).
    source: provenance, recorded in the exported model's metadata.
    """

    kind: str
    models: tuple
    view: str
    class_names: tuple[str, ...] = CLASS_NAMES
    linear_map: tuple[np.ndarray, np.ndarray] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in (CLASSIFIER, FUSION):
            raise ValueError(f"Servable kind must be {CLASSIFIER!r} or {FUSION!r}, got "
                             f"{self.kind!r}")
        self.models = tuple(self.models)
        self.class_names = tuple(self.class_names)
        expected = 1 if self.kind == CLASSIFIER else 2
        if len(self.models) != expected:
            raise ValueError(f"a {self.kind} servable needs {expected} model(s), got "
                             f"{len(self.models)}")
        if (self.kind == FUSION) != (self.linear_map is not None):
            raise ValueError("a fusion servable needs its linear_map; a classifier has none")
        resolve_view(self.view)  # fails early, naming the view, when it is unknown
        for model in self.models:
            shape = tuple(model.input.shape)
            if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3]:
                raise ValueError(f"model {model.name!r}: input must be (None, H, W, 3) with a "
                                 f"fixed size, got {shape}")
            width = int(model.output.shape[-1])
            if self.kind == CLASSIFIER and width != len(self.class_names):
                raise ValueError(
                    f"model {model.name!r} has {width} logits but there are "
                    f"{len(self.class_names)} classes {self.class_names}")
        if self.kind == FUSION:
            weights, bias = self.linear_map
            if weights.shape[1] != len(self.class_names) or bias.shape != (weights.shape[1],):
                raise ValueError(f"fusion linear map W {weights.shape}, b {bias.shape} does not "
                                 f"give {len(self.class_names)} class scores")

    @property
    def input_sizes(self) -> tuple[tuple[int, int], ...]:
        """(H, W) each network takes."""
        return tuple((int(m.input.shape[1]), int(m.input.shape[2])) for m in self.models)


def _read_config(run: Path) -> dict[str, Any]:
    return rundir.read_config(run)


def _choose_view(view: str | None, recorded: str | None, where: str) -> str:
    if view is None:
        if not recorded:
            raise ValueError(
                f"{where}: no occlusion view is recorded for this model; pass one (view=... / "
                "--view=): lower_half_visible for students, kd, triplet and fuse runs, full for "
                "teachers, upper_half_visible for the eyes baseline")
        return str(recorded)
    if recorded and view != recorded:
        log.warning("%s was trained for view %r; using %r as asked", where, recorded, view)
    return str(view)


def _class_names(config: dict[str, Any]) -> tuple[str, ...]:
    names = config.get("class_names")
    return tuple(names) if names else CLASS_NAMES


def _warn_unfinished(run: Path) -> None:
    if not (run / METRICS_FILE).is_file():
        log.warning("%s has no %s: the run may not have finished", run, METRICS_FILE)


def _load_keras(path: Path):
    # why compile=False: serving needs the network, not the optimiser or loss it trained with
    return load_model(path, compile=False) if path.suffix == ".keras" else load_model(path)


def _student_references(config: dict[str, Any], run: Path) -> tuple[tuple[str, str], ...]:
    for kd_key, triplet_key in STUDENT_KEYS:
        if config.get(kd_key) and config.get(triplet_key):
            return ((kd_key, config[kd_key]), (triplet_key, config[triplet_key]))
    raise ValueError(
        f"{run / CONFIG_FILE}: a fuse run must name its two students; expected keys "
        f"{STUDENT_KEYS[0][0]!r} and {STUDENT_KEYS[0][1]!r} (run directories or .keras files), "
        f"found keys {sorted(config)}; or pass the students explicitly (kd_student=, "
        "triplet_student=)")


def load_fusion(fusion_dir: str | os.PathLike, kd_student, triplet_student, *, view: str,
                class_names: Sequence[str] = CLASS_NAMES,
                source: dict[str, Any] | None = None) -> Servable:
    """The fused model from a saved `FusionSVM` directory and the two students (Keras models or
    paths to .keras files)."""
    svm = FusionSVM.load(fusion_dir)
    models = []
    for which, model in (("kd", kd_student), ("triplet", triplet_student)):
        if isinstance(model, (str, os.PathLike)):
            model = _load_keras(Path(model))
        models.append(model)
    for which, model, dim in zip(("kd", "triplet"), models, svm.dims_):
        width = int(embedding_layer(model).output.shape[-1])
        if width != dim:
            raise ValueError(
                f"{fusion_dir}: the SVM was trained on {which} embeddings of width {dim}, but "
                f"the {which} model {model.name!r} gives {width}")
    weights, bias = svm.linear_map(num_classes=len(class_names))
    return Servable(FUSION, tuple(models), view, tuple(class_names), (weights, bias),
                    {**(source or {}), "fusion": str(fusion_dir)})


def load_servable(path: str | os.PathLike, *, view: str | None = None,
                  kd_student: str | os.PathLike | None = None,
                  triplet_student: str | os.PathLike | None = None) -> Servable:
    """A `Servable` from a run directory, a `.keras`/`.mat` file, or a `fuse` run.

    - a run directory: `RUN/model.keras`, view from `RUN/config.json`;
    - a `fuse` run (config stage "fuse", or a `RUN/fusion/` directory), or the fusion directory
      itself: the saved FusionSVM and the two students named in config.json (see
      `STUDENT_KEYS`), or given as `kd_student`/`triplet_student`;
    - a model file: if `config.json` lies beside it (RUN/model.keras), its view; else `view` is
      required.
    `view` overrides the recorded view.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir() and (path / "saved_model.pb").is_file():
        raise ValueError(f"{path} is a SavedModel; give the run directory or .keras file it "
                         "was exported from")
    if path.is_dir() and (path / "fusion_svm.json").is_file():  # the fusion directory itself
        run_config = path.parent / CONFIG_FILE
        recorded = _read_config(path.parent).get("view") if run_config.is_file() else None
        if kd_student is not None and triplet_student is not None:
            return load_fusion(path, kd_student, triplet_student,
                               view=_choose_view(view, recorded, str(path)),
                               source={"path": str(path.resolve())})
        if not run_config.is_file():
            raise ValueError(f"{path}: a fusion directory outside its run needs the two "
                             "students (kd_student=, triplet_student=)")
        path = path.parent  # RUN/fusion given: read the run
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a run directory: it has no {CONFIG_FILE}")
        config = _read_config(path)
        chosen = _choose_view(view, config.get("view"), str(path))
        source = {"path": str(path.resolve()),
                  **{k: config[k] for k in ("stage", "arch", "dataset") if k in config}}
        if config.get("stage") == "fuse" or (path / FUSION_DIR).is_dir():
            if not (path / FUSION_DIR).is_dir():
                raise FileNotFoundError(f"{path}: a fuse run must hold {FUSION_DIR}/ (the saved "
                                        "FusionSVM); has the run finished?")
            _warn_unfinished(path)
            if kd_student is None or triplet_student is None:
                (kd_key, kd_ref), (tr_key, tr_ref) = _student_references(config, path)
                kd_student = kd_student or rundir.student_model_file(str(kd_ref), path,
                                                                     kd_key)
                triplet_student = triplet_student or rundir.student_model_file(
                    str(tr_ref), path, tr_key)
            return load_fusion(path / FUSION_DIR, kd_student, triplet_student, view=chosen,
                               class_names=_class_names(config),
                               source={**source, "kd_student": str(kd_student),
                                       "triplet_student": str(triplet_student)})
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(f"{path}: no {MODEL_FILE}; has the run finished?")
        _warn_unfinished(path)
        return Servable(CLASSIFIER, (_load_keras(model_path),), chosen, _class_names(config),
                        source=source)
    beside = path.parent / CONFIG_FILE
    config = _read_config(path.parent) if beside.is_file() else {}
    chosen = _choose_view(view, config.get("view"), str(path))
    source = {"path": str(path.resolve()),
              **{k: config[k] for k in ("stage", "arch", "dataset") if k in config}}
    return Servable(CLASSIFIER, (_load_keras(path),), chosen, _class_names(config),
                    source=source)
