"""`run(config)`: one stage of the paper into one run directory (fer_distill.rundir).

Under the run directory's lock: a finished run is reported, not re-run; every check that can
fail runs before training; then config.json and environment.json, the teacher cache, `fit`
with a checkpoint per epoch, model.keras, predictions, and metrics.json LAST.
The order of work and why: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from fer_distill import rundir
from fer_distill.atomic import atomic_path, write_json
from fer_distill.data.pipeline import make_dataset, steps_per_epoch
from fer_distill.data.prepared import read_prepared
from fer_distill.distill.fusion import FusionSVM
from fer_distill.distill.triplet_model import embed
from fer_distill.evaluation import figures
from fer_distill.evaluation import metrics as metrics_lib
from fer_distill.evaluation.predictions import (predict_split, predictions_path, save_predictions,
                                                score_predictions)
from fer_distill.evaluation.transfer import transfer_of_predictions
from fer_distill.models import embedding_model
from fer_distill.train import callbacks as cb
from fer_distill.train import distillers
from fer_distill.train import loop
from fer_distill.train import networks as nets
from fer_distill.train.config import (DISTILLATION_STAGES, FINE_TUNING_STAGES,
                                      RUN_CONTROL_FIELDS, TrainConfig)
from fer_distill.train.execution import (chief_in_tf_config, dtype_policy, environment,
                                         is_chief, make_strategy, progress, resolve_policy)

EVAL_SPLITS = ("validation", "test")
# A stream of random numbers of its own for the `max_train_examples` subset.
SUBSET_STREAM = 0x5AB5E7


def run(config: TrainConfig, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """`_run` holding the run directory's lock (a second writer fails, naming this process)."""
    resolved = config.resolved()
    with rundir.writing(resolved):
        rundir.check_finished(resolved)
        return _run(config, callbacks=callbacks)


