"""The tf.data pipeline: pixels equal a NumPy/cv2 computation, order is a pure function of
(seed, epoch), and both source paths (in-graph tensor, memmap) give the same batches."""
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data import pipeline
from fer_distill.data.occlusion import Mask, occlude
from fer_distill.data.pipeline import epoch_permutation, make_dataset, steps_per_epoch
from fer_distill.data.prepared import SPLITS, PreparedWriter, read_prepared

N = 13


def _make(tmp_path, shape):
    rng = np.random.default_rng(7)
    out = tmp_path / f"set_{'x'.join(map(str, shape))}"
    with PreparedWriter(out, dataset="demo", image_shape=shape) as writer:
        for split in SPLITS:
            images = rng.integers(0, 256, (N, *shape), dtype=np.uint8)
            writer.add_split(split, rng.integers(0, 8, N), [f"{split}{i}" for i in range(N)],
                             images=images)
    return read_prepared(out)


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("grey"), (9, 8, 1))


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("rgb"), (7, 9, 3))


def _expected_full(images, size):
    """cv2's bilinear resize (half-pixel centres, like tf.image.resize) on float pixels."""
    out = []
    for image in images.astype(np.float32):
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        resized = resized.reshape(size, size, -1)
        out.append(np.repeat(resized, 3, axis=-1) if resized.shape[-1] == 1 else resized)
    return np.stack(out)


def _collect(dataset, steps=None):
    batches = list(dataset.take(steps) if steps else dataset)
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("source", ["grey", "rgb"])
@pytest.mark.parametrize("size", [16, 5])
def test_evaluation_pass_matches_numpy(source, size, request):
    prepared = request.getfixturevalue(source)
    dataset = make_dataset(prepared, "test", image_size=size, batch_size=5, training=False)
    batches = list(dataset)
    assert [len(b["index"]) for b in batches] == [5, 5, 3]  # last batch kept
    got = _collect(dataset)
    np.testing.assert_array_equal(got["index"], np.arange(N))
    np.testing.assert_array_equal(got["label"], prepared.labels("test"))
    assert got["label"].dtype == np.int32 and got["index"].dtype == np.int64
    assert got["full"].dtype == np.float32 and got["full"].shape == (N, size, size, 3)
    expected = _expected_full(prepared.images("test"), size)
    np.testing.assert_allclose(got["full"], expected, atol=1e-3)
    # the occluded entry is a view of the very same resized image
    np.testing.assert_array_equal(got["occluded"], occlude(got["full"], "lower_half_visible"))


def test_same_size_is_the_identity(rgb):
    prepared = rgb
    # why square: the pipeline always emits S x S; make a 7x7 crop set to hit the identity path
    images = prepared.images("train")[:, :, :7]
    out = rgb.path.parent / "square"
    with PreparedWriter(out, dataset="demo", image_shape=(7, 7, 3)) as writer:
        for split in SPLITS:
            writer.add_split(split, prepared.labels("train"), [str(i) for i in range(N)],
                             images=np.ascontiguousarray(images))
    got = _collect(make_dataset(read_prepared(out), "train", image_size=7, batch_size=4,
                                training=False, views=("full",)))
    np.testing.assert_array_equal(got["full"], images.astype(np.float32))


def test_views_and_occlusion_choices(grey):
    only = next(iter(make_dataset(grey, "train", image_size=8, batch_size=4, training=False,
                                  views=("occluded",), occlusion="upper_half_visible")))
    assert sorted(only) == ["index", "label", "occluded"]
    full = _expected_full(grey.images("train")[:4], 8)
    np.testing.assert_allclose(only["occluded"].numpy(), occlude(full, "upper_half_visible"),
                               atol=1e-3)
    mask = Mask.named("headset")
    batch = next(iter(make_dataset(grey, "train", image_size=8, batch_size=4, training=False,
                                   occlusion=mask)))
    np.testing.assert_array_equal(batch["occluded"].numpy(), occlude(batch["full"].numpy(), mask))
    with pytest.raises(ValueError, match="views must be"):
        make_dataset(grey, "train", batch_size=4, training=False, views=("eyes",))


