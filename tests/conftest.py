"""Fixtures shared by the whole suite.

The suite must stay well under 15 minutes on 2 CPU cores, so TensorFlow is kept quiet and
single-process here, and the real FER+ vote files are found beside the checkout
(`../shared/data/ferplus`) or through FER_DISTILL_SHARED; tests that need them skip cleanly.
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("FER_DISTILL_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set FER_DISTILL_SHARED)")
    return path


@pytest.fixture(scope="session")
def ferplus_votes_dir(shared_dir) -> Path:
    path = shared_dir / "data" / "ferplus"
    if not (path / "FER2013Train" / "label.csv").is_file():
        pytest.skip(f"FER+ vote files not found under {path}")
    return path
