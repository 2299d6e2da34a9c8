"""A lock on a directory while one process writes it: `with locked(directory): ...`.

The lock is an advisory `fcntl.flock` on a small file beside the directory,
`PARENT/.NAME.lock`, which records who holds it (pid, host, start time, command). A second
writer fails at once with `Locked`, a one-line message naming the holder. The kernel drops a
flock when its process dies, however it dies, so a lock file left by a killed process is stale
by construction: the next writer takes it over and says whose it was. Why flock and a sibling
file: docs/DESIGN.md, "Run-directory lock".
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from fer_distill.errors import UserError

_log = logging.getLogger(__name__)


class Locked(UserError):
    """Another live process holds the lock; the message names it."""


def lock_file(directory: str | os.PathLike) -> Path:
    """The lock file of `directory` (resolved, so `runs/a`, `./runs/a/` and its absolute path
    share one lock)."""
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}.lock"


def holder(path: str | os.PathLike) -> dict | None:
    """What a lock file records about its holder (None: empty, missing or unreadable)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def describe(record: dict | None) -> str:
    if not record:
        return "another process (it has not yet written its pid)"
    return (f"pid {record.get('pid')} on host {record.get('host')} since "
            f"{record.get('started')} ({record.get('command')})")


@contextlib.contextmanager
def locked(directory: str | os.PathLike, *, what: str = "directory") -> Iterator[Path]:
    """Holds the lock of `directory` inside the block; yields the lock file's path.

    Raises `Locked` when a live process holds it. `what` names the directory in the message
    ("run directory").
    """
    path = lock_file(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, directory, what)
    try:
        yield path
    finally:
        # Unlink before unlocking: a waiter that opened this inode sees it gone (_acquire).
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, directory, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Locked(f"{what} {directory} is being written by {describe(holder(path))}; "
                         f"wait for it or stop it (lock file {path})") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked this inode after we opened it: retry
            os.close(fd)
            continue
        previous = holder(path)
        if previous:
            _log.warning("%s %s: took over the stale lock of %s, which ended without releasing "
                         "it (lock file %s)", what, directory, describe(previous), path)
        _write_holder(fd)
        return fd


def _write_holder(fd: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"),
              "command": " ".join(sys.argv) or sys.executable}
    data = (json.dumps(record) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
