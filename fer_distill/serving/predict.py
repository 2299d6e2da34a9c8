"""Expressions of the faces in image files, folders and videos, as one CSV.

    predictor = Predictor.load(path)   # SavedModel, TFLite, ONNX, run directory or .keras
    predict_files(predictor, paths, output_csv, detector=BlazeFaceDetector())

walks the inputs (images, folders recursively, every n-th video frame), finds faces
(`faces.py`; detector None = each input already is a crop), and writes atomically one row
per face: file, frame, face, x, y, w, h, status ("ok", "no_face", "unreadable"), crop, class,
prob_<class name> x C, error. `annotate_dir` also writes each image with its boxes.
What each column means, and why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from fer_distill.atomic import atomic_path
from fer_distill.data.occlusion import occlude
from fer_distill.serving import export, onnx_model, tflite
from fer_distill.serving import precision as precisions
from fer_distill.serving.export import ServingModule
from fer_distill.serving.faces import Box, Detector, clip, crop, whole_image
from fer_distill.serving.servable import load_servable

DEMO_DATASET = "demo"

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm",
                  ".pbm", ".jp2")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                  ".flv")
OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"
MISSING = "missing"  # a Source kind: the path given does not exist


class Predictor:
    """Face crops (uint8 RGB, any sizes) → predictions, from a SavedModel or a Keras model.

    `Predictor.load(path)` takes an exported SavedModel directory, a TFLite export directory,
    an ONNX file, a run directory, a fuse run or a `.keras` file (`view` as in
    `fer_distill.serving.servable.load_servable`; an export's view is part of its graph and
    cannot be changed). A model trained on the synthetic demo set logs a warning: its labels
    mean nothing on real faces (`trained_on_demo`).
    """

    def __init__(self, predict_images, serve_encoded, metadata: dict, owner=None):
        self._predict_images = predict_images
        self._serve_encoded = serve_encoded
        self.metadata = dict(metadata)
        self._owner = owner  # keeps the module / loaded SavedModel alive

    @classmethod
    def from_servable(cls, servable, precision: str = "float32") -> "Predictor":
        """`precision`: "float32" (the ServingModule export saves), "bfloat16" (bfloat16
        weights, `precision.bfloat16_servable`), "int8" (the TFLite dynamic-range graph) or
        "auto" (`precision.choose_precision`: the fastest of those on this machine that agrees
        with float32; `metadata["precision"]` records what it chose and why)."""
        if precision == "float32":
            module = ServingModule(servable)
            return cls(module.predict_images, module.serve_encoded,
                       {**module.metadata_dict, "precision": {"chosen": "float32"}}, module)
        if precision == "auto":
            chosen, runners, record = precisions.choose_precision(servable)
            run = runners[chosen]
        elif precision in precisions.PRECISIONS:
            run, record = precisions.runner(servable, precision), {"chosen": precision,
                                                                   "reason": "asked for"}
        else:
            raise ValueError(f"precision must be one of {precisions.PRECISIONS} or 'auto', "
                             f"got {precision!r}")
        metadata = {**ServingModule(servable).metadata_dict, "precision": record}
        return cls.from_runner(run, metadata, owner=run)

    @classmethod
    def from_runner(cls, run, metadata: dict, owner=None) -> "Predictor":
        """A Predictor around `run` (uint8 RGB images (N, H, W, 3) -> dict of NumPy arrays
        with "class_id"): it adds "class_name" from `metadata["class_names"]` and serves
        encoded crops one by one (a runner takes one image size per call, as the SavedModel's
        serving_default resizes each crop on its own)."""
        names = np.asarray(metadata["class_names"], dtype=object)

        def predict_images(images):
            out = dict(run(np.asarray(images)))
            out["class_name"] = names[np.asarray(out["class_id"], dtype=np.int64)].astype(bytes)
            return {key: tf.constant(value) for key, value in out.items()}

        def serve_encoded(image_bytes):
            parts = []
            for encoded in np.asarray(image_bytes).reshape(-1):
                image = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
                parts.append({k: v.numpy() for k, v in predict_images(image[None]).items()})
            return {key: tf.constant(np.concatenate([p[key] for p in parts]))
                    for key in parts[0]}

        return cls(predict_images, serve_encoded, metadata, owner)

    @classmethod
    def load(cls, path: str | os.PathLike, *, view: str | None = None,
             kd_student=None, triplet_student=None, precision: str = "float32") -> "Predictor":
        """`precision` (see `from_servable`) applies to a run or model file; an export runs at
        the precision it was written in."""
        predictor = cls._load(Path(path), view, kd_student, triplet_student, precision)
        if predictor.trained_on_demo:
            log.warning("%s was trained on the synthetic demo set (32x32 drawn faces): its "
                        "labels on real photographs mean nothing; train on FER+ or AffectNet "
                        "(README, 'Reproducing Table I')", path)
        return predictor

    @classmethod
    def _load(cls, path: Path, view, kd_student, triplet_student, precision) -> "Predictor":
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        is_export = (path.suffix.lower() == ".onnx" or (path / "model.tflite").is_file()
                     or (path / "saved_model.pb").is_file())
        if is_export and precision != "float32":
            raise ValueError(f"{path} is an export, which runs at the precision it was "
                             f"written in; precision {precision!r} applies to a run or "
                             "model file")
        if path.is_file() and path.suffix.lower() == ".onnx":
            runner, metadata = onnx_model.load_runner(path)
            predictor = cls.from_runner(runner, metadata, owner=runner)
            if view is not None and view != predictor.view:
                raise ValueError(f"{path}: this ONNX export applies view {predictor.view!r} "
                                 f"inside its graph; it cannot run with view {view!r}")
            return predictor
        if path.is_dir() and (path / "model.tflite").is_file():
            recorded = tflite.read_metadata(path)["view"]
            if view is not None and view != recorded:
                raise ValueError(f"{path}: this TFLite export applies view {recorded!r} inside "
                                 f"its graph; it cannot run with view {view!r}")
            runner, metadata = tflite.load_runner(path)
            return cls.from_runner(runner, metadata, owner=runner)
        if path.is_dir() and (path / "saved_model.pb").is_file():
            metadata = export.read_metadata(path)
            if view is not None and view != metadata["view"]:
                raise ValueError(f"{path}: this SavedModel applies view {metadata['view']!r} "
                                 f"inside its graph; it cannot run with view {view!r} (export "
                                 "again with that view)")
            loaded = tf.saved_model.load(str(path))
            return cls(loaded.predict_images, loaded.serve_encoded, metadata, loaded)
        return cls.from_servable(load_servable(path, view=view, kd_student=kd_student,
                                               triplet_student=triplet_student),
                                 precision=precision)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.metadata["class_names"])

    @property
    def view(self) -> str:
        return self.metadata["view"]

    @property
    def trained_on_demo(self) -> bool:
        """Whether the model's run recorded the synthetic demo set as its training data."""
        return self.metadata.get("source", {}).get("dataset") == DEMO_DATASET

    def __call__(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Predictions for uint8 RGB crops (H_i, W_i, 3): the export's outputs as NumPy."""
        crops = [np.asarray(c) for c in crops]
        for i, c in enumerate(crops):
            if c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 3 or 0 in c.shape:
                raise ValueError(f"crop {i}: expected a non-empty uint8 (H, W, 3) RGB image, "
                                 f"got {c.dtype} {c.shape}")
        if not crops:
            raise ValueError("Predictor: no crops given")
        if len({c.shape for c in crops}) == 1:
            out = self._predict_images(tf.constant(np.stack(crops)))
        else:
            out = self._serve_encoded(tf.constant([encode_png(c) for c in crops]))
        return {key: value.numpy() for key, value in out.items()}


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 RGB image as PNG bytes (lossless; fast compression level)."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not PNG-encode an image of shape {image.shape}")
    return buffer.tobytes()


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input file: `kind` "image" or "video"; `root` is the argument it was found under."""

    path: Path
    kind: str
    root: Path

    @property
    def relative(self) -> Path:
        return self.path.relative_to(self.root) if self.root != self.path else Path(
            self.path.name)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def find_inputs(paths: Sequence[str | os.PathLike]) -> list[Source]:
    """Image and video files: files as given (an unknown suffix is read as an image), folders
    searched recursively for known suffixes (other files skipped), in sorted order. A path that
    does not exist is kept as a `MISSING` source (it becomes an "unreadable" row), unless no
    path given exists: then FileNotFoundError."""
    if not paths:
        raise ValueError("no inputs given: pass image files, folders or video files")
    if not any(Path(given).exists() for given in paths):
        raise FileNotFoundError(f"input not found: {', '.join(map(str, paths))}")
    sources = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            sources.append(Source(path, MISSING, path))
        elif path.is_dir():
            found = [Source(p, _kind(p), path) for p in sorted(path.rglob("*"))
                     if p.is_file() and _kind(p)]
            if not found:
                log.warning("no image or video files (%s) under %s",
                            ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES), path)
            sources.extend(found)
        else:
            sources.append(Source(path, _kind(path) or "image", path))
    if not sources:
        raise ValueError(f"no image or video files found in {', '.join(map(str, paths))}")
    return sources


@dataclass
class Frame:
    """An image or a sampled video frame (RGB uint8), or the reason it could not be read."""

    source: Source
    index: int | None
    image: np.ndarray | None = None
    error: str | None = None


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); ValueError naming the file when it is unreadable."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"{path}: the file is empty")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as error:
        image, reason = None, str(error).strip()
    else:
        reason = "OpenCV cannot decode it as an image (corrupt, truncated or not an image)"
    if image is None:
        raise ValueError(f"{path}: {reason}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def video_frame_count(path: Path) -> int:
    """The frame count the container declares (0 when unknown)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if capture.isOpened() else 0
    finally:
        capture.release()


