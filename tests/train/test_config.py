"""TrainConfig: the paper's defaults per (stage, arch), resolution and validation."""
from __future__ import annotations

import dataclasses

import pytest

from fer_distill.train.config import (BATCH_SIZES, SCHEDULES, STAGE_VIEWS, TrainConfig,
                                      load_config, paper_defaults)


def _config(stage, arch="vgg_face", **values):
    wiring = {"init": "i.keras", "teacher": "t.keras", "kd_student": "k.keras",
              "triplet_student": "s.keras"}
    return TrainConfig(stage=stage, arch=arch, data="d", workdir="w", **{**wiring, **values})


@pytest.mark.parametrize("stage, arch, epochs, lr, floor, batch", [
    ("kd", "vgg_face", 50, 1e-4, 1e-5, 64),       # paper IV-C
    ("kd", "vgg_f", 200, 1e-3, 1e-4, 512),
    ("triplet", "vgg_face", 10, 1e-6, 1e-6, 64),
    ("triplet", "vgg_f", 10, 1e-5, 1e-5, 512),
    ("teacher", "vgg_face", 50, 1e-4, 1e-5, 64),  # epochs: paper; rate: chosen
    ("teacher", "vgg_f", 800, 1e-3, 1e-4, 512),
    ("student", "vgg_face", 40, 1e-4, 1e-5, 64),
    ("student", "vgg_f", 80, 1e-3, 1e-4, 512),
    ("eyes", "vgg_face", 40, 1e-4, 1e-5, 64),
    ("eyes", "vgg_f", 80, 1e-3, 1e-4, 512),
])
def test_paper_defaults(stage, arch, epochs, lr, floor, batch):
    config = _config(stage, arch).resolved()
    assert (config.epochs, config.learning_rate, config.min_learning_rate, config.batch_size) \
        == (epochs, lr, floor, batch)
    assert (config.momentum, config.lr_patience, config.lr_factor) == (0.9, 10, 0.1)
    assert config.eval_batch_size == batch


def test_method_constants_and_views():
    config = _config("kd").resolved()
    assert (config.kd_lambda, config.temperature, config.temperature_squared) == (0.7, 20.0,
                                                                                  False)
    assert (config.triplet_lambda, config.margin, config.triplet_reduction,
            config.mining_fraction) == (0.5, 0.1, "sum", 0.1)
    assert (config.svm_c, config.svm_standardize) == (1.0, False)
    assert {s: _config(s).resolved().view for s in STAGE_VIEWS} == STAGE_VIEWS
    assert STAGE_VIEWS["teacher"] == "full" and STAGE_VIEWS["eyes"] == "upper_half_visible"
    assert set(BATCH_SIZES) == {"vgg_f", "vgg_face", "mini", "resnet50"}
    assert all(SCHEDULES[(s, a)] for s in ("teacher", "student", "eyes", "kd", "triplet")
               for a in ("vgg_f", "vgg_face", "mini", "resnet50"))
    assert paper_defaults("fuse", "vgg_f") == {"svm_c": 1.0, "svm_standardize": False}


def test_a_given_rate_keeps_the_papers_start_to_floor_ratio():
    config = _config("kd", "vgg_f", learning_rate=0.02).resolved()
    assert config.min_learning_rate == pytest.approx(0.002)
    assert _config("kd", learning_rate=0.02, min_learning_rate=0.02).resolved() \
        .min_learning_rate == 0.02


@pytest.mark.parametrize("values, message", [
    ({"stage": "distill"}, "stage must be one of"),
    ({"arch": "resnet"}, "arch must be one of"),
    ({"teacher_mode": "lazy"}, "teacher_mode must be one of"),
    ({"stage": "kd", "teacher": None}, "stage 'kd' needs --teacher"),
    ({"stage": "fuse", "kd_student": None}, "stage 'fuse' needs --kd_student"),
    ({"stage": "teacher", "init": None}, "give --init"),
    ({"learning_rate": -1.0}, "learning_rate must be a number > 0"),
    ({"min_learning_rate": 1.0}, "min_learning_rate 1.0 is above learning_rate"),
    ({"batch_size": 0}, "batch_size must be an integer > 0"),
    ({"kd_lambda": 1.5}, "kd_lambda must be in"),
    ({"mining_fraction": 0.0}, "mining_fraction must be in"),
    ({"image_size": 96}, "vgg_face takes 224x224 inputs"),
    ({"mixed_precision_policy": "float16"}, "mixed_precision_policy must be one of"),
])
def test_bad_settings_are_refused(values, message):
    values = dict(values)
    stage = values.pop("stage", "kd")
    with pytest.raises(ValueError, match=message):
        _config(stage, **values).resolved()


def test_differences_ignore_run_control_and_json_round_trip(tmp_path):
    import json

    a = _config("kd").resolved()
    b = dataclasses.replace(a, resume=True, overwrite=True, verbose=0, epochs=3)
    assert a.differences(b) == {"epochs": (50, 3)}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**a.to_dict(), "dataset": "ferplus"}))
    assert load_config(path) == a and a.to_dict()["view"] == "lower_half_visible"


def test_view_is_a_setting_resolved_into_the_config(tmp_path):
    """None takes the stage's paper view; a mask shape or a mask file is kept as given and
    recorded; an unknown view, or a teacher that does not see full faces, is refused by name."""
    assert _config("kd").resolved().view == "lower_half_visible"
    headset = _config("kd", view="headset").resolved()
    assert headset.view == "headset" and headset.to_dict()["view"] == "headset"
    mask_file = tmp_path / "goggles.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(mask_file), np.full((8, 8), 255, np.uint8))
    assert _config("student", view=str(mask_file)).resolved().view == str(mask_file)
    with pytest.raises(ValueError, match="view: unknown view 'sunglasses'"):
        _config("student", view="sunglasses").resolved()
    with pytest.raises(ValueError, match="teacher sees full faces.*'headset'"):
        _config("teacher", view="headset").resolved()
    assert _config("fuse", view="surgical_mask").resolved().differences(
        _config("fuse").resolved()) == {"view": ("surgical_mask", "lower_half_visible")}
