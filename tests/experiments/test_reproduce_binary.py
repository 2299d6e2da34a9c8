"""experiments/reproduce.py through its flags. (Not test_reproduce.py: tests/test_reproduce.py,
the library's test, already takes that module name under pytest's default import mode.)

With no data arguments it runs the embedded demo (shortened here by --override to a few steps
per stage) end to end and prints the table; its flags become the ReproduceConfig they say, and
bad ones are usage errors before anything runs."""
from __future__ import annotations

import json

import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import reproduce as binary
from fer_distill.reproduce import DEMO, PAPER

FLAGS = flags.FLAGS
# Every flag at "not given" (other binaries in this process may define the same names).
UNSET = dict(dataset=None, arch=None, raw=None, data=None, pretrained=None, workdir=None,
             from_matconvnet_teacher=None, from_matconvnet_student=None,
             from_matconvnet_kd_student=None, preset=None, override=[], stages=None,
             eval_batch_size=None, fer2013_csv=None)
# all.deterministic=false: op determinism is process-wide and would reach every later test
SHORT = ["all.epochs=1", "all.steps_per_epoch=2", "triplet.learning_rate=1e-4",
         "all.deterministic=false"]



def test_no_data_arguments_run_the_demo_and_print_the_table(tmp_path, capsys):
    workdir = tmp_path / "demo"
    with flagsaver.flagsaver(**{**UNSET, "workdir": str(workdir), "override": SHORT,
                                "verbose": 0}):
        binary.main(["reproduce"])
    printed = capsys.readouterr().out
    assert printed.startswith("== fer-distill reproduction of Table I: demo, mini, preset "
                              "'demo'")
    assert "SYNTHETIC SMOKE-SCALE RUN" in printed.splitlines()[1]
    table = printed[printed.index("# Table I, reproduced"):]
    assert "SYNTHETIC DEMO DATA" in table.splitlines()[2]
    assert "| Teacher mini | ◐ | 70.00 |" in table  # the teacher tested on ◐ is in the table
    record = json.loads((workdir / "reproduce.json").read_text())
    assert record["config"]["preset"]["name"] == "demo"
    assert record["config"]["overrides"] == {"*": {"epochs": 1, "steps_per_epoch": 2,
                                                   "deterministic": False},
                                             "triplet": {"learning_rate": 1e-4}}
    assert all(s["status"] in ("done", "written") for s in record["stages"].values())
    summary = json.loads((workdir / "data/prepared/demo/summary.json").read_text())
    assert summary["source"]["preset"] == "demo"  # drawn at the preset's sizes
    assert summary["source"]["sizes"] == dict(DEMO.demo_sizes)
    kd = json.loads((workdir / "runs/demo/mini/kd/config.json").read_text())
    assert (kd["epochs"], kd["steps_per_epoch"], kd["learning_rate"]) == (1, 2, 0.001)
    triplet = json.loads((workdir / "runs/demo/mini/triplet/config.json").read_text())
    assert (triplet["learning_rate"], triplet["triplet_lambda"]) == (1e-4, 0.5)
    pretrain = json.loads((workdir / "pretrained/run/config.json").read_text())
    assert (pretrain["epochs"], pretrain["steps_per_epoch"], pretrain["seed"]) == (1, 2, 1000)
    assert DEMO.settings("kd")["deterministic"] is True  # the demo's own setting
    assert kd["deterministic"] is False and summary["source"]["regime"] == "privileged"


def test_flags_become_the_config(tmp_path):
    mats = {name: tmp_path / f"{name}.mat" for name in ("t", "s")}
    for path in mats.values():
        path.write_bytes(b"")
    (tmp_path / "raw").mkdir()
    with flagsaver.flagsaver(**{**UNSET, "dataset": "ferplus", "arch": "vgg_face",
                                "raw": str(tmp_path / "raw"),
                                "from_matconvnet_teacher": str(mats["t"]),
                                "from_matconvnet_student": str(mats["s"]),
                                "override": ["kd.temperature_squared=true",
                                             "*.steps_per_epoch=none", "all.seed=3"],
                                "mcnemar": "chi2", "stages": ["prepare", "teacher"]}):
        config = binary.config_from_flags()
    assert (config.dataset, config.arch, config.preset) == ("ferplus", "vgg_face", PAPER)
    assert config.workdir == "reproduction/ferplus_vgg_face"
    assert config.from_matconvnet and config.exact is False
    assert config.stages == ("prepare", "teacher")
    assert config.overrides == {"kd": {"temperature_squared": True},
                                "*": {"steps_per_epoch": None, "seed": 3}}
    assert config.prepare_options["layout"] == "auto"


@pytest.mark.parametrize("values, message", [
    (dict(dataset="ferplus", arch="vgg_face"), "needs the raw release"),
    (dict(raw="x"), "--dataset"),
    (dict(dataset="demo", arch="vgg_f"), "give --pretrained"),
    (dict(override=["kd.epochs"]), "STAGE.FIELD=VALUE"),
    (dict(override=["kd.epoch=3"]), "not a TrainConfig setting"),
    (dict(override=["kd.epochs=three"]), "expected an integer"),
    (dict(override=["kd.jit_compile=maybe"]), "true or false"),
    (dict(override=["kd.teacher_mode=sometimes"]), "one of cached, live"),
    (dict(override=["kd.init=x.keras"]), "set by the reproduction itself"),
])
def test_bad_flags_are_usage_errors_before_anything_runs(tmp_path, values, message):
    with flagsaver.flagsaver(**{**UNSET, "workdir": str(tmp_path / "w"), **values}):
        with pytest.raises(app.UsageError, match=message):
            binary.main(["reproduce"])
    assert not (tmp_path / "w").exists()
