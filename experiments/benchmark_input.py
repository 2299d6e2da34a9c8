"""Measure how fast the input pipeline feeds paired views.

Usage:

  python -m experiments.prepare_data --dataset=demo --output=/tmp/demo
  python -m experiments.benchmark_input --data=/tmp/demo [--split=train] [--batch_size=64] \
      [--image_size=224] [--steps=50] [--warmup=5]

Reads the prepared data set `--data` and iterates `fer_distill.data.pipeline.make_dataset`
(training order, both "full" and "occluded" views, lower_half_visible) without a model, so the
figure is the input pipeline's ceiling. Prints paired SxS images per second: pairs (one full +
one occluded view of the same image) per second over `--steps` batches after `--warmup` batches.
Writes nothing.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import app, flags

from experiments import cli
from experiments.flagconfig import given_fields

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process, where generic names
# (--data, --batch_size, --steps, ...) would otherwise clash with other binaries' flags.
_ANY = {"allow_override": True}
flags.DEFINE_string("data", None, "A prepared data set (experiments/prepare_data.py).", **_ANY)
flags.DEFINE_enum("split", "train", ["train", "validation", "test"], "Split to read.", **_ANY)
flags.DEFINE_integer("batch_size", 64, "Batch size.", **_ANY)
flags.DEFINE_integer("image_size", 224, "Output image size S (SxS).", **_ANY)
flags.DEFINE_integer("steps", 50, "Timed batches.", **_ANY)
flags.DEFINE_integer("warmup", 5, "Batches before the clock starts (fills the prefetch "
                     "buffer).", **_ANY)
flags.DEFINE_string("occlusion", "lower_half_visible", "View of the 'occluded' entry.", **_ANY)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    data: str
    split: str = "train"
    batch_size: int = 64
    image_size: int = 224
    steps: int = 50
    warmup: int = 5
    occlusion: str = "lower_half_visible"


def run(config: BenchmarkConfig, out=None) -> float:
    """Iterates the pipeline and returns the paired images per second it sustained."""
    from fer_distill.data.pipeline import make_dataset
    from fer_distill.data.prepared import read_prepared

    out = out or sys.stdout  # why not a default argument: it must be the current stdout
    if config.steps <= 0 or config.warmup < 0:
        raise ValueError(f"--steps must be positive and --warmup non-negative, got "
                         f"{config.steps}, {config.warmup}")
    prepared = read_prepared(config.data)
    dataset = make_dataset(prepared, config.split, image_size=config.image_size,
                           batch_size=config.batch_size, training=True,
                           occlusion=config.occlusion)
    iterator = iter(dataset)
    for _ in range(config.warmup):
        next(iterator)
    start = time.perf_counter()
    pairs = 0
    for _ in range(config.steps):
        batch = next(iterator)
        pairs += int(batch["index"].shape[0])
    batch["occluded"].numpy()  # why: make sure the last batch really materialised
    elapsed = time.perf_counter() - start
    rate = pairs / elapsed
    size = config.image_size
    print(f"{rate:.0f} paired {size}x{size} images/s ({pairs} pairs in {elapsed:.2f} s; "
          f"{prepared.dataset} {config.split}, stored {'x'.join(map(str, prepared.image_shape))}, "
          f"batch {config.batch_size}, {os.cpu_count()} CPUs)", file=out)
    return rate


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.data:
        raise app.UsageError("--data is required")
    run(BenchmarkConfig(**given_fields(BenchmarkConfig)))


if __name__ == "__main__":
    cli.run(main)
