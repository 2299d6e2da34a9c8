"""fer_distill/lock.py: one writer per directory; a killed writer's lock is taken over."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fer_distill import lock
from fer_distill.errors import UserError

LOCK_PY = Path(lock.__file__)

# A second process that takes the lock and waits; it loads lock.py by path, so it starts in a
# fraction of a second (importing the package would start TensorFlow).
HOLDER = textwrap.dedent("""
    import importlib.util, sys, time, types
    errors = types.ModuleType("fer_distill.errors")
    class UserError(Exception): pass
    errors.UserError = UserError
    sys.modules["fer_distill"] = types.ModuleType("fer_distill")
    sys.modules["fer_distill.errors"] = errors
    spec = importlib.util.spec_from_file_location("lock", sys.argv[1])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    with lock.locked(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(600)
""")


def _holding_process(directory):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(LOCK_PY), str(directory)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_told_who_holds_the_lock(tmp_path):
    run = tmp_path / "runs" / "a"
    process = _holding_process(run)
    try:
        # another spelling of the same directory is the same lock
        for spelling in (run, f"{run}/", os.path.relpath(run)):
            with pytest.raises(lock.Locked) as error:
                with lock.locked(spelling, what="run directory"):
                    pass
            message = str(error.value)
            assert isinstance(error.value, UserError) and "\n" not in message
            assert f"pid {process.pid} on host {socket.gethostname()} since 20" in message
    finally:
        process.kill()
        process.wait()
    with lock.locked(run):  # its death released the lock
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    run = tmp_path / "a"
    process = _holding_process(run)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    left = lock.lock_file(run)
    assert json.loads(left.read_text())["pid"] == process.pid  # the stale file is there
    with lock.locked(run) as path:
        assert path == left
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert f"stale lock of pid {process.pid}" in caplog.text
        with pytest.raises(lock.Locked, match=f"pid {os.getpid()} "):
            with lock.locked(run):  # held by this process now, through another open file
                pass
    assert not left.exists()  # released cleanly: nothing left behind
