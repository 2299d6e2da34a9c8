"""experiments.convert_matconvnet end to end: flags → example file → .keras + summary;
errors leave no output."""
import io

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

import fer_distill  # noqa: F401  (registers the layers for keras.saving.load_model)
from experiments import convert_matconvnet as binary

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS(["convert_matconvnet"])
    yield


def test_writes_an_example_converts_it_and_prints_the_summary(tmp_path, capsys):
    mat, out = tmp_path / "example.mat", tmp_path / "example.keras"
    with flagsaver.flagsaver(write_example=str(mat), mat=str(mat), output=str(out),
                             example_layout="net", example_classes=5):
        binary.main(["convert_matconvnet"])
    printed = capsys.readouterr().out
    for expected in ("architecture:  mini", "layout:        net (MATLAB v5)", "classes:       5",
                     "average image 1x1x3", "conv1 relu1 norm1 pool1", "dropped:       prob",
                     "LRN [N kappa alpha beta]: [[5.0, 2.0, 0.0001, 0.75]]"):
        assert expected in printed
    model = keras.saving.load_model(out)
    assert model.name == "mini" and model.output.shape == (None, 5)
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.keras", "example.mat"]


def test_v73_vgg_f_example_is_recognised(tmp_path):
    mat, out = tmp_path / "vggf.mat", tmp_path / "vggf.keras"
    stream = io.StringIO()
    summary = binary.run(binary.ConvertConfig(mat=str(mat), output=str(out),
                                              write_example=str(mat), example_arch="vgg_f",
                                              example_matlab_version="7.3"), out=stream)
    assert summary["architecture"] == "vgg_f" and summary["matlab_version"] == "7.3"
    assert summary["keras_parameters"] == 56_770_312 + 224 * 224 * 3
    assert "VGG-f (CNN-F" in stream.getvalue()


@pytest.mark.parametrize("content", [b"", b"MATLAB 5.0 MAT-file, truncated"])
def test_a_bad_file_leaves_no_output(tmp_path, content):
    mat, out = tmp_path / "bad.mat", tmp_path / "bad.keras"
    mat.write_bytes(content)
    with flagsaver.flagsaver(mat=str(mat), output=str(out)):
        with pytest.raises(ValueError, match="bad.mat"):
            binary.main(["convert_matconvnet"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mat"]


def test_usage_errors(tmp_path):
    from absl import app
    with flagsaver.flagsaver(mat=None, output=None, write_example=None):
        with pytest.raises(app.UsageError, match="--mat"):
            binary.main(["convert_matconvnet"])
    with flagsaver.flagsaver(mat=str(tmp_path / "x.mat"), output=None):
        with pytest.raises(app.UsageError, match="--output"):
            binary.main(["convert_matconvnet"])
    with flagsaver.flagsaver(mat=str(tmp_path / "x.mat"), output=str(tmp_path / "x.h5")):
        with pytest.raises((ValueError, FileNotFoundError)):
            binary.main(["convert_matconvnet"])
    assert list(tmp_path.iterdir()) == []
