"""The prepared data set: decoded images stored once, read back as memory maps.

    with PreparedWriter(out, dataset="ferplus", image_shape=(48, 48, 1)) as writer: ...
    prepared = read_prepared(out); prepared.images("train"), prepared.labels("train")

Layout: DIR/summary.json, and per split DIR/<split>/{images.npy, labels.npy, manifest.csv}
(images.npy absent when the set is manifest-only). A directory appears only complete
(`fer_distill.atomic.atomic_path(..., directory=True)`).
Format and why: docs/DESIGN.md, "Prepared data".
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fer_distill import atomic
from fer_distill.data.classes import CLASS_NAMES

FORMAT = "fer_distill.prepared/1"
SPLITS = ("train", "validation", "test")
SUMMARY = "summary.json"
IMAGES = "images.npy"
LABELS = "labels.npy"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("index", "name", "label")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def per_class_counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    """Counts of each class name (every name present, zeros included) for summary.json."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {name: int(n) for name, n in zip(class_names, counts)}


def _is_prepared(path: Path) -> bool:
    try:
        return json.loads((path / SUMMARY).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class PreparedWriter:
    """Writes one prepared data set atomically. Use as a context manager.

        with PreparedWriter(out, dataset="ferplus", image_shape=(48, 48, 1)) as writer:
            images = writer.new_images("train", n)       # a writable (n, H, W, C) uint8 memmap
            ...fill images...
            writer.add_split("train", labels, names)
            ... the same for "validation" and "test" ...
            writer.source["layout"] = "csv"
        # here DIR is complete (or, after an exception, untouched)

    Small splits may pass an in-memory array to `add_split(images=...)` instead. All three splits
    must be added; `summary.json` is written last. An existing `output` is replaced only when it is
    a prepared data set or empty (docs/DESIGN.md, "Prepared data").
    """

    def __init__(
        self,
        output: str | os.PathLike,
        *,
        dataset: str,
        image_shape: Sequence[int],
        class_names: Sequence[str] = CLASS_NAMES,
        manifest_only: bool = False,
        source: Mapping[str, Any] | None = None,
    ):
        self.output = Path(output)
        self.dataset = dataset
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) != 3 or self.image_shape[2] not in (1, 3):
            raise ValueError(f"image_shape must be (H, W, 1|3), got {self.image_shape}")
        self.class_names = list(class_names)
        self.manifest_only = bool(manifest_only)
        self.source: dict[str, Any] = dict(source or {})
        self._splits: dict[str, dict[str, Any]] = {}
        self._context = None
        self._tmp: Path | None = None

    def __enter__(self) -> "PreparedWriter":
        if self.output.exists():
            if not self.output.is_dir():
                raise ValueError(f"output {self.output} exists and is not a directory")
            if any(self.output.iterdir()) and not _is_prepared(self.output):
                raise ValueError(
                    f"output {self.output} is a non-empty directory that is not a prepared data "
                    f"set (no {SUMMARY} with format {FORMAT!r}); refusing to replace it")
        self._context = atomic.atomic_path(self.output, directory=True)
        self._tmp = self._context.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:  # the temporary directory must go too
                self._context.__exit__(type(error), error, error.__traceback__)
                raise
        return self._context.__exit__(exc_type, exc, tb)

    @property
    def tmp_dir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("PreparedWriter must be used as a context manager")
        return self._tmp

    def new_images(self, split: str, count: int) -> np.memmap:
        """A zero-filled, writable uint8 (count, H, W, C) memmap that becomes <split>/images.npy."""
        _check_split(split)
        if self.manifest_only:
            raise ValueError("a manifest-only data set has no images")
        split_dir = self.tmp_dir / split
        split_dir.mkdir(exist_ok=True)
        return np.lib.format.open_memmap(
            split_dir / IMAGES, mode="w+", dtype=np.uint8, shape=(int(count), *self.image_shape))

    def keep_images(self, split: str, keep: np.ndarray) -> np.memmap:
        """Keeps only the rows `keep` (a bool mask) of a split filled through `new_images`.

        For images found unreadable only while decoding: the kept rows are copied chunk by
        chunk into a new file (never all in RAM), which replaces the old one.
        """
        _check_split(split)
        path = self.tmp_dir / split / IMAGES
        old = np.load(path, mmap_mode="r")
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(old),):
            raise ValueError(f"{split}: keep mask of shape {keep.shape} for {len(old)} images")
        rows = np.flatnonzero(keep)
        scratch = path.with_name("images.kept.npy")
        new = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8,
                                        shape=(len(rows), *old.shape[1:]))
        for start in range(0, len(rows), 1024):
            new[start:start + 1024] = old[rows[start:start + 1024]]
        new.flush()
        del old, new
        os.replace(scratch, path)
        return np.load(path, mmap_mode="r+")

    def share_images(self, split: str, source_split: str) -> None:
        """Makes `split` hold the very images of `source_split` (a hard link when the file
        system allows, else a copy): for data sets whose two splits are the same images."""
        _check_split(split)
        _check_split(source_split)
        source = self.tmp_dir / source_split / IMAGES
        if not source.is_file():
            raise ValueError(f"{source_split}: no images to share yet")
        target = self.tmp_dir / split / IMAGES
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)

    def add_split(
        self,
        split: str,
        labels: Sequence[int] | np.ndarray,
        names: Sequence[str],
        *,
        images: np.ndarray | None = None,
        extra: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        """Records one split: its labels, image names, optional extra manifest columns.

        `images` is either given here (an in-memory uint8 array), or was obtained from
        `new_images(split, n)` and filled already; manifest-only sets pass neither.
        """
        _check_split(split)
        if split in self._splits:
            raise ValueError(f"split {split!r} added twice")
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"{split}: labels must be a 1-D integer array, got {labels.dtype} "
                             f"{labels.shape}")
        labels = labels.astype(np.int32)
        n = len(labels)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"{split}: labels must lie in [0, {len(self.class_names)}), got "
                             f"{labels.min()}..{labels.max()}")
        if len(names) != n:
            raise ValueError(f"{split}: {len(names)} names for {n} labels")
        extra = dict(extra or {})
        for column, values in extra.items():
            if column in MANIFEST_COLUMNS or not column or "," in column:
                raise ValueError(f"{split}: bad extra manifest column name {column!r}")
            if len(values) != n:
                raise ValueError(f"{split}: extra column {column!r} has {len(values)} values "
                                 f"for {n} rows")
        split_dir = self.tmp_dir / split
        split_dir.mkdir(exist_ok=True)
        images_path = split_dir / IMAGES
        if self.manifest_only:
            if images is not None:
                raise ValueError("a manifest-only data set has no images")
        elif images is not None:
            images = np.asarray(images)
            if images.dtype != np.uint8 or images.shape != (n, *self.image_shape):
                raise ValueError(f"{split}: images must be uint8 {(n, *self.image_shape)}, got "
                                 f"{images.dtype} {images.shape}")
            np.save(images_path, images)
        else:
            if not images_path.exists():
                raise ValueError(f"{split}: no images given and new_images({split!r}, ...) "
                                 "was not called")
            stored = np.load(images_path, mmap_mode="r")
            if stored.shape != (n, *self.image_shape):
                raise ValueError(f"{split}: images.npy holds {stored.shape}, expected "
                                 f"{(n, *self.image_shape)}")
            del stored
        np.save(split_dir / LABELS, labels)
        with open(split_dir / MANIFEST, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([*MANIFEST_COLUMNS, *extra])
            columns = list(extra.values())
            for i in range(n):
                writer.writerow([i, names[i], int(labels[i]), *(c[i] for c in columns)])
        self._splits[split] = {"count": n,
                               "per_class": per_class_counts(labels, self.class_names)}

    def _finish(self) -> None:
        missing = [s for s in SPLITS if s not in self._splits]
        if missing:
            raise ValueError(f"prepared data set {self.output}: splits {missing} were never added")
        for split in SPLITS:  # memmaps handed out by new_images must reach the disk first
            path = self.tmp_dir / split / IMAGES
            if path.exists():
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
        summary = {
            "format": FORMAT,
            "dataset": self.dataset,
            "class_names": self.class_names,
            "image_shape": list(self.image_shape),
            "manifest_only": self.manifest_only,
            "splits": {s: self._splits[s] for s in SPLITS},
            "source": self.source,
        }
        # summary.json last: even inside the temporary directory, its presence means complete.
        atomic.write_json(self.tmp_dir / SUMMARY, summary)


@dataclass
class Prepared:
    """A prepared data set on disk (docs/DESIGN.md, "Prepared data"); from `read_prepared`."""

    path: Path
    summary: dict[str, Any]
    _labels: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def dataset(self) -> str:
        return self.summary["dataset"]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.summary["class_names"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.summary["image_shape"])

    @property
    def manifest_only(self) -> bool:
        return bool(self.summary.get("manifest_only", False))

    def count(self, split: str) -> int:
        _check_split(split)
        return int(self.summary["splits"][split]["count"])

    def images(self, split: str) -> np.memmap:
        """The split's images as a read-only uint8 (N, H, W, C) memory map (nothing is loaded)."""
        _check_split(split)
        if self.manifest_only:
            raise ValueError(
                f"{self.path} was prepared with --manifest_only: it lists the selected images "
                "but holds none; run experiments/prepare_data.py again without --manifest_only")
        path = self.path / split / IMAGES
        if not path.is_file():
            raise FileNotFoundError(f"prepared data set {self.path}: {split}/{IMAGES} is missing")
        images = np.load(path, mmap_mode="r")
        expected = (self.count(split), *self.image_shape)
        if images.dtype != np.uint8 or images.shape != expected:
            raise ValueError(f"{path}: holds {images.dtype} {images.shape}, summary.json "
                             f"promises uint8 {expected}")
        return images

    def labels(self, split: str) -> np.ndarray:
        """The split's labels, int32 (N,), indices into `class_names`."""
        _check_split(split)
        if split not in self._labels:
            path = self.path / split / LABELS
            if not path.is_file():
                raise FileNotFoundError(f"prepared data set {self.path}: {split}/{LABELS} is "
                                        "missing")
            labels = np.load(path)
            if labels.dtype != np.int32 or labels.shape != (self.count(split),):
                raise ValueError(f"{path}: holds {labels.dtype} {labels.shape}, expected int32 "
                                 f"({self.count(split)},)")
            labels.flags.writeable = False
            self._labels[split] = labels
        return self._labels[split]

    def manifest(self, split: str) -> dict[str, np.ndarray]:
        """The split's manifest as columns: "index" int64, "label" int32, the rest as str arrays.

        Row i describes image i, so `manifest(split)["name"][i]` names the source of
        `images(split)[i]`.
        """
        _check_split(split)
        path = self.path / split / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"prepared data set {self.path}: {split}/{MANIFEST} is missing")
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0][:3]) != MANIFEST_COLUMNS:
            raise ValueError(f"{path}: header must start with {','.join(MANIFEST_COLUMNS)}")
        header, body = rows[0], rows[1:]
        for line, row in enumerate(body, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields, header has "
                                 f"{len(header)}")
        columns = {name: np.array([row[j] for row in body], dtype=str)
                   for j, name in enumerate(header)}
        columns["index"] = columns["index"].astype(np.int64)
        columns["label"] = columns["label"].astype(np.int32)
        return columns

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={self.count(s)}" for s in SPLITS)
        return (f"Prepared({str(self.path)!r}, dataset={self.dataset!r}, "
                f"image_shape={self.image_shape}, {counts})")


