"""Finding the face in a photograph or video frame, before the model classifies it.

The models were trained on face crops (FER+: 48x48 faces; AffectNet: the annotated face box),
so a whole photograph must be cut down to its faces first. A detector here is any callable
`detector(rgb_image uint8 (H, W, 3)) -> list of (x, y, w, h)` boxes in pixels, so the
prediction code can be tested with a scripted detector, and a user can plug in a better one.

`HaarFaceDetector` is OpenCV's bundled Viola-Jones frontal-face cascade: it ships inside the
opencv-python(-headless) 4.x wheel (`cv2.data.haarcascades`), so nothing is downloaded.
OpenCV 5 dropped both the cascade files and `cv2.CascadeClassifier`, hence the `<5` pin.
A frontal-face cascade looks for the eye and brow pattern, so it misses most faces behind a VR
headset (the very users of this model): for them, crop the faces yourself and use
`whole_image` (`--no_detect` in experiments/predict.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height, in pixels
Detector = Callable[[np.ndarray], Sequence[Box]]

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def whole_image(image: np.ndarray) -> list[Box]:
    """The detector for inputs that are already face crops: one box, the whole image."""
    height, width = image.shape[:2]
    return [(0, 0, int(width), int(height))]


class HaarFaceDetector:
    """OpenCV's Haar cascade face detector (frontal faces).

    Settings are OpenCV's tutorial values: the image is converted to grey and histogram
    equalised, searched at scales 1.1 apart, and a face needs 5 overlapping detections.
    `min_size` (pixels) drops tiny boxes, which are mostly false positives. Boxes are returned
    left to right, so a frame's faces are numbered the same way every time.
    """

    def __init__(self, cascade: str | os.PathLike = DEFAULT_CASCADE, *,
                 scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: tuple[int, int] = (24, 24)):
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them); "
                "install opencv-python-headless<5, or run without detection (--no_detect)")
        path = Path(cascade)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / str(cascade)
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade {cascade!r} not found (looked in "
                                    f"{cv2.data.haarcascades})")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ValueError(f"{path}: OpenCV could not read this cascade file")
        self.path = path
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = tuple(int(s) for s in min_size)

    def __call__(self, image: np.ndarray) -> list[Box]:
        import cv2

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"HaarFaceDetector: expected a uint8 (H, W, 3) RGB image, got "
                             f"{image.dtype} {image.shape}")
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=self.min_size)
        boxes = [tuple(int(v) for v in box) for box in np.reshape(found, (-1, 4))]
        return sorted(boxes)

    def __repr__(self) -> str:
        return f"HaarFaceDetector({self.path.name!r})"


def clip(box: Box, height: int, width: int) -> Box | None:
    """`box` cut to the image (a detector may return a box reaching past the border); None
    when no pixel of it lies inside the image."""
    x, y, w, h = (int(v) for v in box)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, int(width)), min(y + h, int(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` (already clipped with `clip`)."""
    x, y, w, h = box
    return image[y:y + h, x:x + w]
