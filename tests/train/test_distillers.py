"""The rkd and hint stages (ours) end to end on the demo set, `mini` at 32x32, one step each:
a loadable plain classifier, metrics.json with the logged terms and the transfer record."""
import json

import keras
import pytest

from fer_distill.train import run


@pytest.mark.parametrize("stage,terms,extra", [
    ("rkd", ("rkd_ce", "rkd_dist", "rkd_angle"), {}),  # cached teacher embeddings
    ("hint", ("hint_ce", "hint"), {"teacher_mode": "live"}),
])
def test_stage_trains_and_writes_a_plain_student(trained_runs, mini_config, tmp_path, stage,
                                                 terms, extra):
    workdir = tmp_path / stage
    metrics = run(mini_config(stage, workdir, epochs=1, steps_per_epoch=1,
                              init=str(trained_runs["student"] / "model.keras"),
                              teacher=str(trained_runs["teacher"] / "model.keras"), **extra))
    written = json.loads((workdir / "metrics.json").read_text())
    assert written["stage"] == stage == metrics["stage"]
    assert written["view"] == "lower_half_visible" and 0 <= written["test"]["accuracy"] <= 1
    assert set(terms) <= set(written["history"][0]) and "transfer" in written
    model = keras.saving.load_model(workdir / "model.keras")
    student = keras.saving.load_model(trained_runs["student"] / "model.keras")
    assert [layer.name for layer in model.layers] == [layer.name for layer in student.layers]
    config = json.loads((workdir / "config.json").read_text())
    assert config["stage"] == stage and config["learning_rate"] == 3e-3  # like kd


def test_rkd_shuffled_teacher_gives_each_image_another_images_embedding(trained_runs,
                                                                        mini_config, demo_data,
                                                                        tmp_path):
    import numpy as np

    from fer_distill.data.prepared import read_prepared
    from fer_distill.train import distillers
    from fer_distill.train.teacher_cache import deranged

    prepared = read_prepared(demo_data)
    loaded = {"teacher": keras.saving.load_model(trained_runs["teacher"] / "model.keras"),
              "student": keras.saving.load_model(trained_runs["student"] / "model.keras")}
    rows = np.arange(prepared.count("train"), dtype=np.int64)
    tables = {}
    for shuffle in (False, True):
        config = mini_config("rkd", tmp_path / "rkd", init="s", teacher=str(
            trained_runs["teacher"] / "model.keras"), shuffle_teacher=shuffle).resolved()
        trainer, _ = distillers.build_trainer(config, prepared, loaded, rows, 32, "float32",
                                           tmp_path / "rkd", True)
        tables[shuffle] = trainer.train_embeddings.numpy()
    partner = deranged(rows, 0)
    np.testing.assert_array_equal(tables[True][rows], tables[False][partner])
    assert (partner != rows).all()
