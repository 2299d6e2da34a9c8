"""Train one stage of the paper's Table I into one run directory.

Usage (from the repository root; every row of Table I has a flagfile in experiments/configs/):

  # FER+, VGG-face, in the paper's order (each stage reads the previous ones' model.keras):
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_teacher.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_student.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_eyes.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_kd.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_triplet.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_fuse.flags
  # ours, beyond the paper: relational KD and a view-masked FitNets hint
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_rkd.flags
  python -m experiments.train --flagfile=experiments/configs/ferplus_vgg_face_hint.flags

  # or any stage by hand; unset hyper-parameters take the paper's values for (stage, arch):
  python -m experiments.train --stage=kd --arch=vgg_face --data=data/prepared/ferplus \\
      --workdir=runs/ferplus/vgg_face/kd \\
      --init=runs/ferplus/vgg_face/student/model.keras \\
      --teacher=runs/ferplus/vgg_face/teacher/model.keras

  # the whole method on a CPU in minutes: the synthetic demo set and the small `mini` network
  python -m experiments.prepare_data --dataset=demo --output=data/prepared/demo
  python -m experiments.train --stage=teacher --arch=mini --data=data/prepared/demo \\
      --workdir=runs/demo/mini/teacher
  python -m experiments.train --stage=student --arch=mini --data=data/prepared/demo \\
      --workdir=runs/demo/mini/student
  python -m experiments.train --stage=kd --arch=mini --data=data/prepared/demo \\
      --workdir=runs/demo/mini/kd --init=runs/demo/mini/student/model.keras \\
      --teacher=runs/demo/mini/teacher/model.keras
  (likewise --stage=triplet, then --stage=fuse --kd_student=... --triplet_student=...)

Stages: teacher (full view), student (lower half visible; baseline [1]), eyes (upper half
visible; baseline [2]) fine-tune `--init` (a MatConvNet .mat such as pretrained/vgg-face.mat,
or a .keras file; `--init=scratch` for random weights) with cross-entropy, fc8 replaced by a
fresh layer as wide as the data set has classes (`--head`); kd (eqs. 1-2) and triplet
(eqs. 3-4) start from the student's model.keras (`--init`) and learn from the frozen
`--teacher`; fuse trains a linear SVM on the `--kd_student` and `--triplet_student`
embeddings.

Reads: `--data` (a prepared data set, experiments/prepare_data.py), the model files above.
Writes into `--workdir` (docs/DESIGN.md, "Training"): config.json (every setting), environment
.json (versions, git commit, devices, seed), logs/ (TensorBoard), checkpoints/ (every epoch),
cache/ (the teacher's outputs, computed once), model.keras (fuse: fusion/), predictions/
<split>_<view>.npz for the validation and test splits, and metrics.json LAST.

A finished run (metrics.json) is reported and not re-run unless --overwrite; asked for with
other settings, it is an error that lists them. A killed run continues from its last epoch with
--resume (same flags) and ends where it would have ended. While a run writes --workdir it holds
a lock on it (.NAME.lock beside it): a second train into it stops, naming the holder.
Errors print one line (experiments/cli.py); --debug shows the traceback.
Views: --view=headset (or any view, mask shape or mask file) trains the student-side stages on
another occlusion than the paper's halves; the run records it and everything downstream
(evaluation, report, export, predict, Grad-CAM) reads it from there.
Small runs: --epochs, --steps_per_epoch, --max_train_examples, --image_size (mini).
GPUs: --mixed_precision (mixed_float16 on a GPU, mixed_bfloat16 on a CPU;
--mixed_precision_policy to choose), --jit_compile (XLA), --strategy=mirrored (all local GPUs)
or --strategy=multi_worker (TF_CONFIG on every worker); --batch_size is the global batch.
"""
from __future__ import annotations


import dataclasses

from absl import app, flags

from experiments import cli
from experiments.flagconfig import given_fields
from fer_distill.train.config import (ARCHITECTURES, HEAD_RULES, MIXED_PRECISION_POLICIES,
                                      STAGES, STRATEGIES, TEACHER_MODES, TrainConfig)

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process, where generic names
# (--data, --seed, --batch_size, ...) would otherwise clash with other binaries' flags. Which
# module's default wins then depends on import order, so `config_from_flags` reads only the
# flags that were set and leaves every other setting to TrainConfig's own default.
_ANY = {"allow_override": True}