def _run(config: TrainConfig, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Runs `config`'s stage into `config.workdir`; returns the content of metrics.json.

    `callbacks` are added after the package's own (tests use one to interrupt a run).
    Raises FileNotFoundError / ValueError before any training for bad inputs,
    `fer_distill.train.callbacks.NonFiniteLoss` when the loss becomes NaN.
    """
    config = config.resolved()
    if config.deterministic:
        # Same machine, same versions, same numbers: ops pick deterministic kernels (the
        # seeds are set below). Process-wide and irreversible, as TensorFlow makes it.
        tf.config.experimental.enable_op_determinism()
    done = None if config.overwrite else rundir.finished_metrics(config.workdir)
    if done is not None and not config.overwrite:
        print(f"{config.workdir}: finished run ({rundir.METRICS} exists, test accuracy "
              f"{done.get('test', {}).get('accuracy')}); not re-run - pass overwrite "
              "(--overwrite) to run it again")
        return done
    decision, previous = rundir.check_reuse(config)
    if previous is not None:  # resume exactly the recorded run; only run control may change
        control = {k: getattr(config, k) for k in RUN_CONTROL_FIELDS}
        config = dataclasses.replace(previous, **control)
    cluster = config.strategy == "multi_worker" and config.stage != "fuse"
    if config.strategy == "multi_worker" and not cluster and not chief_in_tf_config():
        print(f"{config.workdir}: the fuse stage (no training) runs on the chief only; this "
              "worker has nothing to do")
        return {"stage": "fuse", "chief_only": True, "test": {"accuracy": None},
                "validation": {"accuracy": None}}
    prepared = _open_data(config)
    strategy = make_strategy("default" if config.strategy == "multi_worker" and not cluster
                             else config.strategy)
    policy = resolve_policy(config.mixed_precision, config.mixed_precision_policy)
    chief = is_chief(strategy)
    workdir = Path(config.workdir)
    with dtype_policy(policy):
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            loaded = _networks(config, prepared, policy)
        config = dataclasses.replace(config, image_size=loaded["image_size"])
        if config.stage != "fuse":
            _check_batches(config, prepared, strategy)
        if chief:
            if decision == "overwrite":
                rundir.clear(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            write_json(workdir / rundir.CONFIG, {
                **config.to_dict(), "dataset": prepared.dataset,
                "class_names": list(prepared.class_names), "dtype_policy": policy,
                "num_train_examples": len(_training_rows(config, prepared)),
                "init_info": loaded.get("init_info")})
            process = environment(seed=config.seed, policy=policy, strategy=strategy)
            _write_environment(workdir, process, resumed=decision == "resume")
        if config.stage == "fuse":
            return _fuse(config, prepared, loaded, workdir, chief)
        with strategy.scope():
            student, summary = _fit(config, prepared, loaded, policy, workdir, chief,
                                    decision == "resume", callbacks)
        if chief:  # before metrics.json, which stays the last file a run writes
            figures.write_curves(summary["history"], workdir / figures.CURVES_FILE,
                                 title=f"{config.stage} ({config.arch}) on {prepared.dataset}")
        metrics = _finish(config, prepared, student, summary, workdir, chief,
                          teacher=loaded.get("teacher"))
        if cluster:  # every worker returns once the chief's results are on disk
            loop.barrier(strategy)
        return metrics


# ------------------------------------------------------------------------------------------
# checks and loading
# ------------------------------------------------------------------------------------------

def _open_data(config: TrainConfig):
    prepared = read_prepared(config.data)
    if prepared.manifest_only:
        raise ValueError(
            f"prepared data set {prepared.path} is manifest-only (prepared with "
            "--manifest_only): it lists images but holds none, so it cannot train a network; "
            "prepare it again without --manifest_only")
    for split in ("train", "validation", "test"):
        if prepared.count(split) == 0:
            raise ValueError(f"prepared data set {prepared.path}: split {split!r} is empty")
    prepared.images("train")  # a missing or wrong images.npy fails here, not mid-run
    return prepared


def _training_rows(config: TrainConfig, prepared) -> np.ndarray:
    """The training rows in use: all, or a seeded random subset of `max_train_examples`."""
    n = prepared.count("train")
    if config.max_train_examples is None or config.max_train_examples >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([int(config.seed), SUBSET_STREAM])
    return np.sort(rng.choice(n, size=int(config.max_train_examples), replace=False))


def _networks(config: TrainConfig, prepared, policy: str) -> dict[str, Any]:
    """Loads and checks every network the stage needs (nothing is trained or written)."""
    classes = prepared.class_names
    arch = config.arch
    out: dict[str, Any] = {}
    if config.stage == "fuse":
        kd = nets.load_network(config.kd_student, role="KD student", arch=arch)
        triplet = nets.load_network(config.triplet_student, role="triplet student", arch=arch)
        for role, model, path in (("KD student", kd, config.kd_student),
                                  ("triplet student", triplet, config.triplet_student)):
            nets.check_classes(model, path, role=role, class_names=classes)
        size = nets.input_size(kd)
        nets.check_input_size(triplet, config.triplet_student, role="triplet student",
                              image_size=size, source=f"the KD student {config.kd_student}")
        if config.image_size is not None:
            nets.check_input_size(kd, config.kd_student, role="KD student",
                                  image_size=config.image_size)
        return {"kd": kd, "triplet": triplet, "image_size": size}

    if config.stage in DISTILLATION_STAGES:
        # The distillation stages start from the student baseline: its head is kept.
        student = nets.load_network(config.init, role="init (student)", arch=arch)
        nets.check_classes(student, config.init, role="init (student)", class_names=classes)
        info = {"init": config.init, "new_head": False}
        teacher = nets.load_network(config.teacher, role="teacher", arch=arch)
        nets.check_classes(teacher, config.teacher, role="teacher", class_names=classes)
        nets.check_input_size(teacher, config.teacher, role="teacher",
                              image_size=nets.input_size(student),
                              source=f"the init (student) file {config.init}")
        out["teacher"] = nets.under_policy(teacher, policy)
    else:
        student, info = nets.initial_network(
            config.init, arch=arch, num_classes=len(classes), image_size=config.image_size,
            head=config.head, seed=config.seed)
        if config.init not in (None, "", nets.SCRATCH):
            nets.check_classes(student, config.init, role="init", class_names=classes)
    size = nets.input_size(student)
    if config.image_size is not None:
        nets.check_input_size(student, config.init, role="init", image_size=config.image_size)
    out.update(student=nets.under_policy(student, policy), init_info=info, image_size=size)
    return out


def _check_batches(config: TrainConfig, prepared, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must be divisible "
                         f"by the {replicas} replicas of strategy {config.strategy!r}")
    rows = len(_training_rows(config, prepared))
    try:
        steps_per_epoch(rows, config.batch_size)
    except ValueError as error:
        raise ValueError(f"prepared data set {prepared.path}: {error}") from None


def _write_environment(workdir: Path, environment: dict, *, resumed: bool) -> None:
    path = workdir / rundir.ENVIRONMENT
    sessions = []
    if resumed and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        sessions = old.pop("earlier_sessions", []) + [old]
    write_json(path, {**environment, "earlier_sessions": sessions})


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------

def _stage_inputs(config: TrainConfig):
    """(pipeline views, occlusion, function batch -> (x, y)) for the stage's trainer."""
    stage = config.stage
    if stage == "teacher":
        return ("full",), "lower_half_visible", lambda b: (b["full"], b["label"])
    if stage in ("student", "eyes", "triplet"):
        return ("occluded",), config.view, lambda b: (b["occluded"], b["label"])
    # kd, rkd, hint: the hint's teacher always runs live (distillers' docstring)
    if config.teacher_mode == "live" or stage == "hint":  # the same image, both views
        return (("full", "occluded"), config.view,
                lambda b: ({"image": b["occluded"], "full": b["full"], "index": b["index"]},
                           b["label"]))
    return (("occluded",), config.view,
            lambda b: ({"image": b["occluded"], "index": b["index"]}, b["label"]))


def _fit(config, prepared, loaded, policy, workdir, chief, resumed, extra_callbacks):
    student = loaded["student"]
    size = loaded["image_size"]
    rows = _training_rows(config, prepared)
    full_steps = steps_per_epoch(len(rows), config.batch_size)
    steps = config.steps_per_epoch or full_steps
    views, occlusion, to_xy = _stage_inputs(config)
    describe = f"{config.stage} {config.arch} ({workdir})"

    nets.apply_weight_decay(student, config.weight_decay)
    optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate,
                                     momentum=config.momentum, name="sgd")
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    extra: list[keras.callbacks.Callback] = []
    if config.stage in FINE_TUNING_STAGES:
        trainer = student
        trainer.compile(optimizer=optimizer,
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=[accuracy], jit_compile=config.jit_compile)
    else:  # kd, triplet, and ours (rkd, hint): fer_distill.train.distillers
        trainer, stage_callbacks = distillers.build_trainer(config, prepared, loaded, rows,
                                                            size, policy, workdir, chief)
        # the triplet model tracks its own accuracy (its batches carry the mined triplets)
        trainer.compile(optimizer=optimizer,
                        metrics=None if config.stage == "triplet" else [accuracy],
                        jit_compile=config.jit_compile)
        extra.extend(stage_callbacks)

    plateau = cb.PlateauSchedule(patience=config.lr_patience, factor=config.lr_factor,
                                 min_lr=config.min_learning_rate,
                                 verbose=1 if config.verbose else 0)
    initial_epoch, history, seconds = 0, [], 0.0
    multi_worker = config.strategy == "multi_worker"
    found = cb.checkpoints(workdir / rundir.CHECKPOINTS) if resumed and chief else []

    def restore():
        return cb.restore(found[-1], weights_model=student, optimizer=trainer.optimizer,
                          trainable_variables=trainer.trainable_variables,
                          stateful={"plateau": plateau}) if found else None

    # multi_worker: only the chief reads the run directory; the others get its state
    state = (loop.restore_on_chief(restore, weights_model=student, optimizer=trainer.optimizer,
                                   trainable_variables=trainer.trainable_variables,
                                   stateful={"plateau": plateau})
             if multi_worker else restore())
    if state is not None:
        initial_epoch, history, seconds = (state["epoch"], state["history"],
                                           state["train_seconds"])
        if config.verbose:
            print(f"Resuming {workdir} after epoch {initial_epoch}")
    # Saving runs collective ops under multi_worker, so every worker saves; the others into
    # a scratch directory of their own (tf.distribute's pattern), removed after training.
    scratch = loop.scratch_directory() if multi_worker and not chief else None
    checkpoint = cb.EpochCheckpoint(scratch.name if scratch else workdir / rundir.CHECKPOINTS,
                                    weights_model=student,
                                    optimizer=trainer.optimizer, stateful={"plateau": plateau},
                                    keep=config.keep_checkpoints, history=history,
                                    train_seconds=seconds, enabled=chief or multi_worker)
    callbacks = [*extra, cb.NaNStop(describe), plateau]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(workdir / rundir.LOGS),
                                                     write_graph=False, update_freq="epoch"))
    callbacks += [checkpoint, *extra_callbacks]

    # Keras epoch k reads batches [k*steps, (k+1)*steps) of the endless stream; where that
    # starts is a pure function of k, so a resumed run reads what an uninterrupted one would.
    position = initial_epoch * steps
    train = make_dataset(prepared, "train", image_size=size, batch_size=config.batch_size,
                         training=True, views=views, occlusion=occlusion, seed=config.seed,
                         first_epoch=position // full_steps,
                         indices=None if len(rows) == prepared.count("train") else rows)
    if position % full_steps:
        train = train.skip(position % full_steps)
    validation = make_dataset(prepared, "validation", image_size=size,
                              batch_size=config.eval_batch_size, training=False, views=views,
                              occlusion=occlusion)
    if config.epochs > initial_epoch and multi_worker:  # Keras' fit cannot (loop.py)
        with scratch or contextlib.nullcontext():
            loop.fit_distributed(trainer, train.map(to_xy), validation=validation.map(to_xy),
                                 epochs=config.epochs, initial_epoch=initial_epoch,
                                 steps_per_epoch=steps, callbacks=callbacks,
                                 verbose=progress(config.verbose))
    elif config.epochs > initial_epoch:
        trainer.fit(train.map(to_xy), validation_data=validation.map(to_xy),
                    epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                    callbacks=callbacks, verbose=progress(config.verbose), shuffle=False)
    summary = {
        "epochs_run": len(checkpoint.history),
        "train_seconds": checkpoint.train_seconds,
        "final_learning_rate": float(f"{float(np.asarray(trainer.optimizer.learning_rate)):.6g}"),
        "steps_per_epoch": steps,
        "num_train_examples": len(rows),
        "history": checkpoint.history,
    }
    return student, summary


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------



