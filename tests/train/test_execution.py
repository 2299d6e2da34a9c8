"""Precision policy and strategy choices (the two-replica run is in test_strategy.py)."""
from __future__ import annotations

import sys

import keras
import pytest
import tensorflow as tf

from fer_distill.train.execution import (dtype_policy, is_chief, make_strategy, progress,
                                         resolve_policy)


def test_policy_resolution():
    assert resolve_policy(False, "mixed_float16") == "float32"
    assert resolve_policy(True, "mixed_float16") == "mixed_float16"
    on_this_machine = "mixed_float16" if tf.config.list_physical_devices("GPU") \
        else "mixed_bfloat16"
    assert resolve_policy(True, "auto") == on_this_machine
    with pytest.raises(ValueError, match="mixed precision policy"):
        resolve_policy(True, "float16")


def test_dtype_policy_is_restored_even_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with dtype_policy("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == before


def test_strategies(monkeypatch):
    default = make_strategy("default")
    assert default.num_replicas_in_sync == 1 and is_chief(default)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("tpu")


@pytest.mark.parametrize("task, cluster, chief", [
    (None, None, True),
    ({"type": "worker", "index": 0}, {"worker": ["a:1", "b:1"]}, True),
    ({"type": "worker", "index": 1}, {"worker": ["a:1", "b:1"]}, False),
    ({"type": "worker", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, False),
    ({"type": "chief", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, True),
])
def test_the_chief_is_read_from_tf_config(monkeypatch, task, cluster, chief):
    import json

    from fer_distill.train.execution import chief_in_tf_config

    if task is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert chief_in_tf_config() is chief


def test_progress_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert [progress(v) for v in (0, 1, 2)] == [0, 2, 2]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert [progress(v) for v in (0, 1, 2)] == [0, 1, 2]