def test_training_order_is_a_pure_function_of_seed_and_epoch(grey):
    batch, size = 4, 6
    steps = steps_per_epoch(N, batch)
    assert steps == 3
    stream = make_dataset(grey, "train", image_size=size, batch_size=batch, training=True, seed=3)
    assert stream.element_spec["full"].shape == (batch, size, size, 3)  # drop_remainder
    got = _collect(stream, steps * 3)
    expected = np.concatenate([epoch_permutation(N, 3, e)[: steps * batch] for e in range(3)])
    np.testing.assert_array_equal(got["index"], expected)
    np.testing.assert_array_equal(got["label"], grey.labels("train")[expected])
    np.testing.assert_allclose(got["full"], _expected_full(grey.images("train")[expected], size),
                               atol=1e-3)
    assert not np.array_equal(epoch_permutation(N, 3, 0), epoch_permutation(N, 3, 1))

    # a run resumed at epoch 1 sees exactly the batches the uninterrupted run saw from there
    resumed = _collect(make_dataset(grey, "train", image_size=size, batch_size=batch,
                                    training=True, seed=3, first_epoch=1), steps * 2)
    for key in got:
        np.testing.assert_array_equal(resumed[key], got[key][steps * batch:])
    other = _collect(make_dataset(grey, "train", image_size=size, batch_size=batch,
                                  training=True, seed=4), steps)
    assert not np.array_equal(other["index"], got["index"][: steps * batch])


def test_indices_restrict_the_rows(grey):
    rows = np.array([11, 2, 5, 7, 0])
    evaluation = _collect(make_dataset(grey, "validation", image_size=4, batch_size=2,
                                       training=False, indices=rows))
    np.testing.assert_array_equal(evaluation["index"], rows)
    np.testing.assert_array_equal(evaluation["label"], grey.labels("validation")[rows])
    training = _collect(make_dataset(grey, "validation", image_size=4, batch_size=2,
                                     training=True, indices=rows, seed=1), 2)
    np.testing.assert_array_equal(training["index"], rows[epoch_permutation(5, 1, 0)[:4]])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 13\)"):
        make_dataset(grey, "validation", batch_size=2, training=False, indices=[13])


def test_memmap_source_gives_the_same_batches(grey, monkeypatch):
    def run():
        return _collect(make_dataset(grey, "train", image_size=6, batch_size=4, training=True,
                                     seed=9), 4)

    in_memory = run()
    monkeypatch.setattr(pipeline, "IN_MEMORY_BYTES", 0)
    streamed = run()
    for key in in_memory:
        np.testing.assert_array_equal(streamed[key], in_memory[key])


def test_steps_per_epoch():
    assert steps_per_epoch(13, 4) == 3
    assert steps_per_epoch(12, 4) == 3
    with pytest.raises(ValueError, match="cannot fill one batch"):
        steps_per_epoch(3, 4)


def test_mirrored_strategy_on_two_cpu_devices(grey):
    """Two logical CPUs need a fresh TensorFlow runtime, hence the subprocess."""
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from fer_distill.data.prepared import read_prepared
        from fer_distill.data.pipeline import make_dataset
        prepared = read_prepared({str(grey.path)!r})
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = make_dataset(prepared, "train", image_size=8, batch_size=4, training=True,
                               seed=2)
        plain = next(iter(dataset))
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
        parts = strategy.experimental_local_results(batch["index"])
        assert len(parts) == 2 and [len(p) for p in parts] == [2, 2], parts
        np.testing.assert_array_equal(np.concatenate(parts), plain["index"].numpy())
        full = np.concatenate(strategy.experimental_local_results(batch["full"]))
        np.testing.assert_array_equal(full, plain["full"].numpy())

        @tf.function
        def step(batch):
            return strategy.run(lambda b: tf.reduce_sum(b["occluded"]), args=(batch,))
        total = strategy.reduce("SUM", step(batch), axis=None)
        np.testing.assert_allclose(total.numpy(), plain["occluded"].numpy().sum(), rtol=1e-5)
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=str(pipeline.__file__).rsplit("/fer_distill/", 1)[0], timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
