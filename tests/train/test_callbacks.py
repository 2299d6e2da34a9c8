"""The plateau rule and its state; checkpoints that refuse another run's optimizer."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_distill.train.callbacks import EpochCheckpoint, PlateauSchedule, checkpoints, restore


class _Owner:
    """What a callback sees of a model: its optimizer."""

    def __init__(self, lr):
        self.optimizer = keras.optimizers.SGD(lr)


def _epochs(schedule, accuracies):
    rates = []
    for epoch, accuracy in enumerate(accuracies):
        schedule.on_epoch_end(epoch, {"val_accuracy": accuracy})
        rates.append(float(np.asarray(schedule.model.optimizer.learning_rate)))
    return rates


def test_rate_falls_tenfold_after_patience_epochs_without_a_better_error_down_to_the_floor():
    schedule = PlateauSchedule(patience=2, min_lr=1e-3, verbose=0)
    schedule.set_model(_Owner(0.1))
    schedule.on_train_begin()
    #            best  wait1 wait2->/10 better wait1 wait2->/10 (floor) ...
    rates = _epochs(schedule, [0.5, 0.5, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001])


def test_a_reduced_rate_is_printed_rounded_once(capsys):
    schedule = PlateauSchedule(patience=1, min_lr=1e-3, verbose=1)
    schedule.set_model(_Owner(0.01))
    schedule.on_train_begin()
    _epochs(schedule, [0.5, 0.5, 0.5, 0.5])  # float32 0.001 is 0.0009999999776482583
    printed = capsys.readouterr().out
    assert printed == ("Epoch 2: no better val_accuracy in 1 epochs; learning rate 0.01 -> "
                       "0.001\n")  # at the floor (epochs 3, 4) nothing changes, nothing printed


def test_state_survives_on_train_begin():
    first = PlateauSchedule(patience=3, min_lr=0.0, verbose=0)
    first.set_model(_Owner(0.1))
    first.on_train_begin()
    _epochs(first, [0.5, 0.4, 0.4])
    state = first.get_state()
    assert state == {"best": 0.5, "wait": 2, "cooldown_counter": 0}
    second = PlateauSchedule(patience=3, min_lr=0.0, verbose=0)
    second.set_model(_Owner(0.1))
    second.set_state(state)
    second.on_train_begin()  # Keras resets here; the saved state must win
    assert _epochs(second, [0.45]) == pytest.approx([0.01])  # third epoch without improvement


def test_restore_refuses_a_checkpoint_of_another_optimizer(tmp_path):
    from fer_distill.models import mini

    model = mini(8, 32)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    saver = EpochCheckpoint(tmp_path, weights_model=model, optimizer=optimizer, keep=1)
    saver.on_train_begin()
    saver.on_epoch_end(0, {"loss": 1.0})
    saver.on_epoch_end(1, {"loss": 0.5})
    assert [p.name for p in checkpoints(tmp_path)] == ["epoch-0002"]  # keep=1
    plain = keras.optimizers.SGD(0.1)  # no momentum: fewer variables
    with pytest.raises(ValueError, match="not a checkpoint of this run"):
        restore(checkpoints(tmp_path)[-1], weights_model=model, optimizer=plain,
                trainable_variables=model.trainable_variables)
    state = restore(checkpoints(tmp_path)[-1], weights_model=model,
                    optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                    trainable_variables=model.trainable_variables)
    assert state["epoch"] == 2 and [h["loss"] for h in state["history"]] == [1.0, 0.5]


@pytest.mark.parametrize("damaged", ["weights.weights.h5", "optimizer.npz", "state.json"])
def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one(tmp_path, damaged):
    """A resume lists only readable checkpoints, so it continues from the older kept one; the
    warning and a failed restore both name the damaged file."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    saver = EpochCheckpoint(tmp_path, weights_model=model, optimizer=optimizer, keep=2)
    saver.on_train_begin()
    saver.on_epoch_end(0, {"loss": 1.0})
    saver.on_epoch_end(1, {"loss": 0.5})
    newest = tmp_path / "epoch-0002" / damaged
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    with pytest.warns(UserWarning, match=f"checkpoint {tmp_path / 'epoch-0002'} is damaged.*"
                                         f"{damaged}"):
        found = checkpoints(tmp_path)
    assert [p.name for p in found] == ["epoch-0001"]
    state = restore(found[-1], weights_model=model,
                    optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                    trainable_variables=model.trainable_variables)
    assert state["epoch"] == 1
    if damaged != "state.json":
        with pytest.raises(ValueError, match=f"checkpoint {tmp_path / 'epoch-0002'}"):
            restore(tmp_path / "epoch-0002", weights_model=model,
                    optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                    trainable_variables=model.trainable_variables)