# One flag per TrainConfig field, with the same name (fer_distill.reproduce writes flagfiles
# from configs field by field). Hyper-parameters default to None: the paper's value for the
# stage and architecture (fer_distill.train.config.SCHEDULES, BATCH_SIZES).
flags.DEFINE_enum("stage", None, list(STAGES), "Which stage of Table I to train.", **_ANY)
flags.DEFINE_enum("arch", None, list(ARCHITECTURES),
                  "Network: vgg_f, vgg_face (the paper's), mini (tests and the demo).", **_ANY)
flags.DEFINE_string("data", None, "Prepared data set directory (experiments/prepare_data.py).",
                    **_ANY)
flags.DEFINE_string("workdir", None, "Run directory to write (created).", **_ANY)
flags.DEFINE_string("init", None,
                    "Network to start from: .mat or .keras; 'scratch' for random weights. "
                    "teacher/student/eyes: the pretrained network; kd/triplet: the student "
                    "stage's model.keras.", **_ANY)
flags.DEFINE_string("teacher", None, "kd/triplet: the teacher stage's model.keras (frozen).",
                    **_ANY)
flags.DEFINE_string("kd_student", None, "fuse: the kd stage's model.keras.", **_ANY)
flags.DEFINE_string("triplet_student", None, "fuse: the triplet stage's model.keras.", **_ANY)
flags.DEFINE_enum("head", "auto", list(HEAD_RULES),
                  "fc8 of --init: auto = a fresh 8-way fc8 when its width differs from the "
                  "data set's classes (a pretrained ImageNet/face network), kept otherwise; "
                  "new = always fresh; keep = never.", **_ANY)
flags.DEFINE_integer("image_size", None,
                     "Input size; VGG: 224 (fixed); mini: the --init network's, else 32.", **_ANY)
flags.DEFINE_string("view", None, "The view the model is trained and tested on (kd, triplet, "
                    "fuse: the students'; the teacher sees full): full, lower_half_visible, "
                    "upper_half_visible, a mask shape (headset, surgical_mask, under_headset, "
                    "under_surgical_mask) or a mask image file. Default: the stage's paper view.",
                    **_ANY)

flags.DEFINE_integer("epochs", None,
                     "Default (VGG-face; VGG-f): teacher 50; 800, student and eyes 40; 80, "
                     "kd 50; 200, triplet 10; 10 (paper).", **_ANY)
flags.DEFINE_integer("batch_size", None, "Global batch; default 64 (VGG-face), 512 (VGG-f).",
                     **_ANY)
flags.DEFINE_float("learning_rate", None,
                   "Starting rate. Default kd 1e-4 (VGG-face), 1e-3 (VGG-f); triplet 1e-6; "
                   "1e-5; teacher/student/eyes (paper silent) 1e-4; 1e-3.", **_ANY)
flags.DEFINE_float("min_learning_rate", None,
                   "Floor of the plateau rule; default a tenth of the starting rate (triplet: "
                   "the rate itself, constant as in the paper).", **_ANY)
flags.DEFINE_integer("lr_patience", 10,
                     "Divide the rate by 10 after this many epochs without a better "
                     "validation error (paper: 10).", **_ANY)
flags.DEFINE_float("lr_factor", 0.1, "Factor of the plateau rule (paper: 0.1).", **_ANY)
flags.DEFINE_float("momentum", 0.9, "SGD momentum (paper: 0.9).", **_ANY)
flags.DEFINE_float("weight_decay", None,
                   "L2 weight decay on kernels, added to the gradient before momentum as "
                   "MatConvNet's cnn_train does (its default 5e-4, set in the flagfiles of the "
                   "stages the paper trained in MatConvNet: teacher, student, eyes, kd; triplet 0).",
                   **_ANY)

flags.DEFINE_float("kd_lambda", 0.7, "kd: λ of eq. 1 (paper: 0.7).", **_ANY)
flags.DEFINE_float("temperature", 20.0, "kd: τ of eq. 2 (paper: 20).", **_ANY)
flags.DEFINE_boolean("temperature_squared", False,
                     "kd: multiply the soft term by τ² (Hinton et al.); eq. 1 has no such "
                     "factor, so off.", **_ANY)
flags.DEFINE_enum("teacher_mode", "cached", list(TEACHER_MODES),
                  "cached: the teacher's outputs computed once per data set (fast); live: the "
                  "teacher runs in every step (for input augmentation).", **_ANY)
flags.DEFINE_boolean("shuffle_teacher", False,
                     "kd/triplet CONTROL: give each image another image's cached teacher "
                     "output; a student taught so must not beat the baseline.", **_ANY)
