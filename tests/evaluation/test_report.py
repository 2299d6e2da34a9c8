"""report: each number lands in its row and column, † comes from our own McNemar tests (and
only for a distilled student that is significantly BETTER), missing runs read "not run",
unfinished ones "incomplete", and the synthetic demo says so at the top.

The finished runs here are written in the run-directory contract's format (docs/DESIGN.md,
"Training": config.json, metrics.json, predictions/test_<view>.npz, environment.json) and
evaluation results in `fer_distill.evaluation.evaluate`'s format, with predictions crafted so
that every McNemar count is known: no network runs. (tests/test_reproduce.py builds a report
from real tiny runs.)"""
import csv
import io
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from fer_distill.evaluation import evaluate as ev
from fer_distill.evaluation import figures
from fer_distill.evaluation import paper_table as pt
from fer_distill.evaluation import report as rp
from fer_distill.evaluation.predictions import save_predictions

N = 100
LABELS = np.arange(N, dtype=np.int32) % 8
VIEW = {"teacher": "full", "student": "lower_half_visible", "eyes": "upper_half_visible",
        "kd": "lower_half_visible", "triplet": "lower_half_visible",
        "fuse": "lower_half_visible", "rkd": "lower_half_visible", "hint": "lower_half_visible"}


def wrong(label):
    return (label + 1) % 8


def predictions(correct):
    """Predictions right exactly on the images in `correct` (a set of image indices)."""
    return np.array([LABELS[i] if i in correct else wrong(LABELS[i]) for i in range(N)],
                    dtype=np.int32)


BASELINE = set(range(60))  # the student baseline is right on images 0..59
# kd: loses image 0, gains 60..71 -> b = 1, c = 12 (significantly better)
KD = (BASELINE - {0}) | set(range(60, 72))
# triplet: loses 0..4, gains 60..65 -> b = 5, c = 6 (no difference)
TRIPLET = (BASELINE - set(range(5))) | set(range(60, 66))
# fuse: loses 0..11, gains 60 -> b = 12, c = 1 (significantly WORSE: no †)
FUSE = (BASELINE - set(range(12))) | {60}


def save(path, pred, labels=LABELS, index=None):
    index = np.arange(len(labels)) if index is None else index
    save_predictions(path, {"index": index, "label": labels, "pred": pred,
                            "probs": np.eye(8, dtype=np.float32)[pred]})


def write_run(root, name, *, stage, dataset="ferplus", arch="vgg_face", correct=None,
              finished=True, argv=None):
    run = root / name
    run.mkdir(parents=True)
    view = VIEW[stage]
    (run / "config.json").write_text(json.dumps({
        "stage": stage, "arch": arch, "dataset": dataset, "view": view, "data": "data"}))
    (run / "environment.json").write_text(json.dumps({"argv": argv or ["train.py"]}))
    if finished:
        pred = predictions(correct)
        save(run / "predictions" / f"test_{view}.npz", pred)
        (run / "metrics.json").write_text(json.dumps({
            "stage": stage, "arch": arch, "dataset": dataset, "view": view,
            "test": {"accuracy": float(np.mean(pred == LABELS)), "count": N}}))
    return run


def write_evaluation(run, view, correct, *, stage="teacher", dataset="ferplus",
                     arch="vgg_face", argv=("evaluate.py",)):
    pred = predictions(correct)
    save(run / "predictions" / f"test_{view}.npz", pred)
    path = ev.results_path(run, "test", view)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "format": ev.FORMAT, "dataset": dataset, "split": "test", "view": view,
        "accuracy": float(np.mean(pred == LABELS)), "count": N,
        "model": {"path": str(run), "run_dir": str(run), "stage": stage, "arch": arch},
        "files": {"predictions": f"predictions/test_{view}.npz"},
        "provenance": {"argv": list(argv)}}))
    return path


