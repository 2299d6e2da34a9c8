"""Atomic outputs: a failed run never leaves a half-written file looking finished.

(`read_json` is `write_json`'s counterpart: the package's JSON records read back with errors
that name the file.)

Every model, data set, report or results file the package writes goes through `atomic_path`:
the writer fills a temporary sibling, which is renamed over the target only when the writer
returned without an exception. A rename within one directory is atomic on POSIX, so a reader
sees either the old complete output or the new complete output, never a torn one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` on success.

    The temporary name keeps the target's suffix (Keras insists on `.keras`, `np.save` on
    `.npy`). With `directory=True` the temporary path is created as an empty directory, and a
    previous directory at `target` is replaced as a whole. On any exception the temporary is
    removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.with_name(f".{target.stem}.partial-{tag}{target.suffix}")
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer produced nothing at {tmp} for {target}")
        if directory and target.exists():
            old = target.with_name(f".{target.name}.old-{tag}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Writes `text` to `target` atomically and returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike, obj: Any) -> Path:
    """Writes `obj` as indented JSON atomically (keys kept in insertion order)."""
    return write_text(target, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, *, what: str = "JSON file") -> dict:
    """Reads a JSON object; a missing file, bad JSON or a non-object is an error naming `path`.

    `what` says what the file should have been ("run config", "evaluation results"), so the
    message tells the user which of the package's records is missing or broken.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} not found") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _json_default(obj: Any) -> Any:
    # NumPy scalars and arrays are everywhere in metrics; JSON should take them as numbers.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")
