"""Issue 9's training additions: the transfer record of kd/triplet runs, the shuffled-teacher
control's wiring, MatConvNet's weight decay, and --deterministic."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from fer_distill.train import TrainConfig
from fer_distill.train.teacher_cache import deranged
from fer_distill.train import networks as nets
from fer_distill.train import distillers

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", ["kd", "triplet"])
def test_distilled_runs_record_their_transfer_to_the_teacher(trained_runs, stage):
    from fer_distill.evaluation.transfer import transfer_between

    metrics = json.loads((trained_runs[stage] / "metrics.json").read_text())
    for split in ("validation", "test"):
        recorded = metrics["transfer"][split]
        # the same numbers from the teacher run's own saved full-face predictions
        again = transfer_between(trained_runs["teacher"], trained_runs[stage], split,
                                 "lower_half_visible")
        assert recorded["n"] == again["n"] > 0
        assert recorded["kl"] == pytest.approx(again["kl"], rel=1e-4, abs=1e-6)
        assert recorded["agreement"] == again["agreement"]


def test_kd_history_logs_both_terms_of_eq_1(trained_runs):
    history = json.loads((trained_runs["kd"] / "metrics.json").read_text())["history"]
    epoch = history[-1]
    assert {"kd_hard", "kd_soft", "val_kd_hard", "val_kd_soft"} <= set(epoch)
    # the loss is their sum (eq. 1), both shares positive
    assert epoch["kd_hard"] > 0 and epoch["kd_soft"] > 0
    assert epoch["loss"] == pytest.approx(epoch["kd_hard"] + epoch["kd_soft"], rel=1e-3)


def test_shuffled_teacher_pairs_every_image_with_another_images_logits(
        trained_runs, mini_config, demo_data, tmp_path):
    from fer_distill.data.prepared import read_prepared
    from fer_distill.evaluation.predictions import predict_split

    config = mini_config("kd", tmp_path / "kd", init=str(trained_runs["student"] / "model.keras"),
                         teacher=str(trained_runs["teacher"] / "model.keras"),
                         shuffle_teacher=True).resolved()
    prepared = read_prepared(demo_data)
    teacher = keras.saving.load_model(trained_runs["teacher"] / "model.keras")
    student = keras.saving.load_model(trained_runs["student"] / "model.keras")
    rows = np.arange(prepared.count("train"), dtype=np.int64)
    loaded = {"teacher": teacher, "student": student}
    trainer, _ = distillers.build_trainer(config, prepared, loaded, rows, 32, "float32",
                                          tmp_path / "kd", True)
    table = trainer.train_logits.numpy()
    logits = np.log(predict_split(teacher, prepared, "train", "full")["probs"])
    partner = deranged(rows, config.seed)
    assert sorted(partner.tolist()) == rows.tolist() and not np.any(partner == rows)
    # row i holds the teacher's output for image partner[i] (softmax-invariant comparison)
    got = table - table.max(axis=1, keepdims=True)
    want = logits[partner] - logits[partner].max(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert not np.allclose(got, logits - logits.max(axis=1, keepdims=True), atol=2e-3)
    # validation keeps the true pairing: the control changes what the student learns from
    np.testing.assert_allclose(trainer.eval_logits.numpy().shape,
                               (prepared.count("validation"), 8))


def test_shuffle_teacher_is_a_distillation_control_only():
    common = dict(arch="mini", data="d", workdir="w")
    with pytest.raises(ValueError, match="shuffle_teacher"):
        TrainConfig(stage="student", shuffle_teacher=True, **common).resolved()
    with pytest.raises(ValueError, match="cached"):
        TrainConfig(stage="kd", init="s", teacher="t", shuffle_teacher=True,
                    teacher_mode="live", **common).resolved()


def test_weight_decay_defaults_follow_where_the_paper_trained_each_stage():
    def decay(stage, arch):
        return TrainConfig(stage=stage, arch=arch, data="d", workdir="w", init="i",
                           teacher="t", kd_student="k", triplet_student="t").resolved() \
            .weight_decay
    assert decay("teacher", "vgg_face") == decay("student", "vgg_f") == 5e-4  # MatConvNet
    assert decay("eyes", "vgg_f") == decay("kd", "vgg_face") == 5e-4
    assert decay("triplet", "vgg_f") == decay("triplet", "vgg_face") == 0.0  # TensorFlow
    assert decay("student", "mini") == 0.0
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(stage="student", arch="mini", data="d", workdir="w",
                    weight_decay=-1.0).resolved()


def test_weight_decay_is_matconvnets_l2_on_kernels_only():
    import tensorflow as tf

    from fer_distill.models import mini

    keras.utils.set_random_seed(1)
    model = mini(8, 32)
    count = nets.apply_weight_decay(model, 5e-4)
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert count == len(kernels) == len(model.losses) > 0
    expected = 0.5 * 5e-4 * sum(float(tf.reduce_sum(tf.square(v))) for v in kernels)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    grads = tape.gradient(penalty, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
        if variable.path.endswith("kernel"):  # d/dW of wd/2·‖W‖² = wd·W, joins the gradient
            np.testing.assert_allclose(grad.numpy(), 5e-4 * variable.numpy(), rtol=1e-5)
        else:
            assert grad is None  # biases: no decay, as SimpleNN's weightDecay [1 0]
    nets.apply_weight_decay(model, 0.0)
    assert model.losses == []


def test_deterministic_runs_repeat_to_the_bit(demo_data, tmp_path):
    """Two runs of the same command in a fresh process (op determinism is process-wide)."""
    script = textwrap.dedent(f"""
        import numpy as np, keras
        from fer_distill.train import TrainConfig, run
        weights = []
        for name in ("a", "b"):
            run(TrainConfig(stage="student", arch="mini", data={str(demo_data)!r},
                            workdir={str(tmp_path)!r} + "/" + name, image_size=32, batch_size=32,
                            epochs=1, steps_per_epoch=3, learning_rate=0.01, verbose=0,
                            deterministic=True))
            model = keras.saving.load_model({str(tmp_path)!r} + "/" + name + "/model.keras")
            weights.append(model.get_weights())
        same = all(np.array_equal(x, y) for x, y in zip(*weights))
        print("IDENTICAL" if same else "DIFFERENT")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IDENTICAL" in done.stdout
    metrics_a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    metrics_b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics_a["history"] == metrics_b["history"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["deterministic"] is True
