"""fer_distill/rundir.py: the reuse rules as issue 10's probe tried them, and the lock.

Runs are faked (a config.json and a metrics.json) wherever the test is about the decision,
not the training.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from fer_distill.atomic import write_json
from fer_distill.lock import Locked, locked
from fer_distill.train import TrainConfig, run
from fer_distill import rundir


def _config(workdir, data, **values) -> TrainConfig:
    return TrainConfig(stage="student", arch="mini", data=str(data), workdir=str(workdir),
                       image_size=32, epochs=2, batch_size=32, verbose=0, **values)


def _fake_run(config: TrainConfig, *, finished: bool) -> None:
    workdir = rundir.Path(config.workdir)
    workdir.mkdir(parents=True)
    write_json(workdir / rundir.CONFIG, config.resolved().to_dict())
    (workdir / rundir.CHECKPOINTS).mkdir()
    if finished:
        write_json(workdir / rundir.METRICS, {"test": {"accuracy": 0.5}})


def test_resume_compares_paths_as_files_not_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    _fake_run(_config("runs/a", "data"), finished=False)
    spellings = [dict(workdir=str(tmp_path / "runs" / "a"), data=str(tmp_path / "data")),
                 dict(workdir="runs/a/", data="data/"), dict(workdir="./runs/a", data="./data")]
    for spelling in spellings:
        decision, previous = rundir.check_reuse(_config(resume=True, **spelling))
        assert decision == "resume"
        assert previous.workdir == spelling["workdir"] and previous.data == spelling["data"]
    shutil.move(tmp_path / "runs" / "a", tmp_path / "moved")  # a moved run directory
    decision, previous = rundir.check_reuse(_config("moved", "data", resume=True))
    assert decision == "resume" and previous.workdir == "moved"
    with pytest.raises(ValueError, match=r"data: 'data' before, 'elsewhere' now"):
        rundir.check_reuse(_config("moved", "elsewhere", resume=True))


def test_a_finished_run_with_other_settings_says_which(tmp_path, capsys):
    config = _config(tmp_path / "run", tmp_path / "data")
    _fake_run(config, finished=True)
    assert run(config) == {"test": {"accuracy": 0.5}}  # the same settings: reported
    assert "not re-run" in capsys.readouterr().out
    for other, listed in ((dict(epochs=10), "epochs: 2 before, 10 now"),
                          (dict(stage="eyes"), "stage: 'student' before, 'eyes' now"),
                          (dict(data=str(tmp_path / "other")), "data: ")):
        with pytest.raises(ValueError, match=f"finished run with other settings.*{listed}.*"
                                             "--overwrite"):
            run(dataclasses.replace(config, **other))


def test_a_corrupt_metrics_json_is_named_and_overwrite_gets_past_it(tmp_path):
    config = _config(tmp_path / "run", tmp_path / "data")
    _fake_run(config, finished=True)
    (tmp_path / "run" / rundir.METRICS).write_text('{"test": {"accur')
    with pytest.raises(ValueError, match=f"{tmp_path / 'run' / 'metrics.json'}: not valid JSON"
                                         ".*--overwrite"):
        run(config)
    overwrite = dataclasses.replace(config, overwrite=True)
    assert rundir.check_reuse(overwrite) == ("overwrite", None)
    # past the reuse decision: the next check is the (here missing) data set's
    with pytest.raises(FileNotFoundError, match="prepared data set"):
        run(overwrite)


def test_a_second_writer_is_refused_before_it_touches_the_run(tmp_path):
    config = _config(tmp_path / "run", tmp_path / "data")
    with locked(config.workdir, what="run directory"):
        with pytest.raises(Locked, match=rf"run directory .*run is being written by pid "
                                         rf"{os.getpid()} on host "):
            run(config)
        with pytest.raises(Locked):
            run(dataclasses.replace(config, resume=True))
    assert not (tmp_path / "run").exists()
    with pytest.raises(FileNotFoundError):  # the lock is free again: on to the data check
        run(config)


def test_only_the_chief_of_a_multi_worker_run_takes_the_lock(tmp_path, monkeypatch):
    config = _config(tmp_path / "run", tmp_path / "data", strategy="multi_worker")
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    for index, takes_lock in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        with rundir.writing(config):
            assert rundir.lock.lock_file(config.workdir).exists() == takes_lock
