"""The frozen teacher's outputs on the full view, computed once per data set and cached.

`teacher_outputs(teacher, prepared, split, rows, image_size=, batch_size=, ...)` computes or
reuses RUN/cache/teacher-<split>/ (index.npy, logits.npy, embedding.npy, meta.json), keyed by
the pipeline's `"index"`; `teacher_tables` builds kd's and rkd's cached tables; `deranged` is
the `shuffle_teacher` control's seeded derangement.
Why a cache, and when it is reused: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fer_distill import rundir
from fer_distill.atomic import atomic_path, write_json
from fer_distill.models.outputs import split_outputs
from fer_distill.train.execution import progress

FORMAT = "fer_distill.teacher_cache/1"


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def rows_sha256(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


class TeacherOutputs:
    """Cached teacher outputs for some rows of one split; look them up by row."""

    def __init__(self, index: np.ndarray, logits: np.ndarray, embedding: np.ndarray | None):
        self.index = np.asarray(index, dtype=np.int64)
        self.logits = logits
        self.embedding = embedding

    def positions(self, rows) -> np.ndarray:
        """Positions in the cache of split rows `rows` (all must be cached)."""
        rows = np.asarray(rows, dtype=np.int64)
        where = np.searchsorted(self.index, rows)
        bad = (where >= len(self.index)) | (self.index[np.minimum(where, len(self.index) - 1)]
                                             != rows)
        if np.any(bad):
            raise KeyError(f"rows {rows[bad][:5].tolist()} are not in the teacher cache")
        return where

    def logits_table(self, num_rows: int) -> np.ndarray:
        """(num_rows, K) float32 with the cached rows' logits at their row (zeros elsewhere), the
        table a KD step gathers from by `"index"`."""
        table = np.zeros((int(num_rows), self.logits.shape[1]), np.float32)
        table[self.index] = self.logits
        return table

    def embeddings_of(self, rows) -> np.ndarray:
        if self.embedding is None:
            raise ValueError("the teacher cache holds no embeddings")
        return np.asarray(self.embedding[self.positions(rows)], dtype=np.float32)


def teacher_outputs(teacher, prepared, split: str, rows, *, image_size: int, batch_size: int,
                    cache_dir, teacher_path, policy: str, embeddings: bool,
                    verbose: int = 1, write: bool = True) -> TeacherOutputs:
    """The teacher's full-view logits (and embeddings) for `rows` of `split`, from the cache in
    `cache_dir` when it matches, else computed (with a progress bar) and cached.

    `write=False` (non-chief workers) computes without writing.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    directory = Path(cache_dir) / f"teacher-{split}"
    meta = {
        "format": FORMAT,
        "teacher": str(teacher_path),
        "teacher_sha256": file_sha256(teacher_path),
        "data": str(prepared.path),
        "split": split,
        "split_count": prepared.count(split),
        "rows": len(rows),
        "rows_sha256": rows_sha256(rows),
        "image_size": int(image_size),
        "view": "full",
        "dtype_policy": policy,
        "embeddings": bool(embeddings),
    }
    cached = _read(directory, meta)
    if cached is not None:
        return cached
    if verbose:
        print(f"Computing the teacher's full-view outputs on {len(rows)} {split} images "
              f"(once; cached in {directory})")
    # why not the embedding model without `embeddings`: FER+'s 4096-d embeddings alone are
    # 410 MB
    out = split_outputs(teacher, prepared, split, "full", batch_size=batch_size,
                        image_size=image_size, indices=rows, embeddings=embeddings,
                        verbose=progress(verbose))
    logits, embedding = out["logits"], out.get("embedding")
    if write:
        with atomic_path(directory, directory=True) as tmp:
            np.save(tmp / "index.npy", rows)
            np.save(tmp / "logits.npy", logits)
            if embedding is not None:
                np.save(tmp / "embedding.npy", embedding)
            write_json(tmp / "meta.json", meta)
    return TeacherOutputs(rows, logits, embedding)


def _read(directory: Path, meta: dict) -> TeacherOutputs | None:
    try:
        found = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = dict(meta)
    if found.get("embeddings") and not wanted["embeddings"]:
        wanted["embeddings"] = True  # a cache with embeddings serves a logits-only request
    if found != wanted:
        return None
    embedding = (np.load(directory / "embedding.npy", mmap_mode="r")
                 if found["embeddings"] else None)
    return TeacherOutputs(np.load(directory / "index.npy"), np.load(directory / "logits.npy"),
                          embedding)


# A stream of random numbers of its own for the shuffled-teacher control.
SHUFFLE_STREAM = 0x5F1E7


def deranged(rows: np.ndarray, seed: int) -> np.ndarray:
    """`rows` in a seeded order with no row in its own place (a derangement by rotation of a
    random permutation): row rows[i]'s teacher output becomes that of the returned [i]."""
    order = np.random.default_rng([int(seed), SHUFFLE_STREAM]).permutation(len(rows))
    out = np.empty_like(rows)
    out[order] = rows[np.roll(order, 1)] if len(rows) > 1 else rows[order]
    return out


def teacher_tables(config, prepared, teacher, rows, *, image_size: int, policy: str, workdir,
                   write: bool, embeddings: bool) -> dict[str, np.ndarray]:
    """{"train", "validation"}: the teacher's logits (or embeddings), row i = image i of the
    split (the training rows `rows`, every validation image), from the run's cache; with
    `config.shuffle_teacher` (the misalignment control) the training rows are `deranged`."""
    tables = {}
    for split, split_rows in (("train", rows),
                              ("validation", np.arange(prepared.count("validation")))):
        outputs = teacher_outputs(teacher, prepared, split, split_rows, image_size=image_size,
                                  batch_size=config.eval_batch_size,
                                  cache_dir=Path(workdir) / rundir.CACHE,
                                  teacher_path=config.teacher, policy=policy,
                                  embeddings=embeddings, verbose=config.verbose, write=write)
        if embeddings:
            table = np.zeros((prepared.count(split), outputs.embedding.shape[1]), np.float32)
            table[outputs.index] = outputs.embedding
        else:
            table = outputs.logits_table(prepared.count(split))
        tables[split] = table
    if config.shuffle_teacher:
        tables["train"] = np.array(tables["train"], copy=True)
        tables["train"][rows] = tables["train"][deranged(rows, config.seed)]
    return tables
