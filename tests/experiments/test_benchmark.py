"""experiments/benchmark.py --quick end to end: both files, every row, ratios from the numbers.

One quick run (every part in its own process, two at a time: ~45 s on 2 cores) is shared by
the tests of this module. No test looks at a speed: they check that the report holds every row
and that every ratio in it is the quotient of numbers measured in the same run.
"""
import json
import statistics

import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import benchmark as binary
from experiments import benchmark_lib as benchmark



@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    out = tmp_path_factory.mktemp("bench")
    with flagsaver.flagsaver(quick=True, output_dir=str(out), note=["a test run"], jobs=2):
        binary.main(["benchmark"])
    report = json.loads((out / benchmark.JSON_FILE).read_text(encoding="utf-8"))
    markdown = (out / benchmark.MARKDOWN_FILE).read_text(encoding="utf-8")
    return out, report, markdown


def test_writes_both_files_and_nothing_half_written(quick_run):
    out, report, markdown = quick_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [benchmark.JSON_FILE, benchmark.MARKDOWN_FILE])
    assert report["format"] == benchmark.FORMAT
    assert report["settings"]["quick"] is True
    assert markdown.startswith("# Benchmarks")
    assert "QUICK settings" in markdown
    assert "2 parts ran at once" in markdown and report["jobs"] == 2
    assert "- a test run" in markdown
    machine = report["machine"]
    assert f"| CPU | {machine['cpu']} |" in markdown
    assert f"| cores | {machine['cores']} |" in markdown
    assert f"| devices | {', '.join(machine['devices'])} |" in markdown
    assert machine["tensorflow"] in markdown
    assert f"{report['load_average_start']:.2f} / {report['load_average_end']:.2f}" in markdown
    assert report["command"].startswith("python -m experiments.benchmark")
    assert report["command"] in markdown


def test_every_part_and_row_is_present(quick_run):
    _, report, markdown = quick_run
    parts = report["parts"]
    assert list(parts) == ["baseline", "matmul", "inference:mini", "training:mini", "mining",
                           "pipeline", "matmul@end"]
    for name, part in parts.items():
        assert part["peak_rss_mb"] > 0
        assert f"| {name} | {part['peak_rss_mb']:.0f} |" in markdown
    paths = parts["inference:mini"]["paths"]
    assert list(paths) == list(benchmark.INFERENCE_PATHS)
    for path in benchmark.INFERENCE_PATHS:
        assert f"| {path} | " in markdown
    for mode in benchmark.TRAINING_MODES:
        assert f"| {mode} | " in markdown
    for layout in ("ferplus", "affectnet"):
        assert f"| {layout} (" in markdown
    for anchors in report["settings"]["mining_growth"]:
        assert f"| {anchors:,} | " in markdown
    assert "per-anchor NumPy loop (scaled from" in markdown
    for key, (label, op, bound) in benchmark.TARGETS.items():
        assert f"| {label} {op} {bound:g} |" in markdown
    assert [t["key"] for t in report["summary"]["targets"]] == list(benchmark.TARGETS)
    closing = markdown.split("## Closing note", 1)[1]
    for t in report["summary"]["targets"]:  # one verdict per target in the closing note
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        assert f"- {t['target']}: {verdict}" in closing
        if t["met"] is False:
            assert benchmark.MISSED_BECAUSE[t["key"]] in closing


def test_ratios_are_quotients_of_measured_numbers(quick_run):
    _, report, markdown = quick_run
    parts, summary = report["parts"], report["summary"]
    samples = (parts["matmul"]["float32_gflops_samples"]
               + parts["matmul@end"]["float32_gflops_samples"])
    rate = statistics.median(samples)
    assert summary["matmul_gflops"] == pytest.approx(rate)
    assert f"**{rate:.1f}**" in markdown

    inference = parts["inference:mini"]
    flops = inference["flops_per_image"]
    local = statistics.median(inference["matmul_gflops_samples"])  # measured beside the paths
    assert inference["matmul_gflops"] == pytest.approx(local)
    plain = inference["paths"]["keras_call"]["latency_ms"]
    for path, p in inference["paths"].items():
        row = summary["inference"]["mini"][path]
        assert p["latency_ms"] == pytest.approx(statistics.median(p["latency_ms_samples"]))
        assert row["latency_vs_plain_keras"] == pytest.approx(p["latency_ms"] / plain)
        assert row["throughput_fraction_of_matmul"] == pytest.approx(
            flops * p["throughput"] / (local * 1e9))
        assert 0.0 <= p["top1_agreement"] <= 1.0
        assert f"| {path} | {p['latency_ms']:.1f} | {row['latency_vs_plain_keras']:.2f} |" \
            in markdown

    training = parts["training:mini"]["modes"]
    for mode, m in training.items():
        assert m["step_seconds"] == pytest.approx(statistics.median(m["step_seconds_samples"]))
        ratio = m["step_seconds"] / training["plain"]["step_seconds"]
        assert summary["training"]["mini"][mode]["vs_plain"] == pytest.approx(ratio)
        assert f"| {mode} | {m['step_seconds']:.3f} |" in markdown

    mining = parts["mining"]
    assert summary["mining"]["fraction_of_matmul"] == pytest.approx(
        mining["useful_flops"] / mining["by_class_seconds"]
        / (statistics.median(mining["matmul_gflops_samples"]) * 1e9))
    assert summary["mining"]["speedup_over_loop"] == pytest.approx(
        mining["loop_seconds_scaled"] / mining["by_class_seconds"])
    assert mining["loop_seconds_scaled"] == pytest.approx(
        mining["loop_subsample_seconds"] * mining["anchors"] / mining["loop_subsample"])
    assert mining["loop_mismatches"] == 0  # the loop and mine_triplets agree

    consumption = training["plain"]["images_per_second"]
    for name, layout in parts["pipeline"]["layouts"].items():
        assert summary["pipeline"]["ratios"][name] == pytest.approx(
            layout["pairs_per_second"] / consumption)

    by_key = {t["key"]: t for t in summary["targets"]}
    assert by_key["kd_cached_step"]["measured"] == pytest.approx(
        training["kd_cached"]["step_seconds"] / training["plain"]["step_seconds"])
    assert by_key["triplet_step"]["measured"] == pytest.approx(
        training["triplet"]["step_seconds"] / training["plain"]["step_seconds"])
    serving = [summary["inference"]["mini"][p]["latency_vs_plain_keras"]
               for p in benchmark.SERVING_PATHS]
    assert by_key["vgg_f_latency"]["measured"] == pytest.approx(min(serving))
    assert by_key["vgg_face_throughput"]["measured"] is None  # not run with --quick
    assert by_key["vgg_face_throughput"]["met"] is None
    for target in summary["targets"]:
        if target["measured"] is not None:
            _, op, bound = benchmark.TARGETS[target["key"]]
            assert target["met"] == (target["measured"] <= bound if op == "<="
                                     else target["measured"] >= bound)


def test_unknown_architecture_is_refused():
    with flagsaver.flagsaver(quick=True, train_archs=["resnet"]):
        with pytest.raises(app.UsageError, match="resnet"):
            binary.main(["benchmark"])