def _finish(config, prepared, student, summary, workdir, chief, teacher=None) -> dict:
    # A float32, uncompiled copy: the file carries no optimizer state and no mixed policy.
    final = nets.under_policy(student, "float32", copy=True)
    if chief:
        with atomic_path(workdir / rundir.MODEL) as tmp:
            final.save(tmp)
    made = {}

    def predict(split):
        made[split] = predict_split(final, prepared, split, config.view,
                                    batch_size=config.eval_batch_size,
                                    verbose=progress(config.verbose))
        return made[split]

    results, paths = _evaluate_splits(config, prepared, workdir, chief, predict)
    metrics = {"stage": config.stage, "arch": config.arch, "dataset": prepared.dataset,
               "view": config.view, "test": results["test"], "validation": results["validation"],
               **summary, "model": rundir.MODEL, "predictions": paths}
    if teacher is not None:  # transfer diagnostics (fer_distill.evaluation.transfer)
        teacher32 = nets.under_policy(teacher, "float32")
        metrics["transfer"] = {split: transfer_of_predictions(
            predict_split(teacher32, prepared, split, "full",
                          batch_size=config.eval_batch_size), made[split])
            for split in EVAL_SPLITS}
    if chief:
        write_json(workdir / rundir.METRICS, metrics)  # last: the run is finished
    _report(config, metrics)
    return metrics


