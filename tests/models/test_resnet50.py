"""ResNet-50: MatConvNet's names and map sizes, the exact parameter count, the per-architecture
embedding (pool5) and logits (fc1000), Keras' own ResNet50 weights, and every training stage
on the demo set (a width-4 ResNet-50 of the real topology at 32x32, a few steps each)."""
import json

import keras
import numpy as np
import pytest

from fer_distill import models
from fer_distill.models import keras_resnet50


def test_exact_parameter_count_names_and_map_sizes():
    model = models.resnet50(num_classes=8)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # 25,636,712 in keras.applications.ResNet50 (1000 classes) - its 26,496 branch-conv
    # biases (MatConvNet's ResNet has biases only in conv1 and the classifier) - the
    # 1000-way classifier + an 8-way one = 23,577,608, of which 53,120 are BN moments.
    assert model.count_params() == 23_577_608 + 3  # + the 1x1x3 mean colour
    assert trainable == 23_577_608 - 53_120
    assert model.name == "resnet50" and models.architecture_of(model) == "resnet50"
    sizes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert sizes["conv1"] == (112, 112, 64) and sizes["pool1"] == (56, 56, 64)
    assert sizes["res2c_relu"] == (56, 56, 256) and sizes["res3d_relu"] == (28, 28, 512)
    assert sizes["res4f_relu"] == (14, 14, 1024) and sizes["res5c_relu"] == (7, 7, 2048)
    assert sizes["pool5"] == (2048,) and sizes["fc1000"] == (8,)
    assert models.embedding_layer(model).name == "pool5"
    assert models.logits_layer(model).name == "fc1000"
    assert [l.name for l in model.layers][1:9] == [
        "normalization", "conv1", "bn_conv1", "conv1_relu", "pool1", "res2a_branch2a",
        "bn2a_branch2a", "res2a_branch2a_relu"]


def test_config_round_trip_and_bad_arguments():
    model = models.resnet50(8, 32, width=4)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    for kwargs, bad in ((dict(num_classes=0), "0"), (dict(input_size=16), "16"),
                        (dict(pool1_pad=(1, 0, 1, 0)), r"\(1, 0, 1, 0\)")):
        with pytest.raises(ValueError, match=bad):
            models.resnet50(**kwargs)


def test_new_head_embedding_and_mixed_precision_rebuild():
    keras.utils.set_random_seed(0)
    small = models.resnet50(8, 32, width=4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    head = models.with_new_head(small, 3, seed=1)
    assert head.name == "resnet50" and models.logits_layer(head).name == "fc1000"
    out = {k: v.numpy() for k, v in models.embedding_model(head)(images).items()}
    assert out["embedding"].shape == (2, 128) and out["logits"].shape == (2, 3)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        rebuilt = models.rebuild(head)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert rebuilt.get_layer("res2a_branch2b").compute_dtype == "bfloat16"
    assert rebuilt.get_layer("fc1000").compute_dtype == "float32"
    rebuilt.set_weights(head.get_weights())
    np.testing.assert_allclose(rebuilt(images).numpy(), out["logits"], rtol=0.1,
                               atol=0.1 * np.abs(out["logits"]).max())


@pytest.mark.parametrize("suffix", [".weights.h5"])
def test_keras_resnet50_weights_file_computes_what_keras_computes(tmp_path, suffix):
    """A random keras.applications.ResNet50 (with non-trivial batch-norm statistics and conv
    biases), saved to a file, read into our resnet50: same features and probabilities on the
    same RGB images (Keras' side through its own preprocess_input)."""
    keras.utils.set_random_seed(0)
    source = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])
        elif isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([layer.kernel.numpy(), rng.normal(0, 0.1, layer.filters)])
    path = tmp_path / f"resnet50{suffix}"
    source.save_weights(path)

    ours = keras_resnet50.load_keras_resnet50(path, input_size=64)
    assert models.architecture_of(ours) == "resnet50" and ours.get_layer("pool1").pad == (1,) * 4
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    keras_in = keras.applications.resnet.preprocess_input(images.copy())  # BGR minus the mean
    features = keras.Model(source.input, source.get_layer("avg_pool").output)
    expected = features(keras_in).numpy()
    out = {k: v.numpy() for k, v in models.embedding_model(ours)(images).items()}
    np.testing.assert_allclose(out["embedding"], expected, rtol=0,
                               atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(keras.ops.softmax(out["logits"]).numpy(),
                               source(keras_in).numpy(), atol=1e-5)
    # --init=FILE.h5 reaches this loader (models.load_model dispatches .h5 to it), and a file
    # that is not ResNet50's weights is refused, naming it
    from fer_distill.train.networks import load_network

    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(ValueError, match="init file .*other.weights.h5 could not be loaded: "
                                         ".*other.weights.h5: not the weights of"):
        load_network(other, role="init", arch="resnet50")


def test_every_stage_trains_resnet50_on_the_demo_set(tmp_path):
    """teacher, student, eyes, kd, triplet and fuse, each a couple of steps, from one saved
    width-4 ResNet-50 (32x32): the stages read its embedding (pool5) and logits (fc1000) by
    the architecture's names. Keras' step functions run eagerly: tracing a 176-layer graph
    for two steps costs minutes here, and graph mode is what the mini tests cover."""
    import tensorflow as tf

    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        _train_every_stage(tmp_path)
    finally:
        tf.config.run_functions_eagerly(eager)


def _train_every_stage(tmp_path):
    from fer_distill.data.demo import prepare_demo
    from fer_distill.train import TrainConfig, run

    data = tmp_path / "demo"
    prepare_demo(data, sizes={"train": 48, "validation": 16, "test": 16}, seed=0)
    keras.utils.set_random_seed(0)
    init = tmp_path / "init.keras"
    models.resnet50(8, 32, width=4).save(init)
    common = dict(arch="resnet50", data=str(data), image_size=32, epochs=1, steps_per_epoch=1,
                  batch_size=16, verbose=0)
    runs = {stage: tmp_path / stage for stage in
            ("teacher", "student", "eyes", "kd", "triplet", "fuse")}
    for stage in ("teacher", "student", "eyes"):
        run(TrainConfig(stage=stage, workdir=str(runs[stage]), init=str(init),
                        learning_rate=1e-3, **common))
    sources = dict(init=str(runs["student"] / "model.keras"),
                   teacher=str(runs["teacher"] / "model.keras"))
    run(TrainConfig(stage="kd", workdir=str(runs["kd"]), learning_rate=1e-3, **sources,
                    **common))
    run(TrainConfig(stage="triplet", workdir=str(runs["triplet"]), learning_rate=1e-7,
                    **sources, **common))
    run(TrainConfig(stage="fuse", workdir=str(runs["fuse"]),
                    kd_student=str(runs["kd"] / "model.keras"),
                    triplet_student=str(runs["triplet"] / "model.keras"),
                    **{k: v for k, v in common.items() if k != "epochs"}))
    for stage, workdir in runs.items():
        config = json.loads((workdir / "config.json").read_text())
        assert config["arch"] == "resnet50", stage
        assert (workdir / "metrics.json").is_file(), stage
    student = keras.saving.load_model(runs["kd"] / "model.keras", compile=False)
    assert models.architecture_of(student) == "resnet50" and student.output_shape == (None, 8)
    before = keras.saving.load_model(runs["student"] / "model.keras", compile=False)
    assert not np.allclose(student.get_layer("res2a_branch2b").kernel.numpy(),
                           before.get_layer("res2a_branch2b").kernel.numpy())