def read_frames(source: Source, every_nth_frame: int = 1) -> Iterator[Frame]:
    """The image, or frames 0, n, 2n, ... of the video; an unreadable file gives one Frame with
    `error` set."""
    if source.kind == MISSING:
        yield Frame(source, None, error=f"{source.path}: input not found")
        return
    if source.kind == "image":
        try:
            yield Frame(source, None, read_image(source.path))
        except ValueError as error:
            yield Frame(source, None, error=str(error))
        return
    capture = cv2.VideoCapture(str(source.path))
    try:
        if not capture.isOpened():
            yield Frame(source, None, error=f"{source.path}: OpenCV cannot open it as a video")
            return
        index, read_any = 0, False
        while capture.grab():  # why grab: skipped frames are not decoded
            read_any = True
            if index % every_nth_frame == 0:
                ok, bgr = capture.retrieve()
                if not ok:
                    yield Frame(source, index, error=f"{source.path}: frame {index} could not "
                                "be decoded")
                else:
                    yield Frame(source, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if not read_any:
            yield Frame(source, None, error=f"{source.path}: no frame could be read from it")
    finally:
        capture.release()


# -- the run -----------------------------------------------------------------------------------


def csv_columns(class_names: Sequence[str]) -> list[str]:
    return ["file", "frame", "face", "x", "y", "w", "h", "status", "crop", "class",
            *(f"prob_{name}" for name in class_names), "error"]


def _annotation_path(annotate_dir: Path, frame: Frame, taken: set) -> Path:
    """DIR/<sub__dirs__stem>[.frameNNNNNN].jpg; the source's suffix is kept (`a.png.jpg`) only
    when two inputs would otherwise share a name (a.png beside a.jpg)."""
    parts = frame.source.relative.parts
    flat = "__".join([*parts[:-1], Path(parts[-1]).stem])
    frame_part = "" if frame.index is None else f".frame{frame.index:06d}"
    name = f"{flat}{frame_part}.jpg"
    owner = taken.setdefault(name, frame.source.path)
    if owner != frame.source.path:
        name = f"{'__'.join(parts)}{frame_part}.jpg"
    return annotate_dir / name


def _hidden(box: Box, view) -> np.ndarray:
    """Boolean (h, w): the pixels of a face box that the model's view hides."""
    _, _, w, h = box
    return occlude(np.ones((1, h, w, 1), np.float32), view)[0, ..., 0] == 0


def _draw(image: np.ndarray, boxes: Sequence[Box], labels: Sequence[str],
          view=None) -> np.ndarray:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    height, width = bgr.shape[:2]
    scale = max(0.35, min(height, width) / 600)
    thickness = max(1, round(scale * 2))
    for box in boxes if view is not None else ():
        x, y, w, h = box
        hidden = _hidden(box, view)
        region = bgr[y:y + h, x:x + w]
        region[hidden] = (region[hidden] * 0.3).astype(np.uint8)  # what the model does not see
    for (x, y, w, h), label in zip(boxes, labels):
        cv2.rectangle(bgr, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), thickness)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else y + 1  # inside when no room
        cv2.rectangle(bgr, (x, top), (x + tw + 2, top + th + base + 2), (0, 255, 0), -1)
        cv2.putText(bgr, label, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
    return bgr


def _write_jpeg(path: Path, bgr: np.ndarray) -> None:
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"could not encode the annotated image {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.tobytes())


def _progress_total(sources: Sequence[Source], every_nth_frame: int) -> int | None:
    total = 0
    for source in sources:
        if source.kind == "image":
            total += 1
        else:
            frames = video_frame_count(source.path)
            if frames == 0:
                return None  # unknown length: a bar without a total
            total += math.ceil(frames / every_nth_frame)
    return total


def predict_files(
    predictor: Predictor,
    paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    detector: Detector | None = None,
    batch_size: int = 32,
    every_nth_frame: int = 1,
    annotate_dir: str | os.PathLike | None = None,
    progress: bool = False,
    fallback: Detector | None = None,
) -> dict:
    """Writes the predictions CSV for `paths` to `output` (see the module docstring).

    `detector=None` treats every image or frame as one face crop. `fallback` (e.g.
    `faces.center_crop`) gives the boxes of a frame in which the detector found none. Returns
    a summary: {"output", "frames", "faces", "no_face", "fallback", "unreadable": [file, ...]}
    ("no_face" counts frames the detector found no face in, with or without a fallback).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if int(every_nth_frame) < 1:
        raise ValueError(f"every_nth_frame must be >= 1, got {every_nth_frame!r}")
    batch_size, every_nth_frame = int(batch_size), int(every_nth_frame)
    detector = detector or whole_image
    annotate_dir = Path(annotate_dir) if annotate_dir is not None else None
    sources = find_inputs(paths)
    names = predictor.class_names
    summary = {"output": str(output), "frames": 0, "faces": 0, "no_face": 0, "fallback": 0,
               "unreadable": []}
    taken: dict = {}  # annotation file names already used, and by which source

    # frame, its boxes, what produced them, first crop's index
    pending: list[tuple[Frame, list[Box], str, int]] = []
    crops: list[np.ndarray] = []

    def flush(writer):
        results = predictor(crops) if crops else None
        for frame, boxes, made_by, start in pending:
            file = str(frame.source.path)
            frame_no = "" if frame.index is None else frame.index
            if frame.error is not None:
                writer.writerow([file, frame_no, "", "", "", "", "", UNREADABLE, "", "",
                                 *[""] * len(names), frame.error])
                continue
            if not boxes:
                writer.writerow([file, frame_no, "", "", "", "", "", NO_FACE, made_by, "",
                                 *[""] * len(names), ""])
            labels = []
            for face, box in enumerate(boxes):
                probs = results["probabilities"][start + face]
                name = names[int(results["class_id"][start + face])]
                writer.writerow([file, frame_no, face, *box, OK, made_by, name,
                                 *(f"{p:.9g}" for p in probs), ""])
                labels.append(f"{name} {float(np.max(probs)):.2f}")
            if annotate_dir is not None:
                _write_jpeg(_annotation_path(annotate_dir, frame, taken),
                            _draw(frame.image, boxes, labels, predictor.view))
        pending.clear()
        crops.clear()

    total = _progress_total(sources, every_nth_frame) if progress else None
    with atomic_path(output) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f, \
            tqdm(total=total, unit="frame", disable=not progress, desc="predict") as bar:
        writer = csv.writer(f)
        writer.writerow(csv_columns(names))
        for source in sources:
            for frame in read_frames(source, every_nth_frame):
                bar.update(1)
                boxes, made_by = [], _name(detector)
                if frame.error is not None:
                    log.warning("skipping unreadable input: %s", frame.error)
                    summary["unreadable"].append(str(source.path))
                else:
                    summary["frames"] += 1
                    height, width = frame.image.shape[:2]
                    boxes = _boxes(detector, frame.image)
                    summary["no_face"] += not boxes
                    if not boxes and fallback is not None:
                        boxes, made_by = _boxes(fallback, frame.image), _name(fallback)
                        summary["fallback"] += bool(boxes)
                    summary["faces"] += len(boxes)
                pending.append((frame, boxes, made_by, len(crops)))
                crops.extend(np.ascontiguousarray(crop(frame.image, b)) for b in boxes)
                if annotate_dir is None:
                    frame.image = None  # why: only the crops are needed from here on
                if len(crops) >= batch_size or len(pending) >= batch_size:
                    flush(writer)
        flush(writer)
    return summary


def _name(detector) -> str:
    return str(getattr(detector, "name", None) or getattr(detector, "__name__", "detector"))


def _boxes(detector, image: np.ndarray) -> list[Box]:
    height, width = image.shape[:2]
    return [b for b in (clip(b, height, width) for b in detector(image)) if b is not None]
