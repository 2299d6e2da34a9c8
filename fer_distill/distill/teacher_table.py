"""Cached teacher outputs for a distillation step: one (N, D) table a phase, gathered by the
batch's `"index"`.

`table(width, values)` makes a phase's table (None when `values` is None: that phase has no
table, and its step runs the teacher live); `assign(owner, what, width, phases)` replaces
tables' values, with errors that name the owner and the phase; `rows(owner, what, table,
inputs, live)` gives the batch's teacher outputs, from the table or the live teacher.
"""
from __future__ import annotations

import tensorflow as tf


def table(width: int, values) -> tf.Variable | None:
    """A (None, width) float32 variable for `values` (N, width), or None without values."""
    if values is None:
        return None
    # why a tf.Variable with an open first dimension: the table is replaced (`assign`) without
    # retracing the step, and it is not a Keras weight, so checkpoints of the student never
    # carry it.
    return tf.Variable(tf.zeros([0, width], tf.float32), trainable=False,
                       shape=tf.TensorShape([None, width]))


def assign(owner: str, what: str, width: int, phases) -> None:
    """Assigns each (phase, values, variable) of `phases` whose values are given: (N, width)."""
    for phase, values, variable in phases:
        if values is None:
            continue
        if variable is None:
            raise ValueError(f"{owner}: built without {phase}_{what}, so it has no {phase} "
                             "table to replace")
        values = tf.convert_to_tensor(values, tf.float32)
        if values.shape.rank != 2 or values.shape[1] != width:
            raise ValueError(f"{owner}: teacher {what} must be (N, {width}), got {values.shape}")
        variable.assign(values)


def rows(owner: str, what: str, table, inputs, live) -> tf.Tensor:
    """The teacher's `what` for the batch: `table` gathered by `inputs["index"]`, or, without a
    table, `live(inputs["full"])` with no gradient (`live` None: no teacher to run)."""
    if table is not None:
        return tf.gather(table, inputs["index"])
    if live is None or "full" not in inputs:
        raise ValueError(
            f"{owner}: no cached teacher {what} for this phase, so the teacher must run live: "
            "give `teacher` and a 'full' view in the inputs")
    return tf.stop_gradient(live(inputs["full"]))
