"""Two replicas (two logical CPU devices under MirroredStrategy) follow the loss curve of one
device: the custom steps scale their losses for replicas correctly (KD: mean / replicas;
triplet: CE mean / replicas + λ·per-replica SUM).

Runs in a subprocess, because logical devices must be configured before TensorFlow
initialises, which it already has in the test process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    from fer_distill.train import TrainConfig, run
    data, init, teacher, root = sys.argv[1:5]
    out = {}
    for stage, lr in (("kd", 3e-3), ("triplet", 1e-6)):
        for strategy in ("default", "mirrored"):
            metrics = run(TrainConfig(
                stage=stage, arch="mini", data=data, workdir=f"{root}/{stage}-{strategy}",
                init=init, teacher=teacher, image_size=32, epochs=2, steps_per_epoch=3,
                batch_size=32, learning_rate=lr, strategy=strategy, verbose=0))
            weights = keras.saving.load_model(f"{root}/{stage}-{strategy}/model.keras",
                                              compile=False).get_weights()
            out[f"{stage}-{strategy}"] = {
                "losses": [h["loss"] for h in metrics["history"]],
                "val_accuracy": [h["val_accuracy"] for h in metrics["history"]],
                "weights": [float(abs(w).sum()) for w in weights],
                "replicas": json.load(open(f"{root}/{stage}-{strategy}/environment.json"))[
                    "replicas"]}
    print("RESULT" + json.dumps(out))
""")


def test_two_replicas_follow_the_loss_curve_of_one_device(trained_runs, demo_data, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(demo_data),
         str(trained_runs["student"] / "model.keras"),
         str(trained_runs["teacher"] / "model.keras"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(l for l in process.stdout.splitlines() if l.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    for stage in ("kd", "triplet"):
        one, two = result[f"{stage}-default"], result[f"{stage}-mirrored"]
        assert (one["replicas"], two["replicas"]) == (1, 2)
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
        np.testing.assert_allclose(two["val_accuracy"], one["val_accuracy"], atol=1e-6)
        np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-4)