flags.DEFINE_float("triplet_lambda", 0.5, "triplet: λ of eq. 4 (paper: 0.5).", **_ANY)
flags.DEFINE_float("margin", 0.1, "triplet: α of eq. 3 (paper: 0.1).", **_ANY)
flags.DEFINE_enum("triplet_reduction", "sum", ["sum", "mean"],
                  "triplet: eq. 3 sums over the batch (paper); mean divides by it.", **_ANY)
flags.DEFINE_float("mining_fraction", 0.1,
                   "triplet: the per-epoch random subset mined against (paper: a tenth).", **_ANY)
flags.DEFINE_integer("mining_chunk_size", 1024, "triplet: anchors per distance matmul.", **_ANY)
# rkd and hint (ours, beyond the paper); the defaults are TrainConfig's own, read from it.
_OURS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
flags.DEFINE_float("rkd_lambda", _OURS["rkd_lambda"],
                   "rkd (ours): λ of CE + λ·(w_d·L_dist + w_a·L_angle).", **_ANY)
flags.DEFINE_float("rkd_distance_weight", _OURS["rkd_distance_weight"],
                   "rkd (ours): w_d (Park et al. 2019, section 4.2: 25).", **_ANY)
flags.DEFINE_float("rkd_angle_weight", _OURS["rkd_angle_weight"],
                   "rkd (ours): w_a (Park et al. 2019, section 4.2: 50).", **_ANY)
flags.DEFINE_float("hint_lambda", _OURS["hint_lambda"],
                   "hint (ours): λ of CE + λ·(hint L2 over the visible positions).", **_ANY)
flags.DEFINE_string("hint_layer", _OURS["hint_layer"],
                    "hint (ours): the layer hinted in both networks (default per architecture: "
                    "relu5 vgg_f, relu5_3 vgg_face, res5c_relu resnet50, relu2 mini).", **_ANY)
flags.DEFINE_float("svm_c", 1.0, "fuse: C of the linear SVM (paper: 1).", **_ANY)
flags.DEFINE_boolean("svm_standardize", False,
                     "fuse: standardise the embeddings first (paper: not said; off).", **_ANY)

flags.DEFINE_integer("steps_per_epoch", None, "Small runs: steps per epoch (default: all).", **_ANY)
flags.DEFINE_integer("max_train_examples", None,
                     "Small runs: train on a seeded random subset of this many images.", **_ANY)
flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and mining subsets.", **_ANY)
flags.DEFINE_boolean("deterministic", False,
                     "TensorFlow op determinism: the same command on the same machine and "
                     "versions gives identical numbers (slower on a GPU).", **_ANY)
flags.DEFINE_integer("eval_batch_size", None, "Batch for evaluation and caching (default: "
                     "--batch_size).", **_ANY)
flags.DEFINE_boolean("mixed_precision", False, "Mixed precision (see --mixed_precision_policy).",
                     **_ANY)
flags.DEFINE_enum("mixed_precision_policy", "auto", list(MIXED_PRECISION_POLICIES),
                  "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU.", **_ANY)
flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA.", **_ANY)
flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                  "default: one device; mirrored: all local GPUs; multi_worker: TF_CONFIG.", **_ANY)
flags.DEFINE_integer("keep_checkpoints", 2, "Per-epoch checkpoints kept on disk.", **_ANY)
flags.DEFINE_boolean("resume", False, "Continue an interrupted run from its last epoch.", **_ANY)
flags.DEFINE_boolean("overwrite", False, "Delete the run in --workdir and train again.", **_ANY)
flags.DEFINE_integer("verbose", 1, "1: progress bars; 2: one line per epoch; 0: quiet.", **_ANY)

REQUIRED = ("stage", "arch", "data", "workdir")


def config_from_flags() -> TrainConfig:
    """The TrainConfig the set flags describe; unset flags keep TrainConfig's defaults."""
    given = given_fields(TrainConfig)
    missing = [f"--{name}" for name in REQUIRED if given.get(name) is None]
    if missing:
        # why not flags.mark_flags_as_required: its validators would fail every other
        # binary's flag parsing in a process that imported this module.
        raise app.UsageError(f"{', '.join(missing)} must be given")
    return TrainConfig(**given)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from fer_distill.train import run

    run(config_from_flags())  # results: metrics.json in --workdir


if __name__ == "__main__":
    cli.run(main)
