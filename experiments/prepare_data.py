"""Prepare a data set once, so that no training epoch ever decodes an image again.

Usage:

  # FER+: RAW holds fer2013.csv + fer2013new.csv + FER2013{Train,Valid,Test}/label.csv (csv
  # layout), or FERPlus's generated FER2013{Train,Valid,Test}/ folders of PNGs + label.csv
  # (png layout); found in RAW or RAW/data, fer2013.csv also in RAW/fer2013 or --fer2013_csv.
  python -m experiments.prepare_data --dataset=ferplus --raw=~/FERPlus --output=data/ferplus
  python -m experiments.prepare_data --dataset=ferplus --raw=~/FERPlus \
      --fer2013_csv=~/Downloads/fer2013/fer2013.csv --output=data/ferplus

  # AffectNet: check the selection first (no image is opened), then decode (about 13 GB)
  python -m experiments.prepare_data --dataset=affectnet --raw=~/AffectNet \
      --output=data/affectnet --manifest_only
  python -m experiments.prepare_data --dataset=affectnet --raw=~/AffectNet \
      --output=data/affectnet [--max_missing=1] [--affectnet_validation=holdout]

  # the synthetic demo set (seconds; --raw, if given, keeps the generated FER+-format files)
  python -m experiments.prepare_data --dataset=demo --output=data/demo

Reads RAW (the layout is detected; the error names the layouts it knows). Writes OUTPUT
atomically: DIR/summary.json, DIR/{train,validation,test}/{images.npy,labels.npy,manifest.csv}
(docs/DESIGN.md, "Prepared data"); the flags used are recorded in
summary.json["source"]["config"]. Re-running replaces a complete OUTPUT as a whole; a failed or
interrupted run leaves the previous OUTPUT (or none). Prints progress, then the per-split,
per-class counts (data/README.md lists the ones a correct preparation prints).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from absl import app, flags

from experiments import cli
from experiments.flagconfig import given_fields

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process, where generic names
# (--output, --seed, --workers, ...) would otherwise clash with other binaries' flags.
_ANY = {"allow_override": True}
flags.DEFINE_enum("dataset", None, ["ferplus", "affectnet", "demo"], "Which data set.", **_ANY)
flags.DEFINE_string("raw", None, "The raw release (ferplus, affectnet); for demo, where to "
                    "keep the generated raw files (optional).", **_ANY)
flags.DEFINE_string("output", None, "Directory of the prepared data set.", **_ANY)
flags.DEFINE_enum("layout", "auto", ["auto", "png", "csv"], "FER+ raw layout.", **_ANY)
flags.DEFINE_string("fer2013_csv", None, "FER+: fer2013.csv, when it is not inside --raw.",
                    **_ANY)
flags.DEFINE_integer("max_missing", 0, "Missing/unreadable images tolerated (dropped and "
                     "listed in summary.json) before the run fails.", **_ANY)
flags.DEFINE_integer("workers", 0, "Decoding threads (0: automatic).", **_ANY)
flags.DEFINE_bool("crop_faces", True, "AffectNet: crop each image to its CSV face box.", **_ANY)
flags.DEFINE_bool("manifest_only", False, "AffectNet: write the selection and counts only, "
                  "without decoding images.", **_ANY)
flags.DEFINE_integer("per_class_cap", 15000, "AffectNet: training images kept per class.",
                     **_ANY)
flags.DEFINE_integer("seed", 0, "AffectNet: seed of the down-sampling (and of the holdout).",
                     **_ANY)
flags.DEFINE_enum("affectnet_validation", "official", ["official", "holdout"],
                  "AffectNet validation split: the official validation images (= test, the "
                  "paper's setting) or a stratified holdout of the training selection.", **_ANY)
flags.DEFINE_float("holdout_fraction", 0.1, "AffectNet: fraction held out with "
                   "--affectnet_validation=holdout.", **_ANY)
flags.DEFINE_integer("image_size", 224, "AffectNet: stored image size (the models' input).",
                     **_ANY)
flags.DEFINE_integer("demo_train", 3000, "Demo: images drawn for train (before majority "
                     "voting).", **_ANY)
flags.DEFINE_integer("demo_validation", 500, "Demo: images drawn for validation.", **_ANY)
flags.DEFINE_integer("demo_test", 500, "Demo: images drawn for test.", **_ANY)
flags.DEFINE_integer("demo_seed", 0, "Demo: seed (the same seed gives the same bytes).", **_ANY)
flags.DEFINE_integer("demo_identities", 200, "Demo: number of synthetic identities.", **_ANY)
flags.DEFINE_bool("progress", True, "Show progress bars on stderr.", **_ANY)


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    dataset: str
    output: str
    raw: str | None = None
    layout: str = "auto"
    fer2013_csv: str | None = None
    max_missing: int = 0
    workers: int = 0
    crop_faces: bool = True
    manifest_only: bool = False
    per_class_cap: int = 15000
    seed: int = 0
    affectnet_validation: str = "official"
    holdout_fraction: float = 0.1
    image_size: int = 224
    demo_train: int = 3000
    demo_validation: int = 500
    demo_test: int = 500
    demo_seed: int = 0
    demo_identities: int = 200
    progress: bool = True

    def check(self) -> None:
        """Raises ValueError for combinations that cannot work, before anything is read."""
        if self.dataset in ("ferplus", "affectnet") and not self.raw:
            raise ValueError(f"--raw is required for --dataset={self.dataset}")
        if self.manifest_only and self.dataset != "affectnet":
            raise ValueError("--manifest_only applies to --dataset=affectnet only")
        if self.raw and _inside(self.raw, self.output):
            raise ValueError(f"--raw={self.raw} lies inside --output={self.output}, which is "
                             "replaced as a whole")


def _inside(path: str, directory: str) -> bool:
    path, directory = Path(path).expanduser().resolve(), Path(directory).expanduser().resolve()
    return path == directory or directory in path.parents


def run(config: PrepareConfig, out=None) -> dict:
    """Prepares the data set the config names; prints and returns summary.json's content."""
    from fer_distill.data import affectnet, demo, ferplus
    from fer_distill.data.prepared import splits_table

    out = out or sys.stdout  # why not a default argument: it must be the current stdout
    config.check()
    source = {"config": dataclasses.asdict(config)}
    output = Path(config.output).expanduser()
    raw = Path(config.raw).expanduser() if config.raw else None
    workers = config.workers or None
    start = time.time()
    if config.dataset == "ferplus":
        summary = ferplus.prepare_ferplus(
            raw, output, layout=config.layout, fer2013_csv=config.fer2013_csv,
            max_missing=config.max_missing, workers=workers, source=source,
            progress=config.progress)
    elif config.dataset == "affectnet":
        summary = affectnet.prepare_affectnet(
            raw, output, crop_faces=config.crop_faces, manifest_only=config.manifest_only,
            per_class_cap=config.per_class_cap, seed=config.seed,
            validation=config.affectnet_validation, holdout_fraction=config.holdout_fraction,
            max_missing=config.max_missing, image_size=config.image_size, workers=workers,
            source=source, progress=config.progress)
    else:
        summary = demo.prepare_demo(
            output, raw_dir=raw,
            sizes={"train": config.demo_train, "validation": config.demo_validation,
                   "test": config.demo_test},
            seed=config.demo_seed, num_identities=config.demo_identities, source=source,
            progress=config.progress)
    shape = "x".join(map(str, summary["image_shape"]))
    kind = " (manifest only: no images)" if summary["manifest_only"] else ""
    print(f"prepared {summary['dataset']} ({shape}){kind} in {output} "
          f"in {time.time() - start:.1f} s", file=out)
    print(splits_table(summary), file=out)
    return summary


def config_from_flags() -> PrepareConfig:
    return PrepareConfig(**given_fields(PrepareConfig))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.dataset or not FLAGS.output:
        raise app.UsageError("--dataset and --output are required")
    config = config_from_flags()
    try:
        config.check()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    run(config)


if __name__ == "__main__":
    cli.run(main)
