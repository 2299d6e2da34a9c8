"""What makes a run resumable and trustworthy: the learning-rate rule, per-epoch checkpoints
with everything a resumed run needs, and a NaN stop.

`PlateauSchedule` (the paper's divide-by-10 rule, its state checkpointed), `EpochCheckpoint`
(checkpoints/epoch-NNNN/{weights.weights.h5, optimizer.npz, state.json}, the newest `keep`
kept), `NaNStop`; `checkpoints`, `damage` and `restore` read them back.
Why not Keras' `BackupAndRestore` alone: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import json
import math
import re
import shutil
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import h5py
import keras
import numpy as np

from fer_distill.atomic import atomic_path, write_json

CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d{4,})$")
WEIGHTS_FILE = "weights.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"


class PlateauSchedule(keras.callbacks.ReduceLROnPlateau):
    """The paper's rule: learning rate / 10 when the validation error has not improved for
    `patience` epochs, never below `min_lr`; with a state that checkpoints carry.

    The validation error is 1 − `val_accuracy`, so "improved" means a strictly higher
    validation accuracy (min_delta 0). Keras' `ReduceLROnPlateau` resets `best`/`wait` in
    `on_train_begin`; a state given to `set_state` is applied after that reset.
    """

    def __init__(self, *, patience: int = 10, factor: float = 0.1, min_lr: float = 0.0,
                 monitor: str = "val_accuracy", verbose: int = 1):
        # why verbose=0 below: Keras prints the new rate unrounded (0.0009999999776482583)
        super().__init__(monitor=monitor, mode="max", factor=factor, patience=patience,
                         min_delta=0.0, min_lr=min_lr, verbose=0)
        self.say = bool(verbose)
        self._pending: dict[str, Any] | None = None

    def get_state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": int(self.wait),
                "cooldown_counter": int(self.cooldown_counter)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._pending = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            self.best = self._pending["best"]
            self.wait = int(self._pending["wait"])
            self.cooldown_counter = int(self._pending["cooldown_counter"])
            self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        before = float(np.asarray(self.model.optimizer.learning_rate))
        super().on_epoch_end(epoch, logs)
        after = float(np.asarray(self.model.optimizer.learning_rate))
        shown = f"{before:.3g}", f"{after:.3g}"
        if self.say and shown[0] != shown[1]:  # why rounded: float32 rates (1e-5 at the floor)
            print(f"Epoch {epoch + 1}: no better {self.monitor} in {self.patience} epochs; "
                  f"learning rate {shown[0]} -> {shown[1]}", flush=True)


class NonFiniteLoss(FloatingPointError):
    """Training produced a NaN or infinite loss; the run stopped without writing results."""


class NaNStop(keras.callbacks.Callback):
    """Stops the run with a clear message at the first NaN/inf loss (batch or epoch).

    Unlike Keras' `TerminateOnNaN`, which ends `fit` quietly (and would let the caller write a
    model.keras and metrics.json for a broken run), this raises `NonFiniteLoss`.
    """

    def __init__(self, describe: str = ""):
        super().__init__()
        self.describe = describe
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _check(self, logs, where):
        for key in ("loss",):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteLoss(
                    f"{self.describe}: the training loss became {float(value)} at epoch "
                    f"{self.epoch + 1}, {where}. The run stopped: no model.keras and no "
                    "metrics.json were written (the checkpoints hold the last good epoch). "
                    "Lower the learning rate, or check the input data and the init weights.")

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, "end of epoch")


def _json_number(value):
    value = float(np.asarray(value))
    return value if math.isfinite(value) else str(value)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the student, the optimizer and the run state after every epoch (docs/DESIGN.md,
    "Training").

    Args:
      directory: RUN/checkpoints.
      weights_model: the network whose weights are saved (the student, not a wrapper that also
        holds a teacher).
      optimizer: the optimizer being trained (saved variable by variable).
      stateful: {name: callback with get_state()/set_state()} saved beside them.
      keep: how many of the newest checkpoints stay on disk.
      history: per-epoch logs of earlier sessions of this run (extended here).
      train_seconds: training time of earlier sessions.
      enabled: False on non-chief workers of a multi-worker run (nothing is written).
    """

    def __init__(self, directory, *, weights_model: keras.Model, optimizer,
                 stateful: Mapping[str, Any] | None = None, keep: int = 2,
                 history: list | None = None, train_seconds: float = 0.0,
                 enabled: bool = True):
        super().__init__()
        self.directory = Path(directory)
        self.weights_model = weights_model
        self.optimizer = optimizer
        self.stateful = dict(stateful or {})
        self.keep = int(keep)
        self.history = list(history or [])
        self.train_seconds = float(train_seconds)
        self.enabled = enabled
        self._started = None

    def on_train_begin(self, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.train_seconds += now - self._started
        self._started = now
        entry = {"epoch": epoch + 1}
        entry.update({k: _json_number(v) for k, v in (logs or {}).items()})
        self.history.append(entry)
        if not self.enabled:
            return
        state = {
            "epoch": epoch + 1,
            "learning_rate": _json_number(self.optimizer.learning_rate),
            "callbacks": {name: cb.get_state() for name, cb in self.stateful.items()},
            "history": self.history,
            "train_seconds": self.train_seconds,
        }
        with atomic_path(self.directory / f"epoch-{epoch + 1:04d}", directory=True) as tmp:
            self.weights_model.save_weights(tmp / WEIGHTS_FILE)
            variables = self.optimizer.variables
            np.savez(tmp / OPTIMIZER_FILE,
                     **{f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)})
            write_json(tmp / STATE_FILE, {**state, "optimizer_variables": [
                {"path": v.path, "shape": list(v.shape)} for v in variables]})
        for old in checkpoints(self.directory)[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)


