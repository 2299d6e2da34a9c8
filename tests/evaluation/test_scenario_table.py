"""The report's scenario tables: runs that record a scenario's views (here "headset") get a
table of their own, marked as ours, with † from McNemar against that scenario's student
baseline; they take no cell of Table I. Crafted predictions, no network (like test_report)."""
import json

import numpy as np

from fer_distill.evaluation import report as rp

from .test_report import BASELINE, KD, LABELS, N, predictions, save, write_evaluation


def _run(root, name, stage, view, correct, dataset="demo", arch="mini"):
    run = root / name
    run.mkdir(parents=True)
    record = {"stage": stage, "arch": arch, "dataset": dataset, "view": view}
    (run / "config.json").write_text(json.dumps({**record, "data": "data"}))
    pred = predictions(correct)
    save(run / "predictions" / f"test_{view}.npz", pred)
    (run / "metrics.json").write_text(json.dumps({
        **record, "test": {"accuracy": float(np.mean(pred == LABELS)), "count": N}}))
    return run


def test_a_headset_scenario_gets_its_own_table_with_its_own_baseline(tmp_path):
    teacher = _run(tmp_path, "teacher", "teacher", "full", set(range(90)))
    write_evaluation(teacher, "headset", set(range(70)), dataset="demo", arch="mini")
    _run(tmp_path, "paper_student", "student", "lower_half_visible", set(range(10)))
    _run(tmp_path, "headset/student", "student", "headset", BASELINE)
    _run(tmp_path, "headset/eyes", "eyes", "under_headset", set(range(40)))
    _run(tmp_path, "headset/kd", "kd", "headset", KD)

    report = rp.build_report(rp.ReportConfig(runs=str(tmp_path)))
    demo = next(t for t in report["tables"] if t["id"] == "demo/mini")
    cells = {r["key"]: r["cells"]["demo"] for r in demo["rows"]}
    assert cells["mini/student/lower_half_visible"]["accuracy"] == 10.0  # the paper's row
    assert cells["mini/kd/lower_half_visible"]["status"] == rp.NOT_RUN  # not the headset kd

    table = next(t for t in report["tables"] if t.get("scenario") == "headset")
    assert table["id"] == "scenario/headset/demo/mini"
    cells = {r["key"]: r["cells"]["demo"] for r in table["rows"]}
    assert cells["headset/mini/teacher/full"]["accuracy"] == 90.0
    assert cells["headset/mini/teacher/headset"]["accuracy"] == 70.0
    assert cells["headset/mini/student/headset"]["accuracy"] == 60.0
    assert cells["headset/mini/eyes/under_headset"]["accuracy"] == 40.0
    kd = cells["headset/mini/kd/headset"]
    # McNemar against the HEADSET student (b = 1, c = 12), not the paper's lower-half one
    assert (kd["mcnemar"]["b"], kd["mcnemar"]["c"], kd["dagger"]) == (1, 12, True)
    assert kd["mcnemar"]["baseline_run"].endswith("headset/student")
    assert cells["headset/mini/triplet/headset"]["status"] == rp.NOT_RUN
    assert not report["unplaced"]

    markdown = rp.render_markdown(report)
    assert "Scenario 'headset' (headset silhouette): synthetic demo, mini (OURS, not in the " \
           "paper)" in markdown
    assert "| mini standard T-S [headset] | headset | 71.00 † |" in markdown
    assert "scenario/headset/demo/mini" in rp.render_csv(report)
