"""experiments/cli.py: the binaries' expected mistakes end in one line on stderr, not a traceback.

The five mistakes are the ones issue 10 found dumping tracebacks; each goes through the binary's
own `main`, wrapped as `cli.run` wraps it.
"""
import os

import pytest
from absl import app
from absl.testing import flagsaver

from experiments import (cli, convert_matconvnet, export_savedmodel, predict, prepare_data,
                         report, train)
from fer_distill.errors import UserError


def _fails_in_one_line(capsys, main, argv, **flag_values):
    """Runs `main` as the binary would; returns the single stderr line after exit 1."""
    with flagsaver.flagsaver(**flag_values):
        with pytest.raises(SystemExit) as exit_:
            cli.guarded(main, program=argv[0])(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{argv[0]}: error: ")
    return lines[0]


def test_garbage_and_truncated_mat_to_convert_matconvnet(tmp_path, capsys):
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(os.urandom(3000))
    line = _fails_in_one_line(capsys, convert_matconvnet.main, ["convert_matconvnet"],
                              mat=str(garbage), output=str(tmp_path / "x.keras"),
                              write_example=None)
    assert str(garbage) in line
    truncated = tmp_path / "truncated.mat"
    with flagsaver.flagsaver(write_example=str(tmp_path / "full.mat"), mat=None, output=None):
        convert_matconvnet.main(["convert_matconvnet"])
    truncated.write_bytes((tmp_path / "full.mat").read_bytes()[:2000])
    capsys.readouterr()
    line = _fails_in_one_line(capsys, convert_matconvnet.main, ["convert_matconvnet"],
                              mat=str(truncated), output=str(tmp_path / "y.keras"),
                              write_example=None)
    assert str(truncated) in line


def test_missing_data_to_train(tmp_path, capsys):
    line = _fails_in_one_line(capsys, train.main, ["train"], stage="student", arch="mini",
                              data=str(tmp_path / "nowhere"), workdir=str(tmp_path / "run"))
    assert str(tmp_path / "nowhere") in line
    assert not (tmp_path / "run").exists()


def test_missing_run_to_export_savedmodel(tmp_path, capsys):
    line = _fails_in_one_line(capsys, export_savedmodel.main, ["export_savedmodel"],
                              model=str(tmp_path / "norun"), output=str(tmp_path / "out"))
    assert str(tmp_path / "norun") in line


def test_empty_raw_dir_to_prepare_data(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    line = _fails_in_one_line(capsys, prepare_data.main, ["prepare_data"], dataset="ferplus",
                              raw=str(tmp_path / "raw"), output=str(tmp_path / "out"),
                              progress=False)
    assert str(tmp_path / "raw") in line


def test_missing_model_to_predict(tmp_path, capsys):
    image = tmp_path / "face.png"
    image.write_bytes(b"")
    line = _fails_in_one_line(capsys, predict.main, ["predict", str(image)],
                              model=str(tmp_path / "nomodel"))
    assert str(tmp_path / "nomodel") in line


def test_usage_errors_and_our_own_are_one_line_too(capsys):
    def main(argv):
        raise UserError("run directory /r is locked by pid 7")

    assert "locked by pid 7" in _fails_in_one_line(capsys, main, ["train"])
    line = _fails_in_one_line(capsys, train.main, ["train"], stage=None, arch=None, data=None,
                              workdir=None)
    assert "--stage" in line and "--help" in line


def test_debug_and_verbosity_show_the_traceback(capsys):
    def main(argv):
        raise ValueError("bad row 3")

    for values in ({"debug": True}, {"verbosity": 1}):
        with flagsaver.flagsaver(**values):
            with pytest.raises(ValueError, match="bad row 3"):
                cli.guarded(main)(["train"])


def test_a_bug_keeps_its_traceback():
    def main(argv):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        cli.guarded(main)(["train"])


def test_help_exits_0(monkeypatch, capsys):
    """absl's --help flag exits 1 while parsing; `cli.run` makes that 0. (app.run itself can
    parse only once per process, so its parsing step stands in for it here.)"""
    def app_run(main, argv):
        main(app.parse_flags_with_usage(argv))

    monkeypatch.setattr(cli.app, "run", app_run)
    with flagsaver.flagsaver():
        with pytest.raises(SystemExit) as exit_:
            cli.run(report.main, ["report", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr()
    assert "--helpfull" in printed.out + printed.err, printed
    with flagsaver.flagsaver():  # a parse error still fails
        with pytest.raises(SystemExit) as exit_:
            cli.run(report.main, ["report", "--no_such_flag"])
    assert exit_.value.code == 1
