"""AffectNet (Mollahosseini et al. 2017, manually annotated part) prepared as the paper did.

    prepare_affectnet(raw_dir, output, validation="official" | "holdout", max_missing=0)

`raw_dir` holds the release's `Manually_Annotated_file_lists/{training,validation}.csv` and
`Manually_Annotated_Images/`. `select_training` keeps expression codes 0-7 and caps every class
at 15000 images (88,021 on the real counts); the official validation set is the `test` split.
Faces are cropped to the CSV's box and stored as 224x224 RGB uint8.
Why, and the details (validation split, bad images): docs/DESIGN.md, "Prepared data".
"""
from __future__ import annotations

import csv
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
from tqdm import tqdm

from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.prepared import SPLITS, PreparedWriter

COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
REQUIRED = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
            "expression")
CODE_NAMES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear",
              5: "disgust", 6: "anger", 7: "contempt", 8: "none", 9: "uncertain",
              10: "non-face"}
KEPT_CODES = tuple(range(8))
# AffectNet code -> index into CLASS_NAMES (FER+ order), by name
CODE_TO_LABEL = np.array([CLASS_NAMES.index(CODE_NAMES[c]) for c in KEPT_CODES], dtype=np.int32)
PER_CLASS_CAP = 15000
IMAGE_SIZE = 224
VALIDATION_MODES = ("official", "holdout")


@dataclass
class FileList:
    """One AffectNet file list: per row the image path, face box, expression code, CSV line."""

    path: Path
    has_header: bool
    images: list[str]
    boxes: np.ndarray  # int64 (N, 4): x, y, width, height
    codes: np.ndarray  # int64 (N,)
    lines: np.ndarray  # int64 (N,), 1-based line in the file


