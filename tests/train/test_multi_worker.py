"""Two `multi_worker` processes on loopback end where one process ends, even after a SIGKILL.

A pair of worker subprocesses (TF_CONFIG on free 127.0.0.1 ports) runs the student, kd and
triplet stages in one process each, with the configs (global batch, inputs) of single-process
runs: `trained_runs`' kd and triplet, and a short student run made here. In the first launch
worker 1 kills itself with SIGKILL in the middle of kd's second epoch; both are then started
again with the same command and resume from the chief's last checkpoint. Loss curves and
final weights must match the single-process runs within float tolerance (the replicas sum
gradients in another order).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

STAGES = ("student", "kd", "triplet")
TIMEOUT = 600  # seconds per launch of the pair; a stuck cluster fails the test, not the suite

WORKER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    spec = json.loads(Path(sys.argv[1]).read_text())
    index = int(sys.argv[2])
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": spec["workers"]},
                                          "task": {"type": "worker", "index": index}})
    import keras
    from fer_distill.train import TrainConfig, run

    class KillOnce(keras.callbacks.Callback):
        # SIGKILL this worker at one batch of one epoch, the first time only (a marker file).
        def __init__(self):
            super().__init__()
            self.epoch = 0
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_begin(self, batch, logs=None):
            kill = spec["kill"]
            if ((self.epoch, batch) == (kill["epoch"], kill["batch"])
                    and index == kill["worker"] and not os.path.exists(kill["marker"])):
                Path(kill["marker"]).write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)

    histories = {}
    for name, values in spec["configs"].items():
        callbacks = [KillOnce()] if name == spec["kill"]["stage"] else []
        metrics = run(TrainConfig.from_dict(values), callbacks=callbacks)
        histories[name] = metrics["history"]
    Path(spec["out"] + f".{index}").write_text(json.dumps(histories))
""")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _launch(spec_path: Path, env: dict, name: str) -> list[tuple[int, str]]:
    """Starts the two workers, waits for both (bounded); returns (exit code, log tail).

    Logs go to files beside the spec (a pipe left unread could block a worker mid-collective).
    """
    processes = []
    try:
        for index in range(2):
            with open(spec_path.parent / f"{name}-{index}.log", "w") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(spec_path), str(index)], env=env,
                    stdout=log, stderr=subprocess.STDOUT))
        for process in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return [(process.returncode,
             (spec_path.parent / f"{name}-{index}.log").read_text(errors="replace")[-3000:])
            for index, process in enumerate(processes)]


def _weights(run_dir: Path, epoch: int | None = None) -> list[np.ndarray]:
    """The run's final weights, or those of its checkpoint after `epoch`."""
    import keras

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    if epoch is not None:
        model.load_weights(run_dir / "checkpoints" / f"epoch-{epoch:04d}" / "weights.weights.h5")
    return model.get_weights()


@pytest.fixture(scope="module")
def cluster(trained_runs, tmp_path_factory):
    """Runs the two launches (module docstring); returns (root, exit codes of each launch)."""
    from fer_distill.train import run
    from fer_distill.train.config import load_config

    root = tmp_path_factory.mktemp("cluster")
    single = {}
    for stage in STAGES:
        single[stage] = load_config(trained_runs[stage] / "config.json")
    # The student stage of `trained_runs` starts from a random network, where one flipped
    # near-tie (a max-pool or ReLU) in the 2nd epoch moves the loss by 1e-5 whether the
    # noise comes from a second worker or from a 1e-7 perturbation of the weights; this one
    # continues the trained student, like kd and triplet, and its reference runs here.
    single["student"] = dataclasses.replace(
        single["student"], init=str(trained_runs["student"] / "model.keras"), epochs=2,
        steps_per_epoch=3, workdir=str(root / "student-single"))
    run(single["student"])
    references = {stage: Path(config.workdir) for stage, config in single.items()}
    configs = {stage: dataclasses.replace(
        config, workdir=str(root / stage), strategy="multi_worker", resume=True,
        overwrite=False).to_dict() for stage, config in single.items()}
    ports = _free_ports(2)
    spec = {"workers": [f"127.0.0.1:{port}" for port in ports], "configs": configs,
            "kill": {"stage": "kd", "epoch": 1, "batch": 3, "worker": 1,
                     "marker": str(root / "killed")},
            "out": str(root / "histories.json")}
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_CONFIG", None)
    first = _launch(spec_path, env, "first")
    second = _launch(spec_path, env, "second")
    return root, first, second, references


def test_a_killed_worker_and_its_peer_restarted_resume_from_the_last_checkpoint(cluster):
    root, first, second, _ = cluster
    assert (root / "killed").is_file()
    assert first[1][0] == -signal.SIGKILL, first[1][1]
    assert first[0][0] != 0  # the surviving worker fails instead of hanging
    assert all(code == 0 for code, _ in second), second
    # The second launch resumed kd (a second session, after epoch 1's checkpoint).
    environment = json.loads((root / "kd" / "environment.json").read_text())
    assert len(environment["earlier_sessions"]) == 1


@pytest.mark.parametrize("stage", STAGES)
def test_two_workers_end_where_one_process_ends(cluster, stage):
    root, _, second, references = cluster
    assert all(code == 0 for code, _ in second), second
    one = json.loads((references[stage] / "metrics.json").read_text())["history"]
    for index in range(2):  # both workers report the global batch's curve
        two = json.loads((root / f"histories.json.{index}").read_text())[stage]
        assert [h["epoch"] for h in two] == [h["epoch"] for h in one]
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
            np.testing.assert_allclose([h[key] for h in two], [h[key] for h in one],
                                       rtol=2e-3 if stage == "triplet" else 1e-4, atol=1e-6,
                                       err_msg=f"{stage} {key}")
    # Triplet: eq. 3 is a sum over mined triplets, and a near-tie (in the mining's arg-max /
    # arg-min, or at a ReLU or max-pool of the student) can go the other way with the other
    # order of summation, so its loss agrees to 2e-3 (0.12% measured) rather than to float
    # rounding. Its weights are compared after the first epoch, to float rounding like the
    # other stages' (measured: 0.16 of this tolerance; eq. 3 divided by the replica count would
    # be 68,000 times over it). Its final weights are not: over three epochs the step amplifies
    # rounding, so they would test luck (docs/DESIGN.md, the triplet stage: measured on one
    # process, a 1e-7 relative nudge of the starting weights moved them 5-11 times past 1e-3 of
    # each tensor's scale, the bound this test used to apply).
    epoch = 1 if stage == "triplet" else None
    for got, want in zip(_weights(root / stage, epoch), _weights(references[stage], epoch),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()),
                                   err_msg=stage)
