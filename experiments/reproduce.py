"""Reproduce Table I in one command: every stage, in order, then the table.

Usage:

  # no data at hand: the synthetic demo set and the small `mini` network, a few minutes on a
  # CPU (SYNTHETIC, SMOKE SCALE: it shows the pipeline; its numbers are not the paper's)
  python -m experiments.reproduce

  # the paper, one data set and one architecture (FER+ raw files as experiments/prepare_data.py
  # takes them; AffectNet likewise), fine-tuning the pretrained MatConvNet network
  python -m experiments.reproduce --dataset=ferplus --arch=vgg_face --raw=~/FERPlus \
      --pretrained=pretrained/vgg-face.mat --workdir=reproduction/ferplus_vgg_face
  python -m experiments.reproduce --dataset=affectnet --arch=vgg_f --raw=~/AffectNet \
      --pretrained=pretrained/imagenet-vgg-f.mat --workdir=reproduction/affectnet_vgg_f

  # only the paper's TensorFlow stage, from a MatConvNet-trained teacher and student (and KD
  # student, if you have one; else it is trained here from the two)
  python -m experiments.reproduce --dataset=ferplus --arch=vgg_face --raw=~/FERPlus \
      --from_matconvnet_teacher=teacher.mat --from_matconvnet_student=student.mat \
      [--from_matconvnet_kd_student=kd.mat] --workdir=reproduction/ferplus_vgg_face_tf

  # beyond the paper: students behind a headset silhouette or a surgical mask (ours; each
  # scenario's table is printed beside Table I; the default is --scenarios=paper alone)
  python -m experiments.reproduce --scenarios=paper,headset,mask

  # change any training setting of any stage ("*" = every stage), e.g. a shorter run
  python -m experiments.reproduce ... --override=all.epochs=5 --override=kd.learning_rate=1e-4

Stages: prepare, teacher, student, eyes, kd, triplet, fuse, evaluate (every run on its view,
the teacher on all three), figure (the paper's Figure 3: Grad-CAM of the fused model), report. Run the same command again after an interruption: finished
stages (metrics.json) are skipped, an interrupted one resumes from its last epoch; a finished
run with other settings stops the command rather than being reported as this one. --stages
runs a subset. Two distillers beyond the paper (ours) run only when named, after the others:

  python -m experiments.reproduce --dataset=demo --arch=mini --stages=rkd,hint,evaluate,report

Reads: --raw (or a prepared --data), --pretrained / --from_matconvnet_*.
Writes into --workdir: data/prepared/<dataset>/, runs/<dataset>/<arch>/<stage>/ (one run
directory per stage, docs/DESIGN.md "Training"), flags/*.flags (an experiments.train or
experiments.evaluate flagfile per Table I row, to re-run one by hand), provenance.json,
report/table_i.{md,csv,json}, report/figure3_gradcam.png, reproduce.json (settings, per-stage status and time). Prints
progress and, at the end, the table.

Scenarios (--scenarios=paper,headset,mask; default paper): beyond the paper's halves, the
students see a headset silhouette ("headset") or a surgical mask ("mask"); the other-view
baseline sees what that occluder hides. Their runs go to runs/<dataset>/<arch>/<scenario>/,
their flagfiles to flags/<dataset>_<arch>_<scenario>_*.flags; the teacher and data are shared.

Presets (--preset): "paper" (the paper's hyper-parameters; the default with data), "demo"
(the default without; fer_distill.preset.DEMO says what it sets and why) and "demo_scarce"
(the demo set on which the known-answer benchmark measured distillation gaining: 800 training
faces whose lower halves show nothing of the brows; KNOWN_ANSWER_SCARCE.md).
"""
from __future__ import annotations

import os
import typing

# why: this is the README's first command; TensorFlow's C++ INFO and WARNING logs would bury
# the progress (errors still show). Set before anything imports TensorFlow (experiments.cli
# does, through fer_distill).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from experiments import cli, whatnext  # noqa: E402
from experiments.flagconfig import parse_field  # noqa: E402
from fer_distill.train.config import ARCHITECTURES  # noqa: E402

FLAGS = flags.FLAGS
_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
flags.DEFINE_enum("dataset", None, ["ferplus", "affectnet", "demo"],
                  "Data set (default: demo, when no --raw/--data is given).", **_ANY)