@pytest.fixture
def tree(tmp_path):
    runs = tmp_path / "runs"
    teacher = write_run(runs, "ferplus_vgg_face_teacher", stage="teacher",
                        correct=set(range(85)),
                        argv=["train.py", "--flagfile=configs/ferplus_vgg_face_teacher.flags"])
    write_evaluation(teacher, "lower_half_visible", set(range(70)),
                     argv=["evaluate.py", "--flagfile", "configs/teacher_on_lower.flags"])
    write_evaluation(teacher, "upper_half_visible", set(range(40)))
    write_run(runs, "ferplus_vgg_face_student", stage="student", correct=BASELINE)
    write_run(runs, "ferplus_vgg_face_eyes", stage="eyes", finished=False)
    write_run(runs, "ferplus_vgg_face_kd", stage="kd", correct=KD)
    write_run(runs, "ferplus_vgg_face_triplet", stage="triplet", correct=TRIPLET)
    write_run(runs, "ferplus_vgg_face_fuse", stage="fuse", correct=FUSE)
    return runs


def cells(report, table="paper"):
    table = next(t for t in report["tables"] if t["id"] == table)
    return {(row["key"], ds): cell for row in table["rows"] for ds, cell in row["cells"].items()}


def test_numbers_land_in_their_rows_with_our_own_daggers(tree, tmp_path):
    report, markdown = rp.make_report(rp.ReportConfig(runs=str(tree), output=str(tmp_path / "out")))
    table = report["tables"][0]
    assert [t["id"] for t in report["tables"]] == ["paper"] and report["notice"] is None
    assert [r["key"] for r in table["rows"]] == [r.key for r in pt.load_paper_table().rows]
    c = cells(report)

    teacher = c[("vgg_face/teacher/full", "ferplus")]
    assert (teacher["status"], teacher["accuracy"], teacher["paper_accuracy"]) == ("ok", 85.0,
                                                                                   84.79)
    assert teacher["difference"] == pytest.approx(0.21)
    assert teacher["flagfile"] == "configs/ferplus_vgg_face_teacher.flags"
    assert teacher["run_dir"] == str(tree / "ferplus_vgg_face_teacher")
    lower = c[("vgg_face/teacher/lower_half_visible", "ferplus")]
    assert (lower["accuracy"], lower["paper_accuracy"]) == (70.0, 68.89)
    assert lower["flagfile"] == "configs/teacher_on_lower.flags"  # the evaluation's own
    assert lower["run_flagfile"] == "configs/ferplus_vgg_face_teacher.flags"
    assert lower["run_dir"] == str(tree / "ferplus_vgg_face_teacher")
    assert c[("vgg_face/teacher/upper_half_visible", "ferplus")]["accuracy"] == 40.0
    assert c[("vgg_face/student/lower_half_visible", "ferplus")]["accuracy"] == 60.0

    kd = c[("vgg_face/kd/lower_half_visible", "ferplus")]
    assert kd["accuracy"] == 71.0 and kd["dagger"] is True
    assert (kd["mcnemar"]["b"], kd["mcnemar"]["c"], kd["mcnemar"]["n"]) == (1, 12, N)
    assert kd["mcnemar"]["pvalue"] == pytest.approx(2 * stats.binom.cdf(1, 13, 0.5), rel=1e-12)
    assert kd["mcnemar"]["baseline_run"] == str(tree / "ferplus_vgg_face_student")
    triplet = c[("vgg_face/triplet/lower_half_visible", "ferplus")]
    assert (triplet["mcnemar"]["b"], triplet["mcnemar"]["c"], triplet["dagger"]) == (5, 6, False)
    fuse = c[("vgg_face/fuse/lower_half_visible", "ferplus")]
    assert (fuse["mcnemar"]["b"], fuse["mcnemar"]["c"]) == (12, 1)
    assert fuse["mcnemar"]["significant"] is True and fuse["dagger"] is False  # worse, not †
    assert fuse["paper_dagger"] is True  # the paper's † stays the paper's

    assert c[("vgg_face/eyes/upper_half_visible", "ferplus")]["status"] == "incomplete"
    assert c[("vgg_face/eyes/upper_half_visible", "ferplus")]["paper_accuracy"] == 70.19
    for key in ("vgg_f/teacher/full", "vgg_f/kd/lower_half_visible"):
        assert c[(key, "ferplus")]["status"] == "not run"
    assert all(c[(r.key, "affectnet")]["status"] in ("not run", "literature")
               for r in pt.load_paper_table().rows)
    assert c[("literature/vgg13", "ferplus")]["status"] == "literature"
    assert c[("literature/vgg13", "ferplus")]["paper_accuracy"] == 84.99

    # the Markdown says the same, row by row
    assert ("| VGG-face (standard T-S) | ◐ | 49.75 | not run |  | 82.37 | 71.00 † | -11.37 |"
            in markdown)
    assert ("| VGG-face (triplet loss + standard T-S) | ◐ | 50.09 † | not run |  | 82.75 † | "
            "49.00 | -33.75 |" in markdown)
    assert "| Teacher VGG-face | ◐ | 37.70 | not run |  | 68.89 | 70.00 | +1.11 |" in markdown
    assert "| VGG-face [2] | ◑ | 43.18 | not run |  | 70.19 | incomplete |  |" in markdown
    assert "exact binomial" in markdown
    assert markdown.index("Teacher VGG-f |") < markdown.index("Teacher VGG-face |")

    out = tmp_path / "out"
    assert (out / "table_i.md").read_text() == markdown
    assert json.loads((out / "table_i.json").read_text())["tables"][0]["rows"][0]["key"] == \
        "literature/bag_of_visual_words"
    rows = list(csv.DictReader(io.StringIO((out / "table_i.csv").read_text())))
    assert len(rows) == 2 * len(pt.load_paper_table().rows)
    kd_row = next(r for r in rows if r["row_key"] == "vgg_face/kd/lower_half_visible"
                  and r["dataset"] == "ferplus")
    assert (kd_row["accuracy"], kd_row["dagger"], kd_row["mcnemar_b"], kd_row["status"]) == (
        "71.0", "true", "1", "ok")
    assert [p.name for p in out.iterdir()] and not list(out.glob(".*"))


