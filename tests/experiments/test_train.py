"""experiments/train.py: its flags are TrainConfig's, every Table I flagfile parses into the
paper's settings, and the binary runs every stage end to end on a tiny demo set."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import train as binary
from fer_distill.train import STAGE_VIEWS, TrainConfig, paper_defaults

FLAGS = flags.FLAGS
REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
DATASETS = {"ferplus": "FER+", "affectnet": "AffectNet"}
PRETRAINED = {"vgg_face": "pretrained/vgg-face.mat", "vgg_f": "pretrained/imagenet-vgg-f.mat"}
ROWS = [(d, a, s) for d in DATASETS for a in ("vgg_f", "vgg_face")
        for s in ("teacher", "student", "eyes", "kd", "triplet", "fuse")]


def test_one_flag_per_config_field():
    for field in dataclasses.fields(TrainConfig):
        assert field.name in FLAGS, field.name


def test_the_configs_directory_holds_every_training_row():
    names = {p.name for p in CONFIGS.glob("*.flags")}  # evaluation rows live there too
    assert {f"{d}_{a}_{s}.flags" for d, a, s in ROWS} <= names


@pytest.mark.parametrize("dataset, arch, stage", ROWS)
def test_flagfile_holds_the_papers_row(dataset, arch, stage):
    from fer_distill.evaluation.paper_table import load_paper_table

    path = CONFIGS / f"{dataset}_{arch}_{stage}.flags"
    text = path.read_text(encoding="utf-8")
    row = load_paper_table().find(arch, stage, STAGE_VIEWS[stage])
    header = text.splitlines()[0]
    assert header.startswith(f"# Table I, {DATASETS[dataset]} column, row \"{row.label}\"")
    assert f"{row.accuracy[dataset]:.2f}% in the paper" in header
    assert f"python -m experiments.train --flagfile=experiments/configs/{path.name}" in text

    with flagsaver.flagsaver():
        FLAGS(["train", f"--flagfile={path}"])
        config = binary.config_from_flags()
    runs = f"runs/{dataset}/{arch}"
    assert (config.stage, config.arch) == (stage, arch)
    assert config.data == f"data/prepared/{dataset}" and config.workdir == f"{runs}/{stage}"
    if stage in ("teacher", "student", "eyes"):
        assert config.init == PRETRAINED[arch]
    elif stage in ("kd", "triplet"):
        assert config.init == f"{runs}/student/model.keras"
        assert config.teacher == f"{runs}/teacher/model.keras"
    else:
        assert config.kd_student == f"{runs}/kd/model.keras"
        assert config.triplet_student == f"{runs}/triplet/model.keras"
    # the file spells out every paper value, and each equals the default the code resolves
    written = {line.split("=")[0].lstrip("-").removeprefix("no")
               for line in text.splitlines() if line.startswith("--")}
    for key, value in paper_defaults(stage, arch).items():
        assert key in written, key
        assert getattr(config, key) == value, key
    if stage != "fuse":  # nothing is left for the defaults but the derived batch and view
        assert dataclasses.replace(config.resolved(), eval_batch_size=None, view=None) == config


def test_paper_values_in_the_flagfiles():
    """The numbers of the paper's section IV-C, spelled out (NOTES §1)."""
    def read(name):
        with flagsaver.flagsaver():
            FLAGS(["train", f"--flagfile={CONFIGS / name}"])
            return binary.config_from_flags()

    kd_face, kd_f = read("ferplus_vgg_face_kd.flags"), read("affectnet_vgg_f_kd.flags")
    assert (kd_face.epochs, kd_face.batch_size, kd_face.learning_rate,
            kd_face.min_learning_rate) == (50, 64, 1e-4, 1e-5)
    assert (kd_f.epochs, kd_f.batch_size, kd_f.learning_rate,
            kd_f.min_learning_rate) == (200, 512, 1e-3, 1e-4)
    assert (kd_face.kd_lambda, kd_face.temperature, kd_face.temperature_squared) == (
        0.7, 20.0, False)
    assert kd_face.lr_patience == 10 and kd_face.momentum == 0.9
    triplet_face = read("ferplus_vgg_face_triplet.flags")
    triplet_f = read("ferplus_vgg_f_triplet.flags")
    assert (triplet_face.epochs, triplet_face.learning_rate) == (10, 1e-6)
    assert (triplet_f.epochs, triplet_f.learning_rate) == (10, 1e-5)
    assert (triplet_face.triplet_lambda, triplet_face.margin,
            triplet_face.triplet_reduction, triplet_face.mining_fraction) == (0.5, 0.1, "sum",
                                                                              0.1)
    assert read("ferplus_vgg_face_teacher.flags").epochs == 50
    assert read("ferplus_vgg_f_teacher.flags").epochs == 800
    assert read("affectnet_vgg_face_student.flags").epochs == 40
    assert read("affectnet_vgg_f_eyes.flags").epochs == 80
    assert read("ferplus_vgg_f_fuse.flags").svm_c == 1.0


def test_missing_required_flags_are_a_usage_error():
    from absl import app

    with flagsaver.flagsaver(stage="teacher", arch="mini"):
        with pytest.raises(app.UsageError, match="--data, --workdir must be given"):
            binary.config_from_flags()


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    from fer_distill.data.demo import prepare_demo

    out = tmp_path_factory.mktemp("demo") / "prepared"
    prepare_demo(out, sizes={"train": 96, "validation": 24, "test": 24}, seed=1)
    return out


def test_binary_runs_every_stage_end_to_end(tiny_demo, tmp_path):
    runs = tmp_path / "runs"
    small = dict(arch="mini", data=str(tiny_demo), epochs=1, steps_per_epoch=2, batch_size=16,
                 verbose=0)

    def train(stage, **extra):
        with flagsaver.flagsaver(stage=stage, workdir=str(runs / stage), **small, **extra):
            binary.main(["train"])
        return json.loads((runs / stage / "metrics.json").read_text())

    for stage in ("teacher", "student", "eyes"):
        metrics = train(stage, learning_rate=1e-3)
        assert metrics["view"] == STAGE_VIEWS[stage] and metrics["epochs_run"] == 1
        assert (runs / stage / "predictions" / f"test_{STAGE_VIEWS[stage]}.npz").is_file()
    sources = dict(init=str(runs / "student" / "model.keras"),
                   teacher=str(runs / "teacher" / "model.keras"))
    assert train("kd", learning_rate=1e-3, teacher_mode="live", **sources)["stage"] == "kd"
    assert train("triplet", learning_rate=1e-6, **sources)["stage"] == "triplet"
    metrics = train("fuse", kd_student=str(runs / "kd" / "model.keras"),
                    triplet_student=str(runs / "triplet" / "model.keras"))
    assert metrics["stage"] == "fuse" and (runs / "fuse" / "fusion").is_dir()
    config = json.loads((runs / "kd" / "config.json").read_text())
    assert config["teacher_mode"] == "live" and config["learning_rate"] == 1e-3
    assert config["batch_size"] == 16 and config["kd_lambda"] == 0.7  # flag, then default
    assert re.fullmatch(r".*runs/kd", config["workdir"])
