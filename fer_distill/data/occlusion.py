"""The views of a face: which pixels a model is allowed to see (paper, section III).

`occlude(images, view)` zeroes the hidden pixels of `(N, H, W, C)` images in pixel space, on
NumPy arrays or tf tensors (eager, `tf.function`, `tf.data`). A view is one of `VIEWS`
("full", "lower_half_visible": every student's input, "upper_half_visible": the eyes
baseline) or a binary `Mask` (True = visible) from an array, an image file or a named shape
(`MASK_SHAPES`); `resolve_view` and `view_name` read and name views.
Why: docs/DESIGN.md, "Views".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

VIEWS = ("full", "lower_half_visible", "upper_half_visible")


def _half_rows(height: int, width: int, *, keep_lower: bool) -> np.ndarray:
    visible = np.zeros((height, width), dtype=bool)
    if keep_lower:
        visible[height // 2:] = True  # rows [0, H//2) hidden
    else:
        visible[: height // 2] = True  # rows [H//2, H) hidden
    return visible


def _headset(height: int, width: int) -> np.ndarray:
    """A VR headset's silhouette: a rounded box over brows, eyes and nose bridge, nose notch.

    Proportions follow a face crop like FER+'s (eyes near 40% of the height): the box spans
    rows 10%..58%, columns 3%..97%, corners rounded by 15% of the width, and a notch 20% wide
    and 10% tall at the bottom centre leaves the nose tip visible.
    """
    y = (np.arange(height) + 0.5)[:, None] / height
    x = (np.arange(width) + 0.5)[None, :] / width
    top, bottom, left, right, radius = 0.10, 0.58, 0.03, 0.97, 0.15
    # rounded rectangle: distance from the inner rectangle shrunk by the corner radius
    dx = np.maximum(np.maximum(left + radius - x, x - (right - radius)), 0.0)
    dy = np.maximum(np.maximum(top + radius - y, y - (bottom - radius)), 0.0)
    inside_box = (dx ** 2 + dy ** 2 <= radius ** 2) & (x >= left) & (x <= right) & (y >= top) \
        & (y <= bottom)
    notch = (np.abs(x - 0.5) <= 0.10 * (1.0 - (bottom - y) / 0.10)) & (y >= bottom - 0.10)
    return ~(inside_box & ~notch)


def _surgical_mask(height: int, width: int) -> np.ndarray:
    """A surgical mask: hides nose tip, mouth and chin (rows 55%..100%, columns 12%..88%)."""
    y = (np.arange(height) + 0.5)[:, None] / height
    x = (np.arange(width) + 0.5)[None, :] / width
    hidden = (y >= 0.55) & (x >= 0.12) & (x <= 0.88)
    return ~hidden


MASK_SHAPES: dict[str, Callable[[int, int], np.ndarray]] = {
    "headset": _headset,
    "surgical_mask": _surgical_mask,
    # The complements: only what the occluder hides is visible. A scenario's "other view"
    # baseline, as the paper's eyes baseline [2] sees the half the headset hides
    # (fer_distill.scenarios).
    "under_headset": lambda height, width: ~_headset(height, width),
    "under_surgical_mask": lambda height, width: ~_surgical_mask(height, width),
}


class Mask:
    """A binary visibility mask usable as a view: True (or nonzero) = visible, False = hidden.

    A mask is defined at some resolution and drawn at any image size: named shapes are drawn
    analytically at the requested size; an array or file mask is resized with nearest neighbour
    (a binary mask must stay binary). Build one with `Mask(array)`, `Mask.from_file(path)` or
    `Mask.named("headset")`.
    """

    def __init__(self, visible: np.ndarray | None = None, *, name: str = "mask",
                 draw: Callable[[int, int], np.ndarray] | None = None):
        if (visible is None) == (draw is None):
            raise ValueError("Mask needs exactly one of a visibility array or a drawing function")
        if visible is not None:
            visible = np.asarray(visible)
            if visible.ndim == 3 and visible.shape[2] == 1:
                visible = visible[:, :, 0]
            if visible.ndim != 2 or visible.size == 0:
                raise ValueError(f"mask {name!r}: expected a 2-D (H, W) array, got shape "
                                 f"{visible.shape}")
            visible = visible != 0
        self._visible = visible
        self._draw = draw
        self.name = name
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def named(cls, name: str) -> "Mask":
        if name not in MASK_SHAPES:
            raise ValueError(f"unknown mask shape {name!r}; known: {sorted(MASK_SHAPES)}")
        return cls(draw=MASK_SHAPES[name], name=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Mask":
        """Reads an image file: black (0) pixels are hidden, every other pixel is visible."""
        import cv2  # why here: only mask files need OpenCV

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mask file {path} does not exist")
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"mask file {path}: not an image OpenCV can read")
        return cls(image, name=path.stem)

    def at(self, height: int, width: int) -> np.ndarray:
        """The mask drawn at (height, width): a bool array, True = visible."""
        key = (int(height), int(width))
        if key not in self._cache:
            if self._draw is not None:
                visible = np.asarray(self._draw(*key), dtype=bool)
            elif self._visible.shape == key:
                visible = self._visible
            else:
                import cv2  # why here: as above

                visible = cv2.resize(self._visible.astype(np.uint8), (key[1], key[0]),
                                     interpolation=cv2.INTER_NEAREST).astype(bool)
            self._cache[key] = visible
        return self._cache[key]

    def __repr__(self) -> str:
        return f"Mask({self.name!r})"


def resolve_view(view: str | Mask) -> str | Mask:
    """Turns a view spec into a view: a VIEWS name, a named mask shape, or a mask image file.

    Lets binaries take one string flag for all three kinds (`--view=headset`,
    `--view=/path/to/mask.png`).
    """
    if isinstance(view, Mask) or view in VIEWS:
        return view
    if isinstance(view, str):
        if view in MASK_SHAPES:
            return Mask.named(view)
        if os.path.isfile(view):
            return Mask.from_file(view)
    raise ValueError(f"unknown view {view!r}: expected one of {VIEWS}, a mask shape "
                     f"{sorted(MASK_SHAPES)}, or the path of a mask image file")


def view_name(view: str | Mask) -> str:
    """The name a view goes by in records and file names: the VIEWS or MASK_SHAPES name, a
    Mask's name, or a mask file's stem (a path would not fit in a file name)."""
    if not isinstance(view, str):
        return getattr(view, "name", str(view))
    if view in VIEWS or view in MASK_SHAPES:
        return view
    return Path(view).stem


def _visible_rows_or_mask(view: str | Mask, height: int, width: int) -> np.ndarray | None:
    """The (H, W) bool visibility of `view` at this size; None for "full"."""
    if view == "full":
        return None
    if view == "lower_half_visible":
        return _half_rows(height, width, keep_lower=True)
    if view == "upper_half_visible":
        return _half_rows(height, width, keep_lower=False)
    return view.at(height, width)


def occlude(images, view: str | Mask):
    """Returns `images` with the pixels hidden by `view` set to 0 (same type, dtype and shape).

    `images` is (N, H, W, C) or a single (H, W, C) image in pixel space, a NumPy array or a
    tf tensor (any dtype). "lower_half_visible" zeroes rows [0, H//2), "upper_half_visible"
    zeroes rows [H//2, H) (for odd H the middle row belongs to the lower half, as the paper's
    rows [H/2, H) rounded down), "full" returns the input unchanged. NumPy input gives a new
    NumPy array (the input is not modified); anything else goes through TensorFlow, so the
    function can be called inside `tf.function` and `tf.data` maps; an image size unknown until
    run time is handled there too.
    """
    view = resolve_view(view)
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"occlude: images must be (N, H, W, C) or (H, W, C), got shape "
                             f"{images.shape}")
        height, width = images.shape[-3], images.shape[-2]
        visible = _visible_rows_or_mask(view, height, width)
        if visible is None:
            return images.copy()
        return np.where(visible[:, :, None], images, np.zeros((), dtype=images.dtype))
    return _occlude_tf(images, view)


def _occlude_tf(images, view):
    import tensorflow as tf  # why here: NumPy users need not pay for importing TensorFlow

    images = tf.convert_to_tensor(images)
    rank = images.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"occlude: images must be (N, H, W, C) or (H, W, C), got shape "
                         f"{images.shape}")
    if view == "full":
        return tf.identity(images)
    height, width = images.shape[-3], images.shape[-2]
    if height is not None and width is not None:
        visible = tf.constant(_visible_rows_or_mask(view, height, width))
    elif isinstance(view, str):  # a half view with a run-time size: compare row numbers
        dynamic = tf.shape(images)
        h, w = dynamic[-3], dynamic[-2]
        rows = tf.range(h)[:, None]
        lower = rows >= h // 2
        visible = tf.broadcast_to(lower if view == "lower_half_visible" else ~lower,
                                  tf.stack([h, w]))
    else:  # a mask with a run-time size: draw it in Python once the size is known
        dynamic = tf.shape(images)
        visible = tf.numpy_function(lambda h, w: view.at(int(h), int(w)),
                                    [dynamic[-3], dynamic[-2]], tf.bool, stateful=False)
        visible.set_shape([None, None])
    return tf.where(visible[:, :, None], images, tf.zeros((), dtype=images.dtype))
