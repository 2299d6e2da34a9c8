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

from pathlib import Path

from absl import app, flags

from experiments import cli, whatnext
from experiments.flagconfig import define_config_flags, given_fields
from fer_distill.train.config import TrainConfig

FLAGS = flags.FLAGS
# One flag per TrainConfig field, with the same name, help and choices (the field's metadata):
# each default is written once, in TrainConfig. Flags are read only when set
# (experiments/flagconfig.py), so unset hyper-parameters keep TrainConfig's defaults, None
# meaning the paper's value for the stage and architecture (SCHEDULES, BATCH_SIZES).
define_config_flags(TrainConfig)

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

    config = config_from_flags()
    run(config)  # results: metrics.json in --workdir
    if config.verbose:
        workdir = Path(config.workdir)
        print(whatnext.block(runs=[workdir], logdir=workdir / "logs"))


if __name__ == "__main__":
    cli.run(main)
