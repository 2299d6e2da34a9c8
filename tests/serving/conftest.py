"""Small trained-looking models and run directories for the serving tests.

`mini` at 32x32 everywhere. A freshly initialised mini has fc8 logits of std ~0.07, so every
softmax is ~1/8 and a comparison of probabilities could not fail; `sharp_mini` redraws fc8 so
the logits spread over several units and any preprocessing mistake shows in every output.
"""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import fer_distill  # noqa: F401  (registers the custom layers)
from fer_distill.models import embedding_model, mini


def sharp_mini(seed: int, input_size: int = 32) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = mini(8, input_size)
    fc8 = model.get_layer("fc8")
    kernel, bias = fc8.get_weights()
    rng = np.random.default_rng(seed)
    fc8.set_weights([rng.normal(0.0, 0.5, kernel.shape).astype(np.float32),
                     rng.normal(0.0, 0.5, bias.shape).astype(np.float32)])
    return model


def write_run(run, model, **config) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"arch": "mini", **config}))
    (run / "metrics.json").write_text("{}")
    return run


def write_fuse_run(root, seed: int = 0, *, students_key=("kd_student", "triplet_student")):
    """kd and triplet student runs, and a fuse run whose SVM was fitted on their embeddings
    of random lower-half-visible images. Returns (fuse_run, kd, triplet, svm)."""
    from fer_distill.data.occlusion import occlude
    from fer_distill.distill.fusion import FusionSVM

    kd = sharp_mini(seed + 1)
    triplet = sharp_mini(seed + 2)
    kd_run = write_run(root / "kd", kd, stage="kd", view="lower_half_visible")
    triplet_run = write_run(root / "triplet", triplet, stage="triplet",
                            view="lower_half_visible")
    rng = np.random.default_rng(seed)
    images = occlude(rng.uniform(0, 255, (48, 32, 32, 3)).astype(np.float32),
                     "lower_half_visible")
    labels = np.arange(48) % 8
    emb_kd = embedding_model(kd)(images)["embedding"].numpy()
    emb_tr = embedding_model(triplet)(images)["embedding"].numpy()
    svm = FusionSVM(standardize=True).fit(emb_kd, emb_tr, labels)
    fuse = root / "fuse"
    fuse.mkdir()
    svm.save(fuse / "fusion")
    (fuse / "config.json").write_text(json.dumps({
        "stage": "fuse", "arch": "mini", "view": "lower_half_visible",
        students_key[0]: "../kd/model.keras",  # relative: found from the run directory
        students_key[1]: str(triplet_run / "model.keras")}))
    (fuse / "metrics.json").write_text("{}")
    return fuse, kd, triplet, svm


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student run directory (view lower_half_visible) and its model."""
    model = sharp_mini(0)
    run = write_run(tmp_path_factory.mktemp("student"), model, stage="student",
                    view="lower_half_visible")
    return run, model


@pytest.fixture(scope="module")
def fuse_run(tmp_path_factory):
    return write_fuse_run(tmp_path_factory.mktemp("runs"))
