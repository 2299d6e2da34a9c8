"""The training loop of `--strategy=multi_worker`: Keras' `fit`, written with `strategy.run`.

Keras 3's `fit` cannot run under `tf.distribute.MultiWorkerMirroredStrategy` (docs/DESIGN.md,
"Several machines"), so `fit_distributed` does what `fit` does, step for step, with the
strategy's own primitives: the model's own `train_step` / `test_step` (so KDModel's and
TripletModel's losses, scaling for replicas and metrics are the ones `fit` runs), the same
callback hooks in the same order, the same epoch logs. `restore_on_chief` gives every worker
the chief's checkpoint, so only the chief reads and writes the run directory. Not applied
here: `jit_compile` (XLA) - the steps run as plain `tf.function`s.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """`dataset` of GLOBAL batches split across every replica of every worker.

    DATA sharding: each global batch is cut into one piece per replica (so the replicas
    together see exactly the batch one process would see); the pipeline reads no files that
    could be sharded instead.
    """
    options = tf.data.Options()
    data = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_distribute.auto_shard_policy = data
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def scratch_directory() -> tempfile.TemporaryDirectory:
    """Where a worker other than the chief writes what the chief writes to the run directory
    (a temporary directory of its own; a context manager that removes it)."""
    return tempfile.TemporaryDirectory(prefix="fer-distill-worker-")


def _batch_size(data) -> tf.Tensor:
    return tf.shape(tf.nest.flatten(data)[0])[0]


def fit_distributed(trainer: keras.Model, train: tf.data.Dataset, *,
                    validation: tf.data.Dataset | None, epochs: int, initial_epoch: int,
                    steps_per_epoch: int,
                    callbacks: Sequence[keras.callbacks.Callback], verbose: int = 0):
    """Trains `trainer` like `trainer.fit(train, validation_data=validation, epochs=...,
    initial_epoch=..., steps_per_epoch=..., callbacks=..., shuffle=False)`; returns its
    History. `train` yields (x, y) global batches (endless); call inside `strategy.scope()`.

    Batch logs are the replicas' mean of their running metrics (the same on every worker, so
    a NaN stop ends every worker at the same batch); epoch logs are the metrics read across
    all replicas, as `fit` reports them.
    """
    strategy = tf.distribute.get_strategy()
    _build(trainer, train.element_spec)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=trainer)

    @tf.function
    def train_step(iterator):
        outputs = strategy.run(trainer.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in outputs.items()}

    def replica_test_step(data):
        # why the guard: the last validation batch may leave a replica nothing to evaluate,
        # and a mean over no images is NaN.
        def run():
            logs = trainer.test_step(data)
            with tf.control_dependencies(tf.nest.flatten(logs)):
                return tf.constant(0)
        return tf.cond(_batch_size(data) > 0, run, lambda: tf.constant(0))

    @tf.function(reduce_retracing=True)
    def test_step(data):
        strategy.run(replica_test_step, args=(data,))

    iterator = iter(distribute(strategy, train))
    validation = None if validation is None else distribute(strategy, validation)
    trainer.stop_training = False
    callback_list.on_train_begin()
    training_logs = None
    for epoch in range(initial_epoch, epochs):
        trainer.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = train_step(iterator)
            callback_list.on_train_batch_end(step, logs)
            if trainer.stop_training:
                break
        epoch_logs = _results(trainer)
        if validation is not None:
            trainer.reset_metrics()
            callback_list.on_test_begin()
            for step, data in enumerate(validation):
                callback_list.on_test_batch_begin(step)
                test_step(data)
                callback_list.on_test_batch_end(step)
            val_logs = _results(trainer)
            callback_list.on_test_end(val_logs)
            epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if trainer.stop_training:
            break
    if epochs > 0:
        trainer.optimizer.finalize_variable_values(trainer.trainable_weights)
    callback_list.on_train_end(logs=training_logs)
    return trainer.history


def _results(trainer: keras.Model) -> dict[str, float]:
    # Read in cross-replica context: every metric variable is summed over all replicas.
    return {k: float(np.asarray(v)) for k, v in trainer.get_metrics_result().items()}


def _build(trainer: keras.Model, element_spec) -> None:
    """Creates the optimizer's and the compiled metrics' variables before the first step, in
    cross-replica context (a variable created inside `strategy.run` would be one per replica)."""
    if not trainer.optimizer.built:
        trainer.optimizer.build(trainer.trainable_variables)
    # Keras' own build from shapes alone (what `fit` runs before its first step).
    trainer._symbolic_build(data_batch=element_spec)  # pylint: disable=protected-access


# ------------------------------------------------------------------------------------------
# resume: the chief's checkpoint, sent to every worker
# ------------------------------------------------------------------------------------------

def _from_chief(strategy: tf.distribute.Strategy, value: tf.Tensor) -> tf.Tensor:
    """`value` of the replica 0 (on the chief), on every worker: a SUM in which the other
    replicas add zeros, so the result is bit-identical."""
    value = tf.convert_to_tensor(value)
    zeros = tf.zeros_like(value)
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: value if context.replica_id_in_sync_group == 0 else zeros)
    return strategy.reduce("SUM", per_replica, axis=None)


def restore_on_chief(restore: Callable[[], dict | None], *, weights_model: keras.Model,
                     optimizer, trainable_variables, stateful: dict[str, Any]) -> dict | None:
    """Restores the chief's checkpoint on every worker; returns its state.json content.

    `restore()` loads the checkpoint into the objects below and returns its state (None when
    there is none: a fresh start); only the chief's result counts. Then the weights of
    `weights_model`, the variables of `optimizer` and the states of the `stateful` callbacks
    are the chief's on every worker. Every worker must call it, inside `strategy.scope()`.
    """
    strategy = tf.distribute.get_strategy()
    # Creating a variable is a collective under MultiWorkerMirroredStrategy, so every worker
    # must create the same ones in the same order: the optimizer's, and those of a reference
    # optimizer Keras 3.15 builds at every save and load (its cache of them never hits). So
    # where the chief loads its checkpoint, the others load a scratch copy of their weights.
    if not optimizer.built:
        optimizer.build(trainable_variables)
    with scratch_directory() as scratch:
        own = Path(scratch) / "own.weights.h5"
        weights_model.save_weights(own)
        state = restore()
        if state is None:
            weights_model.load_weights(own)
    payload = np.frombuffer(json.dumps(state).encode("utf-8"), np.uint8)
    length = int(_from_chief(strategy, tf.constant(len(payload), tf.int32)))
    data = np.zeros(length, np.int32)
    data[:min(length, len(payload))] = payload[:length]
    received = np.asarray(_from_chief(strategy, tf.constant(data))).astype(np.uint8)
    state = json.loads(received.tobytes().decode("utf-8"))
    if state is None:
        return None
    for variable in [*weights_model.weights, *optimizer.variables]:
        variable.assign(_from_chief(strategy, variable.value))
    for name, callback in stateful.items():
        if name in state["callbacks"]:
            callback.set_state(state["callbacks"][name])
    return state


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns when every worker has called it (a collective of one number)."""
    _from_chief(strategy, tf.constant(0, tf.int32)).numpy()