flags.DEFINE_enum("arch", None, list(ARCHITECTURES),
                  "Architecture of teacher and students (default: mini for the demo).", **_ANY)
flags.DEFINE_string("raw", None, "The raw release to prepare (ferplus, affectnet).", **_ANY)
flags.DEFINE_string("data", None, "An already prepared data set (instead of --raw).", **_ANY)
flags.DEFINE_string("pretrained", None, "Network the teacher and baselines fine-tune (.mat or "
                    ".keras); required for vgg_f/vgg_face.", **_ANY)
flags.DEFINE_string("workdir", None, "Where everything goes (default: "
                    "reproduction/<dataset>_<arch>).", **_ANY)
flags.DEFINE_string("from_matconvnet_teacher", None, "MatConvNet-trained teacher (.mat).",
                    **_ANY)
flags.DEFINE_string("from_matconvnet_student", None, "MatConvNet-trained student baseline.",
                    **_ANY)
flags.DEFINE_string("from_matconvnet_kd_student", None, "MatConvNet-trained KD student "
                    "(optional; else trained here).", **_ANY)
flags.DEFINE_boolean("deterministic", None,
                     "TensorFlow op determinism in every training stage, so the same command on "
                     "the same machine and versions prints the same numbers (the demo preset "
                     "sets it; --nodeterministic turns it off).", **_ANY)
flags.DEFINE_enum("preset", None, ["paper", "demo", "demo_scarce"],
                  "Settings preset (default: demo for the demo data set, else paper; "
                  "demo_scarce: the demo set where distillation measurably gains).", **_ANY)
flags.DEFINE_multi_string("override", [], "STAGE.FIELD=VALUE: a training setting for one stage "
                          "('*' or 'all' for every stage), e.g. kd.epochs=10; repeatable.",
                          **_ANY)
flags.DEFINE_enum("mcnemar", "exact", ["exact", "chi2"],
                  "McNemar variant of the report's †.", **_ANY)
flags.DEFINE_integer("eval_batch_size", None, "Images per forward pass when evaluating.",
                     **_ANY)
flags.DEFINE_list("stages", None, "Only these stages (prepare, teacher, student, eyes, kd, "
                  "triplet, fuse, evaluate, figure, report; and rkd, hint, the distillers "
                  "beyond the paper, run only when named here).", **_ANY)
flags.DEFINE_enum("layout", "auto", ["auto", "png", "csv"], "FER+ raw layout.", **_ANY)
flags.DEFINE_string("fer2013_csv", None, "FER+: fer2013.csv, when it is not inside --raw.",
                    **_ANY)
flags.DEFINE_integer("max_missing", 0, "Missing/unreadable raw images tolerated.", **_ANY)
flags.DEFINE_list("scenarios", None, "Occlusion scenarios to run, in order (default: paper): "
                  "paper (Table I), headset (students see the headset silhouette), mask "
                  "(students see the surgical-mask view); fer_distill.scenarios. Ours share "
                  "the data and teacher and write runs of their own; the report shows each "
                  "one's table beside Table I.", **_ANY)
flags.DEFINE_integer("verbose", 2, "2: one line per epoch (default here); 1: progress bars; "
                     "0: quiet.", **_ANY)


def _set(name):
    """The flag was given a value (other binaries in one process may define the same name
    with other defaults, so a default is never read from FLAGS)."""
    return not FLAGS[name].using_default_value and FLAGS[name].value is not None


def parse_override(text: str) -> tuple[str, str, typing.Any]:
    """"kd.epochs=10" -> ("kd", "epochs", 10), the value parsed as experiments.train's flag of
    that TrainConfig field would parse it (experiments/flagconfig.py)."""
    from fer_distill.train import TrainConfig

    stage_field, sep, raw = text.partition("=")
    stage, dot, field = stage_field.partition(".")
    if not sep or not dot or not stage or not field:
        raise app.UsageError(f"--override={text!r}: expected STAGE.FIELD=VALUE, e.g. "
                             "kd.epochs=10 or *.batch_size=32")
    stage = "*" if stage == "all" else stage  # why: an unquoted * may meet the shell's glob
    try:
        value = parse_field(TrainConfig, field, raw)
    except ValueError as error:
        raise app.UsageError(f"--override={text!r}: {error}") from None
    return stage, field, value