def checkpoints(directory) -> list[Path]:
    """Complete, readable checkpoint directories under `directory`, oldest first.

    A damaged one (a file truncated or garbled after it was written) is left out with a
    warning naming it, so a resume falls back to the older kept checkpoint.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))
             and (p / STATE_FILE).is_file()]
    readable = []
    for _, path in sorted(found):
        problem = damage(path)
        if problem:
            warnings.warn(f"checkpoint {path} is damaged and is skipped ({problem})",
                          stacklevel=2)
        else:
            readable.append(path)
    return readable


def damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint's files, or None. Cheap: the JSON is parsed, the h5 and
    npz containers are opened (both check their own length, so a truncation shows), no weights
    are read."""
    checkpoint = Path(checkpoint)
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "epoch" not in state:
            return f"{checkpoint / STATE_FILE} holds no epoch"
    except (OSError, ValueError) as error:
        return f"{checkpoint / STATE_FILE}: {error}"
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE):
        path = checkpoint / name
        try:
            if name == WEIGHTS_FILE:
                with h5py.File(path, "r"):
                    pass
            else:
                with np.load(path, allow_pickle=False) as z:
                    z.files  # noqa: B018  (reads the zip's directory)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            return f"{path}: {error}"
    return None


def restore(checkpoint: Path, *, weights_model: keras.Model, optimizer, trainable_variables,
            stateful: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Loads a checkpoint written by EpochCheckpoint; returns its state.json content.

    The optimizer is built on `trainable_variables` (the list `fit` will update, in the same
    order) before its variables are assigned, and every variable's shape is checked, so a
    checkpoint of another network or optimizer fails loudly instead of loading garbage.
    """
    checkpoint = Path(checkpoint)
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        weights_model.load_weights(checkpoint / WEIGHTS_FILE)
        if not optimizer.built:
            optimizer.build(trainable_variables)
        variables = optimizer.variables
        with np.load(checkpoint / OPTIMIZER_FILE, allow_pickle=False) as z:
            values = [z[f"v{i:05d}"] for i in range(len(z.files))]
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"checkpoint {checkpoint} cannot be read ({error}); delete it to "
                         "resume from the one before") from None
    except ValueError as error:
        raise ValueError(f"checkpoint {checkpoint}: {error}") from None
    if len(values) != len(variables):
        raise ValueError(f"{checkpoint}: holds {len(values)} optimizer variables, this run's "
                         f"optimizer has {len(variables)}: not a checkpoint of this run")
    for variable, value, saved in zip(variables, values, state["optimizer_variables"]):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{checkpoint}: optimizer variable {saved['path']!r} has shape "
                             f"{value.shape}, this run's {variable.path!r} has "
                             f"{tuple(variable.shape)}")
        variable.assign(value)
    for name, callback in (stateful or {}).items():
        if name in state["callbacks"]:
            callback.set_state(state["callbacks"][name])
    return state