def read_file_list(path: str | os.PathLike) -> FileList:
    """Reads training.csv / validation.csv, detecting whether its first line is a header.

    With a header, columns are found by name (REQUIRED must be there); without one, the row
    must have the 9 columns of COLUMNS in that order. Codes outside 0-10 are an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AffectNet file list {path} does not exist")
    images, boxes, codes, lines = [], [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first is None:
            raise ValueError(f"{path}: empty file")
        has_header = any(field.strip() in REQUIRED for field in first)
        if has_header:
            header = [h.strip() for h in first]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ValueError(f"{path}, line 1: header lacks columns {missing}; expected "
                                 f"{','.join(COLUMNS)}")
            width = len(header)
            rows = reader
            start = 2
        else:
            header = list(COLUMNS)
            width = len(COLUMNS)
            rows = _chain(first, reader)
            start = 1
        at = {name: header.index(name) for name in REQUIRED}
        for line, row in enumerate(rows, start=start):
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"{path}, line {line}: {len(row)} columns, expected {width} "
                                 f"({','.join(header)})")
            try:
                code = int(row[at["expression"]])
                box = [int(float(row[at[c]])) for c in REQUIRED[1:5]]
            except ValueError:
                raise ValueError(f"{path}, line {line}: face box and expression must be numbers, "
                                 f"got {[row[at[c]] for c in REQUIRED[1:]]}") from None
            if code not in CODE_NAMES:
                raise ValueError(f"{path}, line {line}: unknown expression code {code}; AffectNet "
                                 f"uses 0-10 ({CODE_NAMES})")
            images.append(row[at["subDirectory_filePath"]].strip())
            boxes.append(box)
            codes.append(code)
            lines.append(line)
    return FileList(path, has_header, images, np.asarray(boxes, np.int64).reshape(-1, 4),
                    np.asarray(codes, np.int64), np.asarray(lines, np.int64))


def _chain(first, rest):
    yield first
    yield from rest


def select_training(codes: np.ndarray, *, cap: int = PER_CLASS_CAP, seed: int = 0) -> np.ndarray:
    """Rows kept for training: codes 0-7, each class above `cap` down-sampled to `cap`.

    Returns the kept row numbers in file order. The down-sampling draws, class by class in code
    order, from one NumPy PCG64 generator seeded with `seed`: the same seed, the same rows.
    """
    codes = np.asarray(codes)
    rng = np.random.default_rng(int(seed))
    kept = []
    for code in KEPT_CODES:
        rows = np.flatnonzero(codes == code)
        if len(rows) > cap:
            rows = rng.choice(rows, size=cap, replace=False)
        kept.append(rows)
    return np.sort(np.concatenate(kept)).astype(np.int64)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A bool mask over `labels` marking round(fraction · n_c) rows of every class c."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng([int(seed), 1])  # why [seed, 1]: independent of the cap's draw
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        held[rng.choice(rows, size=int(round(fraction * len(rows))), replace=False)] = True
    return held


def find_release(raw_dir: str | os.PathLike, *, need_images: bool = True) -> dict[str, Path]:
    """Finds the file lists and the image folder of an AffectNet release under `raw_dir`."""
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw AffectNet directory {raw} does not exist")
    lists = next((d for d in (raw / "Manually_Annotated_file_lists", raw)
                  if (d / "training.csv").is_file() and (d / "validation.csv").is_file()), None)
    images = next((d for d in (raw / "Manually_Annotated_Images",
                               raw / "Manually_Annotated" / "Manually_Annotated_Images")
                   if d.is_dir()), None)
    if lists is None or (need_images and images is None):
        raise FileNotFoundError(
            f"no AffectNet release in {raw}. Known layout: RAW/Manually_Annotated_file_lists/"
            "{training,validation}.csv and RAW/Manually_Annotated_Images/<subdir>/<file> (also "
            "RAW/Manually_Annotated/Manually_Annotated_Images). Found: file lists "
            f"{str(lists) if lists else None}, images {str(images) if images else None}")
    return {"training": lists / "training.csv", "validation": lists / "validation.csv",
            "images": images}


class ImageProblem(ValueError):
    """An image that cannot be used; `kind` is one of PROBLEM_KINDS, the message names it."""

    def __init__(self, path, kind: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.kind, self.detail = kind, detail


PROBLEM_KINDS = ("missing", "unreadable", "truncated", "face box outside the image")


def decode_face(path: str | os.PathLike, box, *, crop: bool = True,
                size: int = IMAGE_SIZE) -> np.ndarray:
    """One image as RGB uint8 (size, size, 3), cropped to `box` = (x, y, w, h).

    Raises `ImageProblem` when the file is missing, not a readable image, a JPEG cut short
    (libjpeg would fill the rest with grey and only warn), or when its face box lies wholly
    outside the image.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageProblem(path, "missing", "no such file") from None
    except OSError as error:
        raise ImageProblem(path, "unreadable", f"cannot be read ({error.strerror})") from None
    if _jpeg_truncated(data):
        raise ImageProblem(path, "truncated", f"truncated JPEG: its {len(data)} bytes end "
                           "before the end-of-image marker")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageProblem(path, "unreadable", f"not a readable image ({len(data)} bytes)")
    if crop:
        x, y, w, h = (int(v) for v in box)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            raise ImageProblem(path, "face box outside the image",
                               f"face box x={x}, y={y}, width={w}, height={h} lies outside the "
                               f"{image.shape[1]}x{image.shape[0]} image")
        image = image[y0:y1, x0:x1]
    shrinking = image.shape[0] > size or image.shape[1] > size
    image = cv2.resize(image, (size, size),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_face(path: str | os.PathLike, box, *, crop: bool = True,
              size: int = IMAGE_SIZE) -> np.ndarray | None:
    """`decode_face`, or None when the image cannot be used."""
    try:
        return decode_face(path, box, crop=crop, size=size)
    except ImageProblem:
        return None


def _jpeg_truncated(data: bytes) -> bool:
    """True for a JPEG whose entropy-coded data has no end-of-image marker (FFD9) after it.

    The header segments are walked by their lengths to the first start-of-scan, so an EXIF
    thumbnail's own FFD9 (inside an APP segment) does not count. Not a JPEG: False.
    """
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a marker: a malformed header, left to the decoder to judge
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: the image ends at EOI, after the scan data
            return data.find(b"\xff\xd9", pos + 2 + length) == -1
        pos += 2 + length
    return True  # the file ends inside its headers


def _decode_into(target: np.ndarray, paths: list[Path], boxes: np.ndarray, *, crop: bool,
                 size: int, workers: int, desc: str, progress: bool) -> list[ImageProblem | None]:
    """Decodes `paths` into `target` with `workers` threads; returns the problem of each image
    (None: decoded).

    At most a small window of decoded images waits in memory: results are taken in order while
    the threads run ahead by at most 8 images each.
    """
    problems: list[ImageProblem | None] = [None] * len(paths)
    bar = None
    if progress:
        bar = tqdm(total=len(paths), desc=desc, unit="img", file=sys.stderr, mininterval=1.0,
                   disable=None)  # disable=None: no bar when stderr is not a terminal
    window = 8 * workers
    pending: deque = deque()
    submitted = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(len(paths)):
            while submitted < len(paths) and len(pending) < window:
                pending.append(pool.submit(decode_face, paths[submitted], boxes[submitted],
                                           crop=crop, size=size))
                submitted += 1
            try:
                target[i] = pending.popleft().result()
            except ImageProblem as problem:
                problems[i] = problem
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return problems


def prepare_affectnet(
    raw_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    crop_faces: bool = True,
    manifest_only: bool = False,
    per_class_cap: int = PER_CLASS_CAP,
    seed: int = 0,
    validation: str = "official",
    holdout_fraction: float = 0.1,
    max_missing: int = 0,
    image_size: int = IMAGE_SIZE,
    workers: int | None = None,
    source: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepares AffectNet from `raw_dir` into `output` (docs/DESIGN.md, "Prepared data");
    returns summary.json's content. `manifest_only` writes the selection (labels, manifest, counts)
    without opening a single image, so the split can be checked before the long decode."""
    if validation not in VALIDATION_MODES:
        raise ValueError(f"validation must be one of {VALIDATION_MODES}, got {validation!r}")
    release = find_release(raw_dir, need_images=not manifest_only)
    training = read_file_list(release["training"])
    official = read_file_list(release["validation"])

    train_rows = select_training(training.codes, cap=per_class_cap, seed=seed)
    test_rows = np.flatnonzero(np.isin(official.codes, KEPT_CODES))
    selection = {"train": (training, train_rows), "test": (official, test_rows)}
    info: dict[str, Any] = {
        "file_lists": {"training": str(release["training"]),
                       "validation": str(release["validation"])},
        "header_present": {"training": training.has_header,
                           "validation": official.has_header},
        "codes": {str(c): n for c, n in CODE_NAMES.items()},
        "kept_codes": list(KEPT_CODES),
        "training_counts_per_code": {str(c): int((training.codes == c).sum())
                                     for c in CODE_NAMES},
        "per_class_cap": int(per_class_cap),
        "seed": int(seed),
        "test": "AffectNet's official validation set (codes 0-7), on which the paper reports "
                "accuracy",
    }
    if validation == "official":
        selection["validation"] = selection["test"]
        info["validation"] = (
            "validation == test: the official validation images. The paper evaluates on them "
            "and describes no other held-out set for its learning-rate schedule, so this "
            "reproduces its setting; use validation='holdout' (--affectnet_validation=holdout) "
            "for a schedule that never sees test images")
    else:
        labels = CODE_TO_LABEL[training.codes[train_rows]]
        held = stratified_holdout(labels, holdout_fraction, seed)
        selection["validation"] = (training, train_rows[held])
        selection["train"] = (training, train_rows[~held])
        info["validation"] = (f"holdout: a stratified {holdout_fraction:g} of the selected "
                              f"training images (seed {seed}), removed from train")
    info["crop_faces"] = bool(crop_faces)
    info["image_size"] = int(image_size)
    info["resize"] = ("face box crop (clipped to the image), then cv2.INTER_AREA when shrinking, "
                      "INTER_LINEAR when enlarging, to the models' input size")
    if release["images"] is not None:
        info["images"] = str(release["images"])
    info.update(source or {})

    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    missing: dict[str, list[str]] = {}
    kept_rows: dict[str, np.ndarray] = {}
    with PreparedWriter(output, dataset="affectnet", image_shape=(image_size, image_size, 3),
                        manifest_only=manifest_only, source=info) as writer:
        for split in ("train", "test", "validation"):  # test before validation: it may share
            file_list, rows = selection[split]
            if not manifest_only:
                if split == "validation" and validation == "official":
                    writer.share_images("validation", "test")
                    rows, missing[split] = kept_rows["test"], []  # counted under test already
                else:
                    rows, missing[split] = _decode_split(
                        writer, split, file_list, rows, release["images"], crop=crop_faces,
                        size=image_size, workers=workers, max_missing=max_missing,
                        already=sum(map(len, missing.values())), progress=progress)
                kept_rows[split] = rows
            codes = file_list.codes[rows]
            extra = {
                "expression": codes.tolist(),
                **{c: file_list.boxes[rows, k].tolist()
                   for k, c in enumerate(("face_x", "face_y", "face_width", "face_height"))},
                "line": file_list.lines[rows].tolist(),
            }
            writer.add_split(split, CODE_TO_LABEL[codes],
                             [file_list.images[r] for r in rows], extra=extra)
        writer.source["missing_images"] = (
            "not checked (manifest only)" if manifest_only
            else {s: missing[s] for s in SPLITS})
    return json.loads((Path(output) / "summary.json").read_text(encoding="utf-8"))


def _decode_split(writer: PreparedWriter, split: str, file_list: FileList, rows: np.ndarray,
                  image_dir: Path, *, crop: bool, size: int, workers: int, max_missing: int,
                  already: int, progress: bool) -> tuple[np.ndarray, list[str]]:
    """Decodes one split into the writer's memmap; returns the rows kept and the names lost.

    Missing files are found by a cheap stat before anything is decoded (so a wrong --raw fails
    in seconds); unreadable ones while decoding, after which the split is compacted.
    """
    names = [file_list.images[r] for r in rows]
    paths = [image_dir / n for n in names]
    absent = np.array([not p.is_file() for p in paths], dtype=bool)
    absent_names = [n for n, a in zip(names, absent) if a]
    if already + len(absent_names) > max_missing:
        raise ValueError(f"{already + len(absent_names)} AffectNet images are missing under "
                         f"{image_dir} (first in {split}: {absent_names[:5]}); allowed: "
                         f"{max_missing} (--max_missing)")
    present = rows[~absent]
    target = writer.new_images(split, len(present))
    problems = _decode_into(target, [p for p, a in zip(paths, absent) if not a],
                            file_list.boxes[present], crop=crop, size=size, workers=workers,
                            desc=f"AffectNet {split}", progress=progress)
    target.flush()
    del target
    failed = np.array([p is not None for p in problems], dtype=bool)
    unusable = {file_list.images[r]: p for r, p in zip(present, problems) if p is not None}
    total = already + len(absent_names) + len(unusable)
    if total > max_missing:
        kinds = [p.kind for p in unusable.values()] + ["missing"] * len(absent_names)
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in PROBLEM_KINDS if k in kinds)
        first = "; ".join(f"{name}: {p.detail}" for name, p in list(unusable.items())[:3])
        raise ValueError(f"{total} AffectNet images cannot be used under {image_dir} (in "
                         f"{split}: {counts}; first: {first}); allowed: {max_missing} "
                         "(--max_missing)")
    if unusable:
        writer.keep_images(split, ~failed)
        writer.source.setdefault("image_problems", {})[split] = {
            name: p.detail for name, p in unusable.items()}
    return present[~failed], absent_names + list(unusable)