def config_from_flags():
    from fer_distill.reproduce import PRESETS, ReproduceConfig

    has_data = _set("raw") or _set("data") or _set("from_matconvnet_teacher")
    dataset = FLAGS.dataset if _set("dataset") else (None if has_data else "demo")
    if dataset is None:
        raise app.UsageError("--dataset (ferplus or affectnet) must be given with --raw/--data")
    arch = FLAGS.arch if _set("arch") else ("mini" if dataset == "demo" else None)
    if arch is None:
        raise app.UsageError("--arch (vgg_f or vgg_face) must be given")
    preset = FLAGS.preset if _set("preset") else ("demo" if dataset == "demo" else "paper")
    overrides: dict[str, dict] = {}
    if _set("deterministic"):
        overrides["*"] = {"deterministic": bool(FLAGS.deterministic)}
    for text in FLAGS.override:
        stage, field, value = parse_override(text)
        overrides.setdefault(stage, {})[field] = value
    prepare = {}
    if dataset == "ferplus":
        prepare = {"layout": FLAGS.layout, "fer2013_csv": FLAGS.fer2013_csv if _set(
            "fer2013_csv") else None, "max_missing": FLAGS.max_missing if _set(
            "max_missing") else 0}
    elif dataset == "affectnet" and _set("max_missing"):
        prepare = {"max_missing": FLAGS.max_missing}

    def value(name):
        return FLAGS[name].value if _set(name) else None

    config = ReproduceConfig(
        workdir=value("workdir") or f"reproduction/{dataset}_{arch}"
        + ("" if preset in ("paper", "demo") else f"_{preset}"),
        dataset=dataset, arch=arch, raw=value("raw"), data=value("data"),
        pretrained=value("pretrained"),
        from_matconvnet_teacher=value("from_matconvnet_teacher"),
        from_matconvnet_student=value("from_matconvnet_student"),
        from_matconvnet_kd_student=value("from_matconvnet_kd_student"),
        preset=PRESETS[preset], overrides=overrides, prepare_options=prepare,
        exact=(FLAGS.mcnemar if _set("mcnemar") else "exact") == "exact",
        eval_batch_size=value("eval_batch_size"),
        stages=tuple(FLAGS.stages) if _set("stages") else None,
        verbose=FLAGS.verbose if _set("verbose") else 2)
    try:
        config.check()
        from fer_distill.reproduce import Reproduction

        for stage in ("teacher", "student", "eyes", "kd", "triplet", "fuse"):
            train_config = Reproduction(config).train_config(stage)
            if train_config is not None:
                train_config.resolved()  # a bad override fails here, not hours later
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import dataclasses

    from fer_distill.reproduce import DEFAULT_STAGES, TRAINING_STAGES, Reproduction, reproduce

    config = config_from_flags()
    names = scenarios_from_flags()
    runs = []
    for i, name in enumerate(names):
        stages = config.stages
        if stages is None and i < len(names) - 1:  # the report once, after the last scenario
            stages = tuple(s for s in DEFAULT_STAGES + tuple(config.preset.extra_stages)
                           if s != "report")
        scenario_config = dataclasses.replace(config, scenario=name, stages=stages)
        reproduce(scenario_config)
        layout = Reproduction(scenario_config).layout
        runs += [layout.run(stage) for stage in TRAINING_STAGES if layout.run(stage) not in runs]
    fused = layout.run("fuse")
    print(whatnext.block(runs=runs, report=layout.report, logdir=layout.root / "runs",
                         flags_dir=layout.root / "flags",
                         model=fused if (fused / "metrics.json").is_file() else None))


def scenarios_from_flags() -> list[str]:
    """--scenarios, checked (default: the paper's alone)."""
    from fer_distill.scenarios import scenario

    names = list(FLAGS.scenarios) if _set("scenarios") else ["paper"]
    try:
        for name in names:
            scenario(name)
    except ValueError as error:
        raise app.UsageError(f"--scenarios: {error}") from None
    if not names or len(set(names)) != len(names):
        raise app.UsageError(f"--scenarios: expected distinct scenario names, got {names}")
    return names


if __name__ == "__main__":
    cli.run(main)
