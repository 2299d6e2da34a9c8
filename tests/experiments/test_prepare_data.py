"""experiments/prepare_data.py end to end on tiny data, through its flags."""
import numpy as np
import pytest
from absl import app
from absl.testing import flagsaver

from experiments import prepare_data
from fer_distill.data.prepared import read_prepared

TINY = dict(demo_train=60, demo_validation=20, demo_test=20, progress=False)



def test_demo_then_ferplus_on_the_demo_raw_files(tmp_path, capsys):
    with flagsaver.flagsaver(dataset="demo", raw=str(tmp_path / "raw"),
                             output=str(tmp_path / "demo"), **TINY):
        prepare_data.main(["prepare_data"])
    printed = capsys.readouterr().out
    demo = read_prepared(tmp_path / "demo")
    assert demo.dataset == "demo"
    assert f"train {demo.count('train')} " in " ".join(printed.split())  # the counts table
    assert demo.summary["source"]["config"]["demo_train"] == 60
    assert (tmp_path / "raw" / "fer2013.csv").is_file()

    # the demo's raw files are a FER+ release in the csv layout
    with flagsaver.flagsaver(dataset="ferplus", raw=str(tmp_path / "raw"),
                             output=str(tmp_path / "ferplus"), progress=False):
        prepare_data.main(["prepare_data"])
    ferplus = read_prepared(tmp_path / "ferplus")
    assert ferplus.dataset == "ferplus" and ferplus.summary["source"]["layout"] == "csv"
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(ferplus.images(split), demo.images(split))
        np.testing.assert_array_equal(ferplus.labels(split), demo.labels(split))


def test_affectnet_manifest_only(tmp_path, capsys):
    lists = tmp_path / "raw" / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for name, codes in [("training.csv", [0, 1, 1, 1, 2, 9]), ("validation.csv", [0, 1, 10])]:
        (lists / name).write_text("".join(f"d/{name[0]}{i}.jpg,1,1,5,5,,{c},0,0\n"
                                          for i, c in enumerate(codes)))
    with flagsaver.flagsaver(dataset="affectnet", raw=str(tmp_path / "raw"),
                             output=str(tmp_path / "out"), manifest_only=True, per_class_cap=2,
                             progress=False):
        prepare_data.main(["prepare_data"])
    assert "manifest only" in capsys.readouterr().out
    prepared = read_prepared(tmp_path / "out")
    assert [prepared.count(s) for s in ("train", "validation", "test")] == [4, 2, 2]
    assert prepared.summary["source"]["config"]["per_class_cap"] == 2


def test_unknown_layout_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with flagsaver.flagsaver(dataset="ferplus", raw=str(tmp_path / "empty"),
                             output=str(tmp_path / "out"), progress=False):
        with pytest.raises(FileNotFoundError, match=r"Known layouts: \(png\).*\(csv\)"):
            prepare_data.main(["prepare_data"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings, message", [
    (dict(dataset="ferplus"), "--raw is required"),
    (dict(dataset="demo", manifest_only=True), "--manifest_only applies to"),
    (dict(dataset="demo", raw="OUT/raw"), "lies inside --output"),
])
def test_bad_flag_combinations(tmp_path, settings, message):
    settings = {k: v.replace("OUT", str(tmp_path / "out")) if isinstance(v, str) else v
                for k, v in settings.items()}
    with flagsaver.flagsaver(output=str(tmp_path / "out"), **{"raw": None, **settings}):
        with pytest.raises(app.UsageError, match=message):
            prepare_data.main(["prepare_data"])