def test_chi_square_variant_is_named_and_used(tree):
    report = rp.build_report(rp.ReportConfig(runs=str(tree), exact=False))
    kd = cells(report)[("vgg_face/kd/lower_half_visible", "ferplus")]
    statistic = (abs(1 - 12) - 1) ** 2 / 13
    assert kd["mcnemar"]["statistic"] == pytest.approx(statistic)
    assert kd["mcnemar"]["pvalue"] == pytest.approx(stats.chi2.sf(statistic, 1))
    assert "chi-square" in report["mcnemar"]["method"]
    assert "chi-square" in rp.render_markdown(report)


def test_columns_are_explained_and_each_runs_curves_linked(tree, tmp_path):
    figures.write_curves([{"epoch": 1, "loss": 1.0, "val_loss": 1.2}],
                         tree / "ferplus_vgg_face_kd" / figures.CURVES_FILE)
    _, markdown = rp.make_report(rp.ReportConfig(runs=str(tree), output=str(tmp_path / "out")))
    assert "Δ = ours − paper, in points" in markdown
    assert "b = images the student baseline [1] gets right" in markdown
    assert "| c (distilled right only) | p | † |" in markdown  # exact: min(b, c) not repeated
    link = "../runs/ferplus_vgg_face_kd/training_curves.png"
    assert f"[{link}]({link})" in markdown
    chi2 = rp.render_markdown(rp.build_report(rp.ReportConfig(runs=str(tree), exact=False)))
    assert "| c (distilled right only) | χ² | p | † |" in chi2


