"""FER+ (Barsoum et al. 2016) prepared with FERPlus's majority rule, which gives the paper's counts.

    prepare_ferplus(raw_dir, output, layout="auto" | "png" | "csv")

Images are FER2013's 48x48 grey faces, stored as uint8 (N, 48, 48, 1); labels are FERPlus's
10 crowd votes per image (`FER2013{Train,Valid,Test}/label.csv`) reduced by `majority_labels`:
25045 / 3191 / 3137 images (train / validation / test) on the real files. Either raw layout
(`detect_layout`: FERPlus's PNG folders, or fer2013.csv + fer2013new.csv) gives the same set.
Why, and the four duplicated names: docs/DESIGN.md, "Prepared data".
"""
from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.prepared import SPLITS, PreparedWriter

VOTE_COLUMNS = (*CLASS_NAMES, "unknown", "NF")
FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
USAGES = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
LAYOUTS = ("png", "csv")
SIZE = 48


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """FERPlus's "majority" labels of (N, 10) vote counts; -1 where the image is dropped.

    Single votes are removed (FERPlus treats them as outliers), then an image keeps the class
    holding strictly more than half of the remaining votes, unless that class is unknown or NF.
    Integer arithmetic (2·top > total) so no tie ever depends on rounding.
    """
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(VOTE_COLUMNS):
        raise ValueError(f"votes must be (N, {len(VOTE_COLUMNS)}), got {votes.shape}")
    kept = np.where(votes > 1, votes, 0).astype(np.int64)
    top = kept.max(axis=1)
    winner = kept.argmax(axis=1)
    keep = (2 * top > kept.sum(axis=1)) & (winner < len(CLASS_NAMES))
    return np.where(keep, winner, -1).astype(np.int64)


def _csv_rows(path: Path):
    """(line number, row) of a UTF-8 csv file; a BOM (an Excel save) is accepted, bytes that
    are not UTF-8 are a ValueError naming the file and line."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        line = 0
        try:
            for line, row in enumerate(csv.reader(f), start=1):
                yield line, row
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {line + 1}: not UTF-8 text (byte "
                             f"0x{error.object[error.start]:02x}); save it as UTF-8") from None


def read_label_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Reads one FERPlus label.csv: `name,"(x, y, w, h)",` 10 votes (box optional), no header.

    Returns the names in file order and their (N, 10) int64 votes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FER+ label file {path} does not exist")
    names, votes = [], []
    for line, row in _csv_rows(path):
        if not row:
            continue
        has_box = len(row) > 1 and row[1].strip().startswith("(")
        if len(row) != (12 if has_box else 11):
            count = len(row) - (2 if has_box else 1)
            raise ValueError(f"{path}, line {line}: {len(row)} fields ({count} vote counts "
                             f"after the name{' and face box' if has_box else ''}); expected a "
                             "name, an optional face box and 10 vote counts")
        try:
            counts = [int(v) for v in row[-10:]]
        except ValueError:
            raise ValueError(f"{path}, line {line}: vote counts must be integers, got "
                             f"{row[-10:]}") from None
        if min(counts) < 0 or not row[0]:
            raise ValueError(f"{path}, line {line}: empty name or negative vote count")
        names.append(row[0].strip())
        votes.append(counts)
    if not names:
        raise ValueError(f"{path} lists no images; expected one line per image: a name, a face "
                         "box and 10 vote counts")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a name is listed twice")
    return names, np.asarray(votes, dtype=np.int64).reshape(-1, 10)


def read_fer2013new(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(usage, image name) of every fer2013new.csv row, in row order (the name may be empty)."""
    path = Path(path)
    reader = _csv_rows(path)
    _, header = next(reader, (1, None))
    if not header or [h.strip() for h in header[:2]] != ["Usage", "Image name"]:
        raise ValueError(f"{path}: header must start with 'Usage,Image name', got {header}")
    rows = []
    for line, row in reader:
        if len(row) < 2:
            raise ValueError(f"{path}, line {line}: expected Usage and Image name")
        usage = row[0].strip()
        if usage not in USAGES:
            raise ValueError(f"{path}, line {line}: Usage {usage!r} is not one of "
                             f"{sorted(USAGES)}")
        rows.append((usage, row[1].strip()))
    return rows


