"""TensorFlow imported without its start-up noise on a CPU machine.

`import experiments` (every binary) calls `import_tensorflow()` before anything else imports
TensorFlow. TensorFlow 2.21 writes its start-up lines through C++ absl logging before
TF_CPP_MIN_LOG_LEVEL applies ("All log messages before absl::InitializeLog()", oneDNN, "Could not
find cuda drivers", and at the first device query "failed call to cuInit ... (303)"), so the
import and the device query run with file descriptor 2 captured, and every captured line that
is not one of those known notices is written back to stderr. TF_CPP_MIN_LOG_LEVEL=0 or 1 in
the environment keeps everything.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] failed call to cuInit"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|^To enable the following instructions:"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation_placer\.cc:\d+\] computation placer already registered")


def keep(text: str) -> str:
    """`text` without the lines NOISE matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


def import_tensorflow() -> None:
    """Imports TensorFlow and Keras and lists the devices, dropping the NOISE lines."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()  # cuInit's message comes here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(keep(capture.read().decode("utf-8", errors="replace")))
            sys.stderr.flush()