def _fuse(config, prepared, loaded, workdir, chief) -> dict:
    size = loaded["image_size"]
    embedders = {name: embedding_model(loaded[name]) for name in ("kd", "triplet")}

    def features(split, rows):
        return [embed(embedders[name], prepared, split, rows, image_size=size, view=config.view,
                      batch_size=config.eval_batch_size, verbose=progress(config.verbose))
                for name in ("kd", "triplet")]

    rows = _training_rows(config, prepared)
    started = time.monotonic()
    e_kd, e_triplet = features("train", rows)
    svm = FusionSVM(C=config.svm_c, standardize=config.svm_standardize)
    svm.fit(e_kd, e_triplet, np.asarray(prepared.labels("train"))[rows])
    seconds = time.monotonic() - started
    if chief:
        svm.save(workdir / rundir.FUSION)
    num_classes = len(prepared.class_names)

    def predict(split):
        split_rows = np.arange(prepared.count(split), dtype=np.int64)
        return score_predictions(svm.class_scores(*features(split, split_rows), num_classes),
                                 prepared, split)

    results, paths = _evaluate_splits(config, prepared, workdir, chief, predict)
    metrics = {"stage": "fuse", "arch": config.arch, "dataset": prepared.dataset,
               "view": config.view, "test": results["test"], "validation": results["validation"],
               "epochs_run": 0, "train_seconds": seconds, "num_train_examples": len(rows),
               "svm": {"C": svm.C, "standardize": svm.standardize, "converged": svm.converged_,
                       "n_iter": svm.n_iter_},
               "fusion": rundir.FUSION, "kd_student": config.kd_student,
               "triplet_student": config.triplet_student, "predictions": paths}
    if chief:
        write_json(workdir / rundir.METRICS, metrics)
    _report(config, metrics)
    return metrics


def _evaluate_splits(config, prepared, workdir, chief, predict) -> tuple[dict, dict]:
    """Runs `predict(split)` on every evaluation split, saves the per-image predictions (the
    chief only) and returns ({split: metrics summary}, {split: predictions file})."""
    results, paths = {}, {}
    for split in EVAL_SPLITS:
        predictions = predict(split)
        path = predictions_path(workdir, split, config.view)
        if chief:
            save_predictions(path, predictions)
        results[split] = metrics_lib.summary(predictions["label"], predictions["pred"],
                                             prepared.class_names)
        paths[split] = str(path.relative_to(workdir))
    return results, paths


def _report(config: TrainConfig, metrics: dict) -> None:
    if config.verbose:
        print(f"{config.stage} {config.arch} on {metrics['dataset']}: test accuracy "
              f"{100 * metrics['test']['accuracy']:.2f}% ({config.view}), validation "
              f"{100 * metrics['validation']['accuracy']:.2f}%; results in {config.workdir}")