def test_demo_runs_get_their_own_table_and_a_plain_warning(tree):
    write_run(tree, "demo_mini_teacher", stage="teacher", dataset="demo", arch="mini",
              correct=set(range(90)))
    report, markdown = rp.make_report(rp.ReportConfig(runs=str(tree)))
    assert report["synthetic"] is True
    first_lines = "\n".join(markdown.splitlines()[:4])
    assert "SYNTHETIC DEMO DATA" in first_lines and "NOT the paper's numbers" in first_lines
    demo = cells(report, "demo/mini")
    teacher = demo[("mini/teacher/full", "demo")]
    assert (teacher["accuracy"], teacher["paper_accuracy"]) == (90.0, 85.05)  # FER+ VGG-f
    assert demo[("mini/teacher/lower_half_visible", "demo")]["status"] == "not evaluated"
    assert demo[("mini/student/lower_half_visible", "demo")]["status"] == "not run"
    table = next(t for t in report["tables"] if t["id"] == "demo/mini")
    assert [r["label"] for r in table["rows"]][:4] == [
        "Teacher mini", "Teacher mini", "Teacher mini", "mini [1]"]
    assert "| Teacher mini | ○ | 85.05 | 90.00 | +4.95 |" in markdown
    # the demo's runs never leak into the paper's cells
    assert cells(report)[("vgg_f/teacher/full", "ferplus")]["status"] == "not run"


def test_only_demo_runs_show_only_the_demo_table(tmp_path):
    write_run(tmp_path, "t", stage="teacher", dataset="demo", arch="mini", correct={1})
    report = rp.build_report(rp.ReportConfig(runs=str(tmp_path)))
    assert [t["id"] for t in report["tables"]] == ["demo/mini"]
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = rp.build_report(rp.ReportConfig(runs=str(empty)))
    assert [t["id"] for t in nothing["tables"]] == ["paper"]
    assert all(c["status"] in ("not run", "literature") for c in cells(nothing).values())


def test_stale_unpaired_and_duplicate_results_are_not_silently_used(tree):
    # an evaluation older than its run's metrics.json (the run was re-run since): ignored
    teacher = tree / "ferplus_vgg_face_teacher"
    old = ev.results_path(teacher, "test", "upper_half_visible")
    stamp = (teacher / "metrics.json").stat().st_mtime
    os.utime(old, (stamp - 100, stamp - 100))
    # kd predictions of other images (shuffled order): the McNemar pairing check refuses
    npz = tree / "ferplus_vgg_face_kd" / "predictions" / "test_lower_half_visible.npz"
    order = np.roll(np.arange(N), 1)
    save(npz, predictions(KD)[order], LABELS[order], index=order)
    # a second, newer student baseline run: the newest wins, the other is named
    newer = write_run(tree, "again/ferplus_vgg_face_student", stage="student",
                      correct=set(range(50)))
    later = (tree / "ferplus_vgg_face_student" / "metrics.json").stat().st_mtime + 10
    os.utime(newer / "metrics.json", (later, later))

    report = rp.build_report(rp.ReportConfig(runs=str(tree)))
    c = cells(report)
    upper = c[("vgg_face/teacher/upper_half_visible", "ferplus")]
    assert upper["status"] == "not evaluated" and upper["accuracy"] is None
    kd = c[("vgg_face/kd/lower_half_visible", "ferplus")]
    assert kd["dagger"] is None and kd["mcnemar"] is None
    assert "not evaluated on the same images" in kd["note"]
    student = c[("vgg_face/student/lower_half_visible", "ferplus")]
    assert (student["accuracy"], student["run_dir"]) == (50.0, str(newer))
    warnings = "\n".join(report["warnings"])
    assert "older than" in warnings and "several runs" in warnings
    assert str(tree / "ferplus_vgg_face_student") in warnings
    markdown = rp.render_markdown(report)
    assert "## Warnings" in markdown and "## Notes" in markdown


def test_a_moved_tree_still_pairs_evaluations_with_their_runs(tree, tmp_path):
    moved = tmp_path / "moved"
    tree.rename(moved)  # the evaluation records name the old paths
    report = rp.build_report(rp.ReportConfig(runs=str(moved)))
    lower = cells(report)[("vgg_face/teacher/lower_half_visible", "ferplus")]
    assert (lower["status"], lower["accuracy"]) == ("ok", 70.0)
    assert lower["run_dir"] == str(moved / "ferplus_vgg_face_teacher")
    assert lower["run_flagfile"] == "configs/ferplus_vgg_face_teacher.flags"
    assert report["warnings"] == []


