"""The known-answer benchmark binary, end to end at its --quick size (a smoke run of the wiring:
the quick numbers mean nothing), in a fresh process because it turns op determinism on."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_writes_the_table_with_controls_and_transfer(tmp_path):
    output = tmp_path / "ka.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.known_answer", "--quick", "--seeds=2",
         "--regimes=privileged", "--methods=kd_lambda0,kd_shuffled",
         f"--workdir={tmp_path / 'runs'}", f"--output={output}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    assert "## Regime `privileged`" in text and "Keras" in text and "TensorFlow" in text
    for method in ("baseline", "kd_lambda0", "kd_shuffled"):
        assert f"| `{method}` |" in text
    record = json.loads(output.with_suffix(".json").read_text())
    rows = record["table"]["privileged"]
    assert set(rows) == {"baseline", "kd_lambda0", "kd_shuffled"}
    for method, row in rows.items():
        assert 0.0 <= row["test_accuracy"][0] <= 1.0 and row["test_kl"][0] >= 0.0
        assert 0.0 <= row["test_agreement"][0] <= 1.0
        if method != "baseline":  # paired against the same seeds' baseline
            assert "mcnemar" in row and len(row["delta_test_accuracy"]) == 3
    # the shuffled control really trained against permuted teacher rows
    config = json.loads((tmp_path / "runs" / "privileged" / "seed0" / "kd_shuffled"
                         / "config.json").read_text())
    assert config["shuffle_teacher"] is True and config["deterministic"] is True


def test_choice_is_best_validation_accuracy_with_ties_broken_by_validation_kl():
    from experiments.known_answer import TIE, chosen_on_validation

    def row(accuracy, kl):
        return {"validation_accuracy": [accuracy, 0.01], "validation_kl": [kl, 0.01],
                "test_accuracy": [0.0, 0.0], "test_kl": [9.0, 0.0]}  # test never read

    rows = {"baseline": row(0.80, 0.40),
            "kd_lambda0": row(0.90, 0.10),  # a control: never chosen
            "kd_paper": row(0.827, 0.36),
            "kd_t1": row(0.827 - TIE / 2, 0.33),  # tied on accuracy, lower KL: chosen
            "kd_t4_sq": row(0.827 - 2 * TIE, 0.20),  # lowest KL but clearly less accurate
            "triplet_sum": row(0.74, 0.98),
            "triplet_mean": row(0.81, 0.47)}
    assert chosen_on_validation(rows) == {"kd": "kd_t1", "triplet": "triplet_mean"}
    rows["triplet_sum"] = row(0.81 + TIE / 2, 0.50)  # now the tie's winner on accuracy alone
    assert chosen_on_validation(rows)["triplet"] == "triplet_mean"


def test_the_presets_use_the_settings_the_committed_benchmarks_chose():
    """DEMO_CHOICE / SCARCE_CHOICE are what KNOWN_ANSWER*.json chose on validation for the
    regime each demo draws, field by field (a field the method leaves unset is the default)."""
    import dataclasses

    from experiments.known_answer import METHODS
    from fer_distill.preset import DEMO, DEMO_CHOICE, DEMO_SCARCE, SCARCE_CHOICE
    from fer_distill.train import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, preset, choice in (("KNOWN_ANSWER.json", DEMO, DEMO_CHOICE),
                                 ("KNOWN_ANSWER_SCARCE.json", DEMO_SCARCE, SCARCE_CHOICE)):
        chosen = json.loads((REPO / name).read_text())["chosen_on_validation"]
        for family, method in chosen[preset.demo_regime].items():
            fields = METHODS[method][1]
            for key, value in choice[family].items():
                assert value == fields.get(key, defaults[key]), (name, family, method, key)
            assert set(fields) <= set(choice[family]), (name, family, method)
            assert preset.settings(family).items() >= choice[family].items()
