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


def write_tiny_prepared(out, counts, *, seed: int, shape=(32, 32, 3), cyclic_labels=False,
                        split_in_names=False):
    """A prepared "demo" set of random images at `out`: {split: n} images of `shape`, labels
    random in 0..7 (or i % 8 with `cyclic_labels`); returns it read back."""
    import numpy as np

    from fer_distill.data.prepared import PreparedWriter, read_prepared

    rng = np.random.default_rng(seed)
    with PreparedWriter(out, dataset="demo", image_shape=shape) as writer:
        for split, n in counts.items():
            labels = np.arange(n) % 8 if cyclic_labels else rng.integers(0, 8, n)
            names = [f"{split}{i}.png" if split_in_names else f"{i}.png" for i in range(n)]
            writer.add_split(split, labels, names,
                             images=rng.integers(0, 256, (n, *shape), dtype=np.uint8))
    return read_prepared(out)
