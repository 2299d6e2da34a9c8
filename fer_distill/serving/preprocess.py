"""The serving-time preprocessing: exactly what the training pipeline does to an image.

A served model must see the pixels it was trained on, or its accuracy is not the one the report
states. `fer_distill.data.pipeline.make_dataset` does, per batch: bilinear `tf.image.resize`
(half-pixel centres, no antialiasing) of the uint8 source to the model's input size, giving
float32 0-255; grey repeated to 3 channels; the model's view (`occlude`); and the model itself
subtracts its mean image (its `normalization` layer). `model_input` is that sequence as one
function, for batches of equal size (`predict_images`) and, through `decode_and_resize`, for
encoded files of any sizes (`serving_default`). tests/serving/test_export.py checks that the
result equals what `make_dataset` produces for the same images.
"""
from __future__ import annotations

import tensorflow as tf

from fer_distill.data.occlusion import Mask, occlude

# Magic numbers of the formats `tf.io.decode_image` reads and we accept. Checked before decoding
# so a bad request names the offending item instead of failing deep inside a map_fn.
ACCEPTED_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
_MAGIC = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"GIF8"),  # GIF87a / GIF89a
    (0, b"BM"),  # BMP
    (8, b"WEBP"),  # RIFF....WEBP
)


def resize(images, size: tuple[int, int]):
    """uint8 (or float) (N, H, W, C) → float32 (N, S, S, C) 0-255, the pipeline's bilinear resize.

    `tf.image.resize` to the same size is the identity bit for bit (checked in the tests), so
    no special case is needed for inputs already at the model's size.
    """
    return tf.image.resize(images, list(size), method="bilinear")


def model_input(images, size: tuple[int, int], view: str | Mask):
    """(N, H, W, 1|3) pixels → float32 (N, size, size, 3) 0-255 with `view` applied.

    The mean subtraction is not done here: it is the model's own first layer.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"model_input: images must be (N, H, W, C), got shape {images.shape}")
    channels = images.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"model_input: images must have 1 (grey) or 3 (RGB) channels, got "
                         f"shape {images.shape}")
    full = resize(images, size)
    if channels == 1:
        full = tf.repeat(full, 3, axis=-1)  # why after the resize: the pipeline's order
    return occlude(full, view)


def check_encoded(image_bytes):
    """An op that fails with InvalidArgumentError naming the items that are not image files.

    `tf.io.decode_image` would fail too, but inside a map and without saying which item of the
    request was bad. The message shows each bad item's first bytes with every byte that is not
    valid UTF-8 replaced by U+FFFD, so that a client can always read it (raw TIFF or binary
    bytes in the message made TensorFlow's Python client fail with UnicodeDecodeError).
    """
    # why the padding: substr fails on a position past the end of a short string.
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * 16)])
    known = tf.zeros(tf.shape(image_bytes), dtype=tf.bool)
    for offset, magic in _MAGIC:
        known = known | tf.equal(tf.strings.substr(padded, offset, len(magic)), magic)
    bad = tf.reshape(tf.where(~known), [-1])
    first_bytes = tf.strings.unicode_transcode(
        tf.strings.substr(tf.gather(image_bytes, bad), 0, 16), input_encoding="UTF-8",
        output_encoding="UTF-8", errors="replace")
    return tf.debugging.Assert(
        tf.reduce_all(known),
        ["image_bytes: the items at these positions are not encoded images (expected "
         f"{ACCEPTED_FORMATS} file contents):", bad,
         "their first bytes:", first_bytes],
        summarize=20, name="check_image_bytes")


def decode_and_resize(image_bytes, sizes):
    """tf.string (N,) encoded images of any sizes → a tuple, per size in `sizes`, of
    float32 (N, h, w, 3) 0-255 resized like `resize`.

    Each image is decoded to RGB (grey files are repeated to 3 channels by the decoder, which
    gives the same numbers as the pipeline's resize-then-repeat, since the resize works per
    channel; an alpha channel is dropped; an animated GIF gives its first frame) and resized on
    its own, so one request may mix sizes. An item that has an image header but does not
    decode (corrupt, truncated) fails the request with InvalidArgumentError naming its
    position: the items are decoded in a `tf.data` map that drops failures, and the positions
    missing from its result are reported.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    with tf.control_dependencies([check_encoded(image_bytes)]):
        image_bytes = tf.identity(image_bytes)
    sizes = tuple(tuple(int(d) for d in size) for size in sizes)
    count = tf.size(image_bytes, out_type=tf.int64)

    def one(index, encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return index, tuple(resize(image[None], size)[0] for size in sizes)

    decoded = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
               .map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .ignore_errors()
               .batch(tf.maximum(count, 1)))
    nothing = tf.data.Dataset.from_tensors(
        (tf.zeros([0], tf.int64), tuple(tf.zeros([0, h, w, 3]) for h, w in sizes)))
    # why the concatenation: a batch of none (every item failed, or an empty request) is no
    # element at all, and get_single_element needs exactly one
    indices, resized = decoded.concatenate(nothing).take(1).get_single_element()
    decoded_ok = tf.scatter_nd(indices[:, None], tf.ones_like(indices), [count])
    failed = tf.reshape(tf.where(tf.equal(decoded_ok, 0)), [-1])
    check = tf.debugging.Assert(
        tf.equal(tf.size(indices, out_type=tf.int64), count),
        ["image_bytes: the items at these positions could not be decoded (corrupt or "
         "truncated image files):", failed], summarize=20, name="check_decoded")
    with tf.control_dependencies([check]):
        return tuple(tf.identity(images) for images in resized)
