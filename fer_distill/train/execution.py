"""Where and in what precision a run computes: dtype policy and `tf.distribute` strategy.

`resolve_policy(mixed_precision, policy="auto")` (`mixed_float16` on a GPU, `mixed_bfloat16` on
a CPU with bfloat16 units), `dtype_policy(name)` (a context), `make_strategy("default" |
"mirrored" | "multi_worker")` (one per process), `is_chief`, `environment` (what
environment.json records), `progress`. A config's batch size is the GLOBAL batch.
Why: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np
import tensorflow as tf

import fer_distill


def progress(verbose: int) -> int:
    """Keras' `verbose` for a run's `verbose`: progress bars (1) only on a terminal; in a log
    (stdout not a TTY) one line per epoch or call (2) instead of escape codes."""
    if verbose == 1 and not sys.stdout.isatty():
        return 2
    return int(verbose)


def resolve_policy(mixed_precision: bool, policy: str = "auto") -> str:
    """The Keras dtype policy: float32, or the mixed `policy` ("auto": DESIGN.md, "Training")."""
    if not mixed_precision:
        return "float32"
    if policy == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    if policy in ("mixed_float16", "mixed_bfloat16"):
        return policy
    raise ValueError(f"mixed precision policy must be auto, mixed_float16 or mixed_bfloat16, "
                     f"got {policy!r}")


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Sets Keras' global dtype policy inside the block and restores the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (docs/DESIGN.md, "Training")."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy 'multi_worker' needs the TF_CONFIG environment variable on every "
                "worker, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
                "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
        return _multi_worker_strategy(os.environ["TF_CONFIG"])
    raise ValueError(f"unknown strategy {name!r}; expected default, mirrored or multi_worker")


_MULTI_WORKER: dict[str, tf.distribute.Strategy] = {}


def _multi_worker_strategy(tf_config: str) -> tf.distribute.Strategy:
    # why one per process: a second MultiWorkerMirroredStrategy re-enables collective ops and
    # breaks the first one's (TensorFlow supports one cluster per process), yet a process may
    # run several stages (reproduce, tests).
    if _MULTI_WORKER and tf_config not in _MULTI_WORKER:
        raise ValueError("TF_CONFIG changed within this process; a process joins one cluster "
                         "only: start a new process for another cluster")
    if tf_config not in _MULTI_WORKER:
        _MULTI_WORKER[tf_config] = tf.distribute.MultiWorkerMirroredStrategy()
    return _MULTI_WORKER[tf_config]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes the run directory (always, without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def chief_in_tf_config() -> bool:
    """`is_chief` read from TF_CONFIG alone, without joining the cluster (True without one)."""
    try:
        spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
    task = spec.get("task") or {}
    if not task.get("type") or task["type"] == "chief":
        return True
    has_chief = "chief" in (spec.get("cluster") or {})
    return task["type"] == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def git_state(directory) -> dict[str, Any]:
    """The git commit (and whether the tree has uncommitted changes) of the checkout holding
    `directory`; None values when it is not in a git checkout or git is missing."""
    def git(*args):
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def environment(*, seed: int, policy: str, strategy) -> dict[str, Any]:
    """What RUN/environment.json records about this process."""
    return {
        "package": "fer-distill",
        "version": fer_distill.__version__,
        **git_state(Path(fer_distill.__file__).resolve().parent),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "dtype_policy": policy,
        "seed": int(seed),
        "argv": list(sys.argv),
        "pid": os.getpid(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
