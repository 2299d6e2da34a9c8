"""Evaluate a trained model on any view of a prepared split: accuracy, per-class accuracy,
confusion matrix (CSV + PNG) and every image's prediction.

Usage:

  # a run directory: its own view (a teacher: all three views, as Table I tests it); results
  # are written into the run directory
  python -m experiments.evaluate --model=runs/ferplus/vgg_face/student
  python -m experiments.evaluate --model=runs/ferplus/vgg_face/teacher

  # the Table I rows that are evaluations (the teachers on ◐ and ◑) have flagfiles
  python -m experiments.evaluate \
      --flagfile=experiments/configs/ferplus_vgg_face_teacher_on_lower.flags

  # any view, another split, another data set, or a bare model file into --output
  python -m experiments.evaluate --model=runs/ferplus/vgg_face/kd --views=full,lower_half_visible
  python -m experiments.evaluate --model=student.keras --data=data/prepared/ferplus \
      --views=lower_half_visible --output=eval/student

Reads: --model (a run directory of experiments/train.py, a fuse run, or a .keras/.mat file)
and --data (a prepared data set; default: the one the run recorded in config.json).
Writes into the run directory, or --output, for each view V of split S (each file atomically,
the JSON last):
  predictions/S_V.npz                 index, label, pred, probs (fuse: + scores)
  evaluation/S_V_confusion.csv|.png   the confusion matrix (rows: true class)
  evaluation/S_V.json                 accuracy, per-class accuracy and counts, confusion matrix,
                                      what was evaluated, and this command line (the report's
                                      "flagfile" column)
Saved predictions of the same split and view are reused when they cover the split exactly and
are newer than the model (--noreuse_predictions runs the model again).
"""
from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli
from experiments.flagconfig import given_flags

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process (docs/DESIGN.md,
# "Binaries"); only flags that were set are read, the rest keep EvaluateConfig's defaults.
_ANY = {"allow_override": True}
flags.DEFINE_string("model", None, "Run directory, fuse run directory, or .keras/.mat file.",
                    **_ANY)
flags.DEFINE_string("data", None, "Prepared data set (default: the run's config.json).", **_ANY)
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.",
                  **_ANY)
flags.DEFINE_list("views", None, "Views: full, lower_half_visible, upper_half_visible, a mask "
                  "shape (headset, surgical_mask, ...) or a mask image file (default: the run's "
                  "own; a teacher: the first three).", **_ANY)
flags.DEFINE_string("output", None, "Where to write (default: the run directory).", **_ANY)
flags.DEFINE_integer("batch_size", None, "Images per forward pass (default 64).", **_ANY)
flags.DEFINE_boolean("reuse_predictions", True, "Reuse matching saved predictions.", **_ANY)

_NAMES = ("model", "data", "split", "views", "output", "batch_size", "reuse_predictions")


def config_from_flags(argv=None):
    """The EvaluateConfig the set flags describe (provenance: this command line)."""
    from fer_distill.evaluation.evaluate import EvaluateConfig
    from fer_distill.evaluation.report import flagfiles_in

    given = given_flags(_NAMES)
    if not given.get("model"):
        raise app.UsageError("--model must be given")
    if "views" in given:
        given["views"] = tuple(given["views"])
    argv = list(sys.argv if argv is None else argv)
    config = EvaluateConfig(**given, provenance={
        "argv": argv, "flagfile": " ".join(flagfiles_in(argv)) or None})
    try:
        config.check()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from fer_distill.evaluation.evaluate import evaluate

    evaluate(config_from_flags())


if __name__ == "__main__":
    cli.run(main)
