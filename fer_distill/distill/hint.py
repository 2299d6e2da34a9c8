"""A FitNets hint restricted to what the student can see (Romero et al., "FitNets", ICLR 2015,
eq. 3), beyond the paper.

    L_hint = 1/(B·|V|·C) · Σ_b Σ_{p ∈ V} Σ_c (r(F_S)_{b,p,c} − F_T_{b,p,c})²

with F_S, F_T the student's and the teacher's maps at the hint layer (`HINT_LAYERS`, same
spatial size), r a 1x1 convolution, and V the positions whose cell of the input is at least
half visible in the student's view (`visible_positions(view, S, h, w)`). Call
`masked_hint_loss(r(F_S), F_T, visible)`; the teacher's side is a constant.
Why masked, and why a mean: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from fer_distill.data.occlusion import occlude

# The hint layer per architecture: the last convolutional block before the pooling that
# feeds the fully connected part (our choice, the usual FitNets-style "middle" hint moved to
# the last spatial map, where the networks' features are most class-specific).
HINT_LAYERS = {
    "vgg_f": "relu5",  # 13x13x256, before pool5
    "vgg_face": "relu5_3",  # 14x14x512, before pool5
    "resnet50": "res5c_relu",  # 7x7x2048, before pool5 (the global average)
    "mini": "relu2",  # ceil(S/2) x ceil(S/2) x 32, before pool2
}
# A position is visible when at least this share of its input cell is visible.
VISIBLE_SHARE = 0.5


def visible_positions(view, image_size: int, map_height: int, map_width: int) -> np.ndarray:
    """(map_height, map_width) bool: the feature-map positions the hint is averaged over.

    The view's pixel visibility (`fer_distill.data.occlusion`) at `image_size`, area-resized
    to the map (each position's share of visible pixels in its cell), kept where the share is
    >= VISIBLE_SHARE. Raises ValueError when no position is visible.
    """
    ones = np.ones((int(image_size), int(image_size), 1), np.float32)
    pixels = occlude(ones, view)[..., 0]
    share = tf.image.resize(pixels[None, :, :, None], (int(map_height), int(map_width)),
                            method="area").numpy()[0, :, :, 0]
    visible = share >= VISIBLE_SHARE - 1e-6
    if not visible.any():
        raise ValueError(f"hint: view {view!r} leaves no visible position on a "
                         f"{map_height}x{map_width} feature map")
    return visible


def masked_hint_loss(student_regressed, teacher_features, visible) -> tf.Tensor:
    """L_hint of the module docstring, a float32 scalar.

    Args:
      student_regressed: r(F_S), (B, H, W, C).
      teacher_features: F_T, (B, H, W, C); a constant for the gradient.
      visible: (H, W) bool (or 0/1), True where the student sees.

    Worked example (checked in tests): B = 1, C = 1, a 2x2 map whose top row is hidden;
    r(F_S) = [[9, 9], [1, 2]], F_T = [[0, 0], [3, 2]] → visible squared errors 4 and 0 →
    L_hint = 4/2 = 2 (the 9s and 0s of the top row do not count).
    """
    student = tf.cast(student_regressed, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher_features, tf.float32))
    if student.shape.rank != 4 or not student.shape.is_compatible_with(teacher.shape):
        raise ValueError(f"masked_hint_loss: student {student.shape} and teacher "
                         f"{teacher.shape} must be the same (B, H, W, C)")
    mask = tf.cast(tf.convert_to_tensor(visible), tf.float32)
    if mask.shape.rank != 2 or (student.shape[1:3].is_fully_defined()
                                and mask.shape != student.shape[1:3]):
        raise ValueError(f"masked_hint_loss: visible must be (H, W) = {student.shape[1:3]}, "
                         f"got {mask.shape}")
    # why tf.where, not a product: a hidden position's error must not reach the sum even when
    # it is inf or NaN.
    squared = tf.where(mask[None, :, :, None] > 0.0, tf.square(student - teacher), 0.0)
    count = (tf.cast(tf.shape(student)[0], tf.float32) * tf.reduce_sum(mask)
             * tf.cast(tf.shape(student)[3], tf.float32))
    return tf.reduce_sum(squared) / tf.maximum(count, 1.0)