def test_provenance_file_names_flagfiles_of_library_runs(tree):
    (tree / rp.PROVENANCE_FILE).write_text(json.dumps({
        "format": rp.PROVENANCE_FORMAT,
        "entries": [{"path": "ferplus_vgg_face_kd", "flagfile": "flags/kd.flags"}]}))
    (tree / "flags").mkdir()
    (tree / "flags" / "kd.flags").write_text("--stage=kd\n")
    kd = cells(rp.build_report(rp.ReportConfig(runs=str(tree))))[
        ("vgg_face/kd/lower_half_visible", "ferplus")]
    assert kd["flagfile"] == str(tree / "flags" / "kd.flags")


def test_flagfiles_in_command_lines():
    assert rp.flagfiles_in(["x", "--flagfile=a.flags", "--flagfile", "b.flags", "--v=1"]) == [
        "a.flags", "b.flags"]
    assert rp.flagfiles_in([]) == []


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        rp.build_report(rp.ReportConfig(runs=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="alpha"):
        rp.build_report(rp.ReportConfig(runs=str(tmp_path), alpha=1.5))
    assert math.isclose(rp.ReportConfig(runs="x").alpha, 0.05)


def test_our_distillers_get_rows_marked_ours_with_mcnemar_and_transfer(tree):
    # without runs, no row of ours is shown (the paper's table stays the paper's)
    plain = rp.build_report(rp.ReportConfig(runs=str(tree)))
    assert not any("/rkd/" in k or "/hint/" in k for k, _ in cells(plain))
    write_run(tree, "ferplus_vgg_face_rkd", stage="rkd", correct=KD)
    write_run(tree, "ferplus_vgg_face_hint", stage="hint", correct=FUSE)
    report, markdown = rp.make_report(rp.ReportConfig(runs=str(tree)))
    c = cells(report)
    rkd, hint = c[("vgg_face/rkd/lower_half_visible", "ferplus")], \
        c[("vgg_face/hint/lower_half_visible", "ferplus")]
    assert (rkd["accuracy"], rkd["paper_accuracy"], rkd["dagger"]) == (71.0, None, True)
    assert (rkd["mcnemar"]["b"], rkd["mcnemar"]["c"]) == (1, 12)  # against the baseline
    assert (hint["mcnemar"]["b"], hint["mcnemar"]["c"], hint["dagger"]) == (12, 1, False)
    assert rkd["transfer"] is not None and hint["transfer"] is not None
    keys = [r["key"] for r in report["tables"][0]["rows"]]
    at = keys.index("vgg_face/fuse/lower_half_visible")
    assert keys[at + 1:at + 3] == ["vgg_face/rkd/lower_half_visible",
                                   "vgg_face/hint/lower_half_visible"]
    assert "ours, not in the paper" in markdown
    line = next(l for l in markdown.splitlines() if l.startswith(
        "| VGG-face (relational KD, Park et al. 2019; ours, not in the paper) | ◐ |"))
    assert "| 71.00 † |" in line and "| not run |" in line  # no paper number, no affectnet
    # the other data set's cell of our row says "not run", with no paper number
    assert c[("vgg_face/rkd/lower_half_visible", "affectnet")]["status"] == "not run"
    # the Transfer table says, per distilled row, whether its KL is below the baseline's
    base = c[("vgg_face/student/lower_half_visible", "ferplus")]["transfer"]["kl"]
    transfer = markdown[markdown.index("## Transfer"):markdown.index("## McNemar")]
    for cell, name in ((rkd, "relational KD"), (hint, "FitNets")):
        change = cell["transfer"]["kl"] - base
        line = next(l for l in transfer.splitlines() if name in l and "| FER+ |" in l)
        assert line.endswith(f"| {change:+.3f}: {'closer' if change < 0 else 'NOT closer'} |")
    baseline_line = next(l for l in transfer.splitlines() if "| FER+ | VGG-face [1] |" in l)
    assert baseline_line.endswith("| - |")