@dataclass
class Layout:
    """Where the raw FER+ files are. `kind` is "png" or "csv"."""

    kind: str
    label_root: Path  # holds FER2013Train/, FER2013Valid/, FER2013Test/ (label.csv [+ PNGs])
    fer2013_csv: Path | None = None
    fer2013new_csv: Path | None = None

    def label_csv(self, split: str) -> Path:
        return self.label_root / FOLDERS[split] / "label.csv"


def _first(paths: Sequence[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def detect_layout(raw_dir: str | os.PathLike, *, layout: str = "auto",
                  fer2013_csv: str | os.PathLike | None = None) -> Layout:
    """Finds FER+'s raw files under `raw_dir` and says which layout they form.

    Looked for: label.csv folders in RAW or RAW/data (the FERPlus repository keeps them in
    data/); fer2013.csv in RAW, RAW/fer2013 (the Kaggle archive's folder) or RAW/data, or where
    `fer2013_csv` points; fer2013new.csv in RAW, RAW/data. With layout="auto" the csv layout wins
    when its files are all there (no PNG decoding), else the png layout.
    """
    raw = Path(raw_dir)
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"unknown FER+ layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    if not raw.is_dir():
        raise FileNotFoundError(f"raw FER+ directory {raw} does not exist")
    label_root = next((r for r in (raw, raw / "data")
                       if all((r / FOLDERS[s] / "label.csv").is_file() for s in SPLITS)), None)
    for root in (raw, raw / "data") if label_root is None else ():
        absent = [f"{FOLDERS[s]}/label.csv" for s in SPLITS
                  if not (root / FOLDERS[s] / "label.csv").is_file()]
        if len(absent) < len(SPLITS):  # some split folders are there: name the others
            raise FileNotFoundError(f"{root}: {', '.join(absent)} missing (FER+ needs "
                                    f"{', '.join(FOLDERS.values())}, each with its label.csv)")
    fer = Path(fer2013_csv) if fer2013_csv else _first(
        [raw / "fer2013.csv", raw / "fer2013" / "fer2013.csv", raw / "data" / "fer2013.csv"])
    if fer2013_csv and not fer.is_file():
        raise FileNotFoundError(f"fer2013.csv not found at {fer}")
    new = _first([raw / "fer2013new.csv", raw / "data" / "fer2013new.csv"])
    has_png = label_root is not None and any(
        True for _ in zip(range(1), (label_root / FOLDERS["train"]).glob("*.png")))
    csv_ok = label_root is not None and fer is not None and new is not None
    if layout in ("auto", "csv") and csv_ok:
        return Layout("csv", label_root, fer, new)
    if layout in ("auto", "png") and has_png:
        return Layout("png", label_root)
    found = {
        "label.csv folders": str(label_root) if label_root else None,
        "PNGs in FER2013Train": has_png,
        "fer2013.csv": str(fer) if fer else None,
        "fer2013new.csv": str(new) if new else None,
    }
    raise FileNotFoundError(
        f"no {'known FER+ layout' if layout == 'auto' else repr(layout) + ' layout'} in {raw}. "
        "Known layouts: (png) FERPlus's generated folders FER2013Train/, FER2013Valid/, "
        "FER2013Test/, each with its PNGs and label.csv; (csv) fer2013.csv + fer2013new.csv + "
        f"FER2013{{Train,Valid,Test}}/label.csv (in RAW or RAW/data). Found: {found}")


def _progress(iterable, *, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable

    return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stderr, mininterval=1.0,
                disable=None)  # disable=None: no bar when stderr is not a terminal


def _parse_pixels(text: str, where: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy's "could not be read to its end"
        try:
            values = np.fromstring(text, dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning):
            raise ValueError(f"{where}: pixels are not space-separated integers") from None
    if values.size != SIZE * SIZE:
        raise ValueError(f"{where}: {values.size} pixel values, expected {SIZE * SIZE} "
                         f"({SIZE}x{SIZE})")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"{where}: pixel values must lie in 0..255")
    return values.astype(np.uint8).reshape(SIZE, SIZE)


def _read_csv_images(layout: Layout, wanted: Mapping[str, Sequence[str]], progress: bool):
    """Images of the wanted names per split, from fer2013.csv paired with fer2013new.csv."""
    new_rows = read_fer2013new(layout.fer2013new_csv)
    row_of: dict[str, int] = {}
    seen_twice: dict[str, list[int]] = {}
    for row, (usage, name) in enumerate(new_rows):
        if not name:
            continue
        if name in row_of:
            seen_twice.setdefault(name, [row_of[name]]).append(row)
        row_of[name] = row  # the later row wins, as in FERPlus's PNGs (DESIGN.md, "Prepared data")
    needed: dict[int, tuple[str, int]] = {}
    for split, names in wanted.items():
        absent = [n for n in names if n not in row_of]
        if absent:
            rows = _count_rows(layout.fer2013_csv)
            if len(new_rows) < rows:
                raise ValueError(f"{layout.fer2013new_csv} is short: {len(new_rows)} rows, but "
                                 f"{layout.fer2013_csv} has {rows} (they pair by row order), "
                                 f"and {len(absent)} names of {layout.label_csv(split)} are not "
                                 f"in it (first: {absent[:5]}); is it truncated?")
            raise ValueError(f"{layout.label_csv(split)}: {len(absent)} names are not in "
                             f"{layout.fer2013new_csv} (first: {absent[:5]}); the files do not "
                             "belong together")
        for pos, name in enumerate(names):
            row = row_of[name]
            if USAGES[new_rows[row][0]] != split:
                raise ValueError(f"{layout.label_csv(split)}: {name} is a {new_rows[row][0]} row "
                                 f"(line {row + 2}) of {layout.fer2013new_csv}, not {split}")
            needed[row] = (split, pos)
    images = {s: np.zeros((len(n), SIZE, SIZE, 1), dtype=np.uint8) for s, n in wanted.items()}
    path = layout.fer2013_csv
    count = 0
    reader = _csv_rows(path)
    header = [h.strip() for h in next(reader, (1, []))[1]]
    if "pixels" not in header or "Usage" not in header:
        raise ValueError(f"{path}: header must name the columns emotion,pixels,Usage, got "
                         f"{header}")
    pix, use = header.index("pixels"), header.index("Usage")
    for row, (_, fields) in enumerate(_progress(reader, total=len(new_rows),
                                                desc="fer2013.csv", enabled=progress)):
        where = f"{path}, line {row + 2}"
        if len(fields) != len(header):
            raise ValueError(f"{where}: {len(fields)} fields, expected {len(header)}")
        if row >= len(new_rows):
            raise ValueError(f"{where}: more rows than {layout.fer2013new_csv} "
                             f"({len(new_rows)}, is it truncated?); the two files pair by "
                             "row order")
        if fields[use].strip() != new_rows[row][0]:
            raise ValueError(f"{where}: Usage {fields[use]!r} but {layout.fer2013new_csv} "
                             f"line {row + 2} says {new_rows[row][0]!r}; the two files pair "
                             "by row order")
        image = _parse_pixels(fields[pix], where)
        if row in needed:
            split, pos = needed[row]
            images[split][pos, :, :, 0] = image
        count += 1
    if count != len(new_rows):
        raise ValueError(f"{path}: {count} rows, but {layout.fer2013new_csv} has {len(new_rows)}; "
                         "the two files pair by row order")
    duplicates = {name: {"rows": rows, "used_row": rows[-1]}
                  for name, rows in sorted(seen_twice.items())}
    return images, {s: [] for s in wanted}, duplicates


def _count_rows(path: Path) -> int:
    """Data rows of a csv file with a header (for messages about files of unequal length)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def _check_label_files_complete(layout: Layout, listed: Mapping[str, Sequence[str]]) -> None:
    """Every image of a split must be in its label.csv: one cut short at a line boundary
    would otherwise drop images silently. The images are fer2013new.csv's named rows of the
    split (csv layout), or the PNGs in the split's folder (png layout)."""
    if layout.kind == "csv":
        usage_of = {split: usage for usage, split in USAGES.items()}
        rows = read_fer2013new(layout.fer2013new_csv)
        images = {s: {n for u, n in rows if n and u == usage_of[s]} for s in SPLITS}
        source = f"{layout.fer2013new_csv} names"
    else:
        images = {s: {p.name for p in (layout.label_root / FOLDERS[s]).glob("*.png")}
                  for s in SPLITS}
        source = "the folder holds"
    for split in SPLITS:
        unlisted = sorted(images[split] - set(listed[split]))
        if unlisted:
            raise ValueError(
                f"{layout.label_csv(split)} lists {len(listed[split])} images, but {source} "
                f"{len(unlisted)} more {FOLDERS[split]} images it lacks (first: {unlisted[:3]}); "
                "is it truncated?")


def _read_png(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 3:  # a PNG re-saved in colour: its channels are equal for FER2013
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if image.shape != (SIZE, SIZE) or image.dtype != np.uint8:
        raise ValueError(f"{path}: a {image.shape} {image.dtype} image, expected {SIZE}x{SIZE} "
                         "8-bit grey")
    return image


def _read_png_images(layout: Layout, wanted: Mapping[str, Sequence[str]], progress: bool,
                     workers: int | None):
    images, missing = {}, {}
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for split, names in wanted.items():
            folder = layout.label_root / FOLDERS[split]
            out = np.zeros((len(names), SIZE, SIZE, 1), dtype=np.uint8)
            lost = []
            decoded = pool.map(_read_png, (folder / n for n in names), chunksize=64)
            for pos, image in enumerate(_progress(decoded, total=len(names),
                                                  desc=FOLDERS[split], enabled=progress)):
                if image is None:
                    lost.append(names[pos])
                else:
                    out[pos, :, :, 0] = image
            images[split], missing[split] = out, lost
    return images, missing, None


def prepare_ferplus(
    raw_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    layout: str = "auto",
    fer2013_csv: str | os.PathLike | None = None,
    dataset: str = "ferplus",
    max_missing: int = 0,
    workers: int | None = None,
    source: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepares FER+ from `raw_dir` (either layout) into `output`; returns summary.json's content.

    Rows of each split follow label.csv's order (sorted by name in FERPlus's files). Missing or
    unreadable PNGs are dropped and listed in summary.json when there are at most `max_missing`
    of them over all splits; more raise ValueError with the count and the first names.
    """
    found = detect_layout(raw_dir, layout=layout, fer2013_csv=fer2013_csv)
    names, votes, labels, dropped, listed = {}, {}, {}, {}, {}
    for split in SPLITS:
        split_names, split_votes = read_label_csv(found.label_csv(split))
        listed[split] = split_names
        split_labels = majority_labels(split_votes)
        keep = split_labels >= 0
        names[split] = [n for n, k in zip(split_names, keep) if k]
        votes[split], labels[split] = split_votes[keep], split_labels[keep]
        dropped[split] = int((~keep).sum())
    _check_label_files_complete(found, listed)
    if found.kind == "csv":
        images, missing, duplicates = _read_csv_images(found, names, progress)
    else:
        images, missing, duplicates = _read_png_images(found, names, progress, workers)
    lost = [n for s in SPLITS for n in missing[s]]
    if len(lost) > max_missing:
        raise ValueError(f"{len(lost)} FER+ images are missing or unreadable under "
                         f"{found.label_root} (first: {lost[:5]}); allowed: {max_missing} "
                         "(--max_missing)")
    info: dict[str, Any] = {
        "layout": found.kind,
        "raw": str(Path(raw_dir).resolve()),
        "label_files": {s: str(found.label_csv(s)) for s in SPLITS},
        "labels": "FERPlus majority over label.csv votes: single votes dropped, kept when the "
                  "top class holds > half of the rest and is not unknown/NF",
        "dropped_by_majority": dropped,
        "missing_images": {s: list(missing[s]) for s in SPLITS},
    }
    if found.kind == "csv":
        info["fer2013_csv"] = str(found.fer2013_csv)
        info["fer2013new_csv"] = str(found.fer2013new_csv)
        info["duplicate_names"] = duplicates
        info["duplicate_rule"] = ("a name listed twice in fer2013new.csv takes the LATER "
                                  "fer2013.csv row's pixels (as FERPlus's PNGs do) and "
                                  "label.csv's votes")
    info.update(source or {})
    with PreparedWriter(output, dataset=dataset, image_shape=(SIZE, SIZE, 1),
                        source=info) as writer:
        for split in SPLITS:
            lost_here = set(missing[split])
            keep = np.array([n not in lost_here for n in names[split]], dtype=bool)
            writer.add_split(
                split, labels[split][keep], [n for n, k in zip(names[split], keep) if k],
                images=images[split][keep],
                extra={"votes": [" ".join(map(str, v)) for v in votes[split][keep].tolist()]})
    return json.loads((Path(output) / "summary.json").read_text(encoding="utf-8"))
