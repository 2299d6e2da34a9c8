"""experiments/gradcam.py end to end through its flags, on the demo data set and on files."""
import json

import cv2
import keras
import matplotlib.image
import numpy as np
import pytest
from absl.testing import flagsaver

from experiments import gradcam
from fer_distill.models import mini

NO_FLAGS = dict(view=None, data=None, split="test", indices=["0", "1", "2", "3"], images=None,
                explain="predicted", layer=None)



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("run")
    mini(8, 32).save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"stage": "student",
                                                  "view": "lower_half_visible"}))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from fer_distill.data.demo import prepare_demo

    path = tmp_path_factory.mktemp("demo") / "prepared"
    prepare_demo(path, sizes={"train": 16, "validation": 8, "test": 12})
    return path


def _gradcam(capsys, **values):
    with flagsaver.flagsaver(**{**NO_FLAGS, **values}):
        gradcam.main(["gradcam"])
    return capsys.readouterr().out.strip()


def test_figure_from_a_prepared_split(run, demo, tmp_path, capsys):
    three = _gradcam(capsys, model=str(run), data=str(demo), indices=["0", "3", "5"],
                     explain="true", output=str(tmp_path / "three.png"))
    one = _gradcam(capsys, model=str(run), data=str(demo), indices=["2"],
                   output=str(tmp_path / "one.png"))
    assert three == str(tmp_path / "three.png")
    wide, narrow = matplotlib.image.imread(three), matplotlib.image.imread(one)
    assert wide.shape[0] == narrow.shape[0]  # four rows either way
    assert wide.shape[1] > 2 * narrow.shape[1] * 0.8  # a column per example


def test_figure_from_image_files_and_bad_requests(run, demo, tmp_path, capsys):
    for i, size in enumerate((48, 70)):
        picture = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), picture)
    out = _gradcam(capsys, model=str(run), images=[str(tmp_path / "0.png"),
                                                   str(tmp_path / "1.png")],
                   output=str(tmp_path / "files.png"))
    assert matplotlib.image.imread(out).ndim == 3
    with pytest.raises(ValueError, match="exactly one of --data"):
        _gradcam(capsys, model=str(run), data=str(demo), images=[str(tmp_path / "0.png")],
                 output=str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match=r"--indices must lie in \[0, \d+\)"):
        _gradcam(capsys, model=str(run), data=str(demo), indices=["99999"],
                 output=str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="--explain=true needs --data"):
        _gradcam(capsys, model=str(run), images=[str(tmp_path / "0.png")], explain="true",
                 output=str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
