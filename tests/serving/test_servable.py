"""Which model and which view a path stands for."""
import json
import logging

import numpy as np
import pytest

from fer_distill.models import mini
from fer_distill.serving.servable import FUSION, Servable, load_servable

from .conftest import write_fuse_run, write_run


def test_run_directory_gives_its_model_and_recorded_view(student):
    run, model = student
    servable = load_servable(run)
    assert servable.kind == "classifier" and servable.view == "lower_half_visible"
    assert servable.input_sizes == ((32, 32),)
    assert servable.source["stage"] == "student"
    np.testing.assert_array_equal(servable.models[0].get_layer("fc8").get_weights()[0],
                                  model.get_layer("fc8").get_weights()[0])
    # the model file inside the run reads the same config.json
    assert load_servable(run / "model.keras").view == "lower_half_visible"


def test_a_bare_model_file_needs_a_view(student, tmp_path, caplog):
    _, model = student
    model.save(tmp_path / "bare.keras")
    with pytest.raises(ValueError, match=r"bare\.keras.*no occlusion view.*--view"):
        load_servable(tmp_path / "bare.keras")
    assert load_servable(tmp_path / "bare.keras", view="full").view == "full"
    with caplog.at_level(logging.WARNING):
        overridden = load_servable(student[0], view="upper_half_visible")
    assert overridden.view == "upper_half_visible"
    assert "trained for view 'lower_half_visible'" in caplog.text


def test_bad_paths_and_views_are_named(tmp_path, student):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_servable(tmp_path / "nowhere")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_servable(tmp_path / "empty_run")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text(json.dumps({"view": "full"}))
    with pytest.raises(FileNotFoundError, match="no model.keras"):
        load_servable(tmp_path / "unfinished")
    with pytest.raises(ValueError, match="unknown view 'sideways'"):
        load_servable(student[0], view="sideways")


def test_a_head_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="has 3 logits but there are 8 classes"):
        Servable("classifier", (mini(3, 32),), "full")


def test_fuse_run_finds_its_students(fuse_run):
    fuse, kd, triplet, svm = fuse_run
    servable = load_servable(fuse)
    assert servable.kind == FUSION and servable.view == "lower_half_visible"
    weights, bias = servable.linear_map
    np.testing.assert_allclose(weights, svm.linear_map(num_classes=8)[0])
    for got, want in zip(servable.models, (kd, triplet)):
        np.testing.assert_array_equal(got.get_layer("fc7").get_weights()[0],
                                      want.get_layer("fc7").get_weights()[0])
    # the fusion directory itself opens the run around it
    assert load_servable(fuse / "fusion").kind == FUSION


def test_fuse_run_without_student_paths_says_which_keys(tmp_path):
    fuse, *_ = write_fuse_run(tmp_path, students_key=("first", "second"))
    with pytest.raises(ValueError, match="'kd_student' and 'triplet_student'"):
        load_servable(fuse)
    explicit = load_servable(fuse, kd_student=tmp_path / "kd" / "model.keras",
                             triplet_student=tmp_path / "triplet" / "model.keras")
    assert explicit.kind == FUSION


def test_fusion_students_must_match_the_svm(fuse_run, tmp_path):
    fuse, *_ = fuse_run
    wide = write_run(tmp_path / "wide", _wide_student(), view="lower_half_visible")
    with pytest.raises(ValueError, match="embeddings of width 64.*gives 32"):
        load_servable(fuse, kd_student=wide / "model.keras",
                      triplet_student=wide / "model.keras")


def _wide_student():
    return mini(8, 32, embedding_size=32)
