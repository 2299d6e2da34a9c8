"""The one tf.data pipeline every stage reads: paired views of the same image, per batch.

    make_dataset(prepared, split, batch_size=64, training=True, views=("full", "occluded"))

turns a prepared split (fer_distill.data.prepared) into batches of
`{"full", "occluded", "label", "index"}`; a training epoch `e` is the permutation
`epoch_permutation(n, seed, e)`, so a resumed run sees the batches an uninterrupted one would.
Contract and design choices: docs/DESIGN.md, "Pipeline".
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from fer_distill.data.occlusion import Mask, occlude, resolve_view
from fer_distill.data.prepared import Prepared

# Splits up to this size are copied into one in-graph uint8 tensor (fast, fully parallel
# gathers); above it they are read from the memmap. 1 GiB holds all of FER+ (83 MB) with room,
# and stays well below the 2 GB protobuf limit tf.data meets when it serialises a graph.
IN_MEMORY_BYTES = 1 << 30

OUTPUT_KEYS = ("full", "occluded")


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Training batches per epoch: full batches only (`drop_remainder=True`), so n // batch_size.

    Raises ValueError when not even one batch fits, since an epoch of zero steps would make
    `fit` loop forever on an endless dataset.
    """
    n, batch_size = int(n), int(batch_size)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if n < batch_size:
        raise ValueError(f"{n} training examples cannot fill one batch of {batch_size}; use a "
                         "smaller batch_size")
    return n // batch_size


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch `epoch`: a permutation of range(n), a pure function of (seed, epoch).

    NumPy's PCG64 seeded with the pair, so the order does not depend on how many epochs ran
    before in this process (or on TensorFlow's op-level random state).
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))


def _rows(prepared: Prepared, split: str, indices) -> np.ndarray:
    n = prepared.count(split)
    if indices is None:
        return np.arange(n, dtype=np.int64)
    rows = np.asarray(indices)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) for split {split!r} of {prepared.path}, "
                         f"got {rows.min()}..{rows.max()}")
    return rows.astype(np.int64)


def _gather_fn(images: np.ndarray):
    """A function int64 indices -> uint8 images, in-graph for small sources, memmap otherwise."""
    if images.nbytes <= IN_MEMORY_BYTES:
        source = tf.constant(np.ascontiguousarray(images))
        return lambda index: tf.gather(source, index)

    def read(index: np.ndarray) -> np.ndarray:
        order = np.argsort(index, kind="stable")  # why: ascending reads are kinder to the disk
        batch = np.empty((len(index), *images.shape[1:]), dtype=np.uint8)
        batch[order] = images[index[order]]
        return batch

    def gather(index):
        batch = tf.numpy_function(read, [index], tf.uint8, stateful=False)
        batch.set_shape([None, *images.shape[1:]])
        return batch

    return gather


def to_view(raw, image_size: int, view: str | Mask = "full"):
    """uint8 source images (B, H, W, C) -> float32 (B, S, S, 3) 0-255 in `view`.

    The one batch transform of the package: bilinear resize to `image_size` (skipped, exactly,
    when the source already has that size), grey repeated to 3 channels after the cheap resize,
    then the occlusion view. `make_dataset` applies it to every gathered batch; the triplet step
    applies it to the negatives it gathers from its pool, so both see identical pixels.
    """
    raw = tf.convert_to_tensor(raw)
    height, width, channels = raw.shape[1:]
    if (height, width) == (image_size, image_size):
        full = tf.cast(raw, tf.float32)  # why: resizing to the same size must be exact
    else:
        full = tf.image.resize(raw, [image_size, image_size], method="bilinear")
    if channels == 1:
        full = tf.repeat(full, 3, axis=-1)  # grey to 3 equal channels, after the cheap resize
    return occlude(full, resolve_view(view))


def view_input(view: str | Mask) -> tuple[str, str | Mask]:
    """(make_dataset key, occlusion) that give a model its images in `view`: ("full", any)
    for "full", else ("occluded", view). The element `batch[key]` is the view."""
    return ("full", "lower_half_visible") if view == "full" else ("occluded", view)


def make_dataset(
    prepared: Prepared,
    split: str,
    *,
    image_size: int = 224,
    batch_size: int,
    training: bool,
    views: Sequence[str] = OUTPUT_KEYS,
    occlusion: str | Mask = "lower_half_visible",
    seed: int = 0,
    first_epoch: int = 0,
    indices=None,
) -> tf.data.Dataset:
    """Batches of paired views of one prepared split (docs/DESIGN.md, "Pipeline").

    Elements: "full" / "occluded" (only the keys in `views`): float32 (B, S, S, 3) in 0-255,
    grey sources repeated to 3 channels, "occluded" with the `occlusion` view applied;
    "label" int32 (B,); "index" int64 (B,), the row in the split.

    training=True: endless; epoch e >= first_epoch in the order `epoch_permutation(len(rows),
    seed, e)` over the selected rows, full batches only (use with `steps_per_epoch`).
    training=False: one pass over the rows in order (all rows, or `indices` as given), last
    batch kept. `indices` restricts the split to those rows.
    """
    views = tuple(views)
    if not views or any(v not in OUTPUT_KEYS for v in views) or len(set(views)) != len(views):
        raise ValueError(f"views must be a non-empty subset of {OUTPUT_KEYS}, got {views}")
    occlusion = resolve_view(occlusion)
    image_size = int(image_size)
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    batch_size = int(batch_size)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    images = prepared.images(split)
    labels = tf.constant(prepared.labels(split))
    rows = _rows(prepared, split, indices)
    gather = _gather_fn(images)

    if training:
        steps = steps_per_epoch(len(rows), batch_size)
        rows_t = tf.constant(rows)

        def epoch_batches(epoch):
            order = tf.numpy_function(
                lambda e: epoch_permutation(len(rows), seed, e), [epoch], tf.int64,
                stateful=False)
            order = tf.reshape(order[: steps * batch_size], [steps, batch_size])
            return tf.data.Dataset.from_tensor_slices(tf.gather(rows_t, order))

        batches = tf.data.Dataset.counter(int(first_epoch), dtype=tf.int64).flat_map(
            epoch_batches)
    else:
        batches = tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)

    def load(index):
        full = to_view(gather(index), image_size, "full")
        out = {}
        if "full" in views:
            out["full"] = full
        if "occluded" in views:
            out["occluded"] = occlude(full, occlusion)
        out["label"] = tf.gather(labels, index)
        out["index"] = index
        return out

    dataset = batches.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