def read_prepared(path: str | os.PathLike) -> Prepared:
    """Opens a prepared data set written by `PreparedWriter` (experiments/prepare_data.py).

    Raises FileNotFoundError when `path` or its summary.json is missing (the directory was never
    prepared, or its preparation did not finish), ValueError when summary.json is not this
    format. A manifest-only set opens (its labels and manifest are there) but `images()` says
    how to decode it.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"prepared data set {path} does not exist; create it with "
                                "`python -m experiments.prepare_data --output=...`")
    summary_path = path / SUMMARY
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a prepared data set: it has no {SUMMARY} (create it with "
            "`python -m experiments.prepare_data --output=...`)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{summary_path}: not valid JSON ({error})") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        found = summary.get("format") if isinstance(summary, dict) else type(summary).__name__
        raise ValueError(f"{summary_path}: format {found!r}, expected {FORMAT!r}: not a data set "
                         "written by fer_distill.data.prepared")
    for key in ("dataset", "class_names", "image_shape", "splits"):
        if key not in summary:
            raise ValueError(f"{summary_path}: key {key!r} is missing")
    for split in SPLITS:
        if split not in summary["splits"] or "count" not in summary["splits"][split]:
            raise ValueError(f"{summary_path}: splits.{split}.count is missing")
    return Prepared(path=path, summary=summary)


def splits_table(summary: Mapping[str, Any]) -> str:
    """The per-split, per-class counts as a text table (what prepare_data prints)."""
    names = list(summary["class_names"])
    width = max(10, *(len(n) for n in names))
    lines = [f"{'split':<10} {'count':>7} " + " ".join(f"{n:>{width}}" for n in names)]
    for split in SPLITS:
        entry = summary["splits"][split]
        lines.append(f"{split:<10} {entry['count']:>7} "
                     + " ".join(f"{entry['per_class'][n]:>{width}}" for n in names))
    return "\n".join(lines)
