"""experiments/benchmark_lib.py: the reference loop, the FLOP count, the timing order, and the
summary's ratios and target verdicts on hand-made numbers (no speed is asserted anywhere).

Named _library because tests/experiments/test_benchmark.py tests the binary, and two test
modules of this suite may not share a basename (tests/experiments has no __init__.py)."""
import dataclasses

import numpy as np
import pytest

from experiments import benchmark_lib as benchmark
from fer_distill.distill.mining import mine_triplets


def test_per_anchor_loop_worked_example():
    """mining.py's worked example, D = 1: anchors 0 (class 0) and 10 (class 1); positives
    1, 5, -5 (class 0), 12 (class 1); negatives 2 (c1), 9 (c0), -1 (c1). Anchor 0: farthest
    class-0 positive at distance 5, rows 1 and 2 tie -> 1; closest other-class negative
    -1 (row 2). Anchor 1: its only positive is row 3; the only class-0 negative is row 1."""
    pos, neg = benchmark.per_anchor_loop(
        np.array([[0.0], [10.0]]), np.array([0, 1]),
        np.array([[1.0], [5.0], [-5.0], [12.0]]), np.array([0, 0, 0, 1]),
        np.array([[2.0], [9.0], [-1.0]]), np.array([1, 0, 1]))
    assert pos.tolist() == [1, 3]
    assert neg.tolist() == [2, 1]


def test_per_anchor_loop_matches_mine_triplets_and_marks_missing():
    rng = np.random.default_rng(3)
    anchors = np.abs(rng.normal(size=(60, 16))).astype(np.float32)
    labels = rng.integers(0, 4, 60)
    pool = np.abs(rng.normal(size=(12, 16))).astype(np.float32)
    pool_labels = rng.integers(0, 3, 12)  # class 3 has no positive in the pool
    loop = benchmark.per_anchor_loop(anchors, labels, pool, pool_labels, pool, pool_labels)
    fast = mine_triplets(anchors, labels, pool, pool_labels, pool, pool_labels)
    assert np.array_equal(loop[0], fast[0].numpy())
    assert np.array_equal(loop[1], fast[1].numpy())
    assert np.all(loop[0][labels == 3] == -1)


def test_model_flops_of_mini_by_hand():
    """mini at 32x32: conv1 3x3x3x16 on 32x32, pool1 -> 16x16, conv2 3x3x16x32 on 16x16,
    pool2 -> 8x8, fc6 8*8*32 -> 64, fc7 64 -> 64, fc8 64 -> 8; two FLOPs per multiply-add."""
    from fer_distill.models import mini

    expected = 2 * (32 * 32 * 3 * 3 * 3 * 16 + 16 * 16 * 3 * 3 * 16 * 32
                    + 8 * 8 * 32 * 64 + 64 * 64 + 64 * 8)
    assert benchmark.model_flops(mini(8, 32)) == expected


def test_interleaved_calls_every_candidate_once_per_round():
    order = []
    times = benchmark.interleaved({"a": lambda: order.append("a"),
                                   "b": lambda: order.append("b")},
                                  rounds=3, calls=2, warmup=1)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert [len(times["a"]), len(times["b"])] == [6, 6]
    assert all(t >= 0 for t in times["a"] + times["b"])


def test_settings_survive_the_trip_to_a_part_process():
    for quick in (False, True):
        s = benchmark.settings(quick)
        assert benchmark.settings_from_dict(dataclasses.asdict(s)) == s
    parts = benchmark.default_parts(benchmark.settings())
    assert parts[:2] == ["baseline", "matmul"] and parts[-1] == "matmul"
    assert "inference:vgg_face" in parts and "training:vgg_f" in parts


def test_unknown_part_is_named():
    with pytest.raises(ValueError, match="'inference'"):
        benchmark.measure("inference", benchmark.settings(True), None)


def _paths(**latency_ms):
    return {name: {"latency_ms": ms, "throughput": 100.0 / ms, "top1_agreement": 1.0,
                   "max_probability_difference": 0.0, "changes_numerics": False,
                   "latency_ms_samples": [ms], "throughput_samples": [100.0 / ms]}
            for name, ms in latency_ms.items()}


def _hand_parts():
    """Round numbers: matmul median 250 GFLOP/s; VGG-f 1.5 GFLOP per image; VGG-face 30."""
    return {
        "matmul": {"n": 8, "float32_gflops_samples": [100.0, 200.0, 300.0],
                   "float32_gflops": 200.0, "bfloat16_gflops": 800.0, "peak_rss_mb": 1.0,
                   "seconds": 1.0},
        "matmul@end": {"n": 8, "float32_gflops_samples": [400.0], "float32_gflops": 400.0,
                       "bfloat16_gflops": 800.0, "peak_rss_mb": 1.0, "seconds": 1.0},
        "inference:vgg_f": {"arch": "vgg_f", "flops_per_image": 1.5e9, "paths": {**_paths(
            keras_call=20.0, tf_function=15.0, savedmodel=16.0, tflite_dynamic_range=8.0,
            onnx_float32=10.0, onnx_int8=6.0), "tflite_dynamic_range": {
                **_paths(x=8.0)["x"], "top1_agreement": 0.985, "changes_numerics": True}},
            "peak_rss_mb": 1.0, "seconds": 1.0},
        "inference:vgg_face": {"arch": "vgg_face", "flops_per_image": 30e9, "paths": _paths(
            keras_call=200.0, savedmodel=250.0), "peak_rss_mb": 1.0, "seconds": 1.0},
        "training:vgg_f": {"arch": "vgg_f", "modes": {
            "plain": {"step_seconds": 2.0, "images_per_second": 16.0},
            "kd_cached": {"step_seconds": 2.1, "images_per_second": 32 / 2.1},
            "kd_live": {"step_seconds": 3.0, "images_per_second": 32 / 3.0},
            "triplet": {"step_seconds": 5.0, "images_per_second": 32 / 5.0}},
            "peak_rss_mb": 1.0, "seconds": 1.0},
        "mining": {"useful_flops": 500e9, "by_class_seconds": 4.0, "masked_xla_seconds": 8.0,
                   "matmul_gflops": 200.0,  # its own yardstick, measured beside it
                   "loop_seconds_scaled": 300.0, "growth": [{"anchors": 1000,
                                                              "seconds": 0.5}],
                   "peak_rss_mb": 1.0, "seconds": 1.0},
        "pipeline": {"layouts": {"ferplus": {"pairs_per_second": 64.0}},
                     "peak_rss_mb": 1.0, "seconds": 1.0},
    }


def test_summary_ratios_and_verdicts_by_hand():
    """Matmul: median of 100, 200, 300, 400 = 250 GFLOP/s. KD 2.1 / 2.0 = 1.05 <= 1.10 met;
    triplet 5.0 / 2.0 = 2.5 > 2.3 missed. Mining 500 GFLOP in 4 s = 125 GFLOP/s against its
    own yardstick of 200 GFLOP/s = 0.625 (met; the run-wide 250 would give 0.5); 300 / 4 = 75x
    < 100 missed. Pipeline 64 / 16 = 4 < 5 missed.
    VGG-face: best batch-32 fraction 30e9 * (100 / 200) / 250e9 = 0.06 (keras_call) missed.
    VGG-f: fastest serving path onnx_int8 6 / 20 = 0.3 <= 0.33 met (tf_function's 0.75 is
    not a serving path); fastest TensorFlow-runtime path tflite_dynamic_range 8 against ONNX
    Runtime's 6 = 1.33 > 1 missed. Lowest agreement 0.985 (tflite_dynamic_range) < 0.99
    missed."""
    summary = benchmark.summarise(_hand_parts())
    assert summary["matmul_gflops"] == pytest.approx(250.0)
    verdicts = {t["key"]: (t["measured"], t["met"]) for t in summary["targets"]}
    assert verdicts["kd_cached_step"] == (pytest.approx(1.05), True)
    assert verdicts["triplet_step"] == (pytest.approx(2.5), False)
    assert verdicts["mining_fraction"] == (pytest.approx(0.625), True)
    assert verdicts["mining_speedup"] == (pytest.approx(75.0), False)
    assert verdicts["pipeline_ratio"] == (pytest.approx(4.0), False)
    assert verdicts["vgg_face_throughput"] == (pytest.approx(0.06), False)
    assert verdicts["vgg_f_latency"] == (pytest.approx(0.3), True)
    assert verdicts["vgg_f_vs_onnx"] == (pytest.approx(8.0 / 6.0), False)
    assert verdicts["min_agreement"] == (pytest.approx(0.985), False)
    where = {t["key"]: t["where"] for t in summary["targets"]}
    assert where["vgg_f_latency"].endswith("onnx_int8")
    assert where["vgg_f_vs_onnx"] == "inference:vgg_f tflite_dynamic_range / onnx_int8"
    assert where["min_agreement"] == "inference:vgg_f tflite_dynamic_range"
    assert summary["inference"]["vgg_f"]["tf_function"]["latency_vs_plain_keras"] == \
        pytest.approx(0.75)


def test_missing_parts_are_not_measured_rather_than_guessed():
    parts = _hand_parts()
    del parts["mining"], parts["inference:vgg_face"]
    verdicts = {t["key"]: (t["measured"], t["met"]) for t in
                benchmark.summarise(parts)["targets"]}
    assert verdicts["mining_fraction"] == (None, None)
    assert verdicts["vgg_face_throughput"] == (None, None)


def test_a_merged_report_names_the_run_and_cpu_of_every_kept_part(tmp_path):
    import json

    earlier_parts = _hand_parts()
    (tmp_path / benchmark.JSON_FILE).write_text(json.dumps({
        "format": benchmark.FORMAT, "date": "2026-01-01 00:00 UTC", "command": "full run",
        "machine": {"cpu": "Xeon with AMX"}, "git_commit": "abc", "parts": earlier_parts}))
    new = {"inference:vgg_f": earlier_parts["inference:vgg_f"]}
    this_run = {"date": "2026-02-02 00:00 UTC", "command": "serving run", "cpu": "AMD EPYC",
                "git_commit": "def"}
    parts, runs = benchmark._merge_earlier(tmp_path, new, this_run)
    assert set(parts) == set(earlier_parts) and parts["inference:vgg_f"] is new["inference:vgg_f"]
    assert runs["inference:vgg_f"] == this_run and runs["mining"]["cpu"] == "Xeon with AMX"
    report = {"part_runs": runs, "summary": benchmark.summarise(parts),
              "date": this_run["date"], "command": this_run["command"]}
    markdown = "\n".join(benchmark.runs_and_targets(report))
    assert "| mining | Xeon with AMX | 2026-01-01 00:00 UTC | `full run` |" in markdown
    assert "| inference:vgg_f | Xeon" not in markdown
    assert "training:vgg_f (run of 2026-01-01 00:00 UTC, Xeon with AMX)" in markdown
    assert "inference:vgg_f onnx_int8 |" in markdown  # measured by this run: not marked


def test_combined_reports_keep_each_parts_run_and_one_machines_matmul():
    old = _hand_parts()
    new = {"matmul": old["matmul"], "inference:vgg_f": old["inference:vgg_f"]}
    reports = [{"format": benchmark.FORMAT, "date": f"{name} date", "command": f"{name} run",
                "machine": {"cpu": cpu}, "parts": parts}
               for name, parts, cpu in (("old", old, "Xeon"), ("new", new, "EPYC"))]
    parts, runs = benchmark.combine_parts(reports)
    assert "matmul@end" not in parts  # the old machine's yardstick is dropped as a group
    assert set(parts) == set(old) - {"matmul@end"}
    assert runs["matmul"]["cpu"] == runs["inference:vgg_f"]["cpu"] == "EPYC"
    assert runs["mining"] == {"date": "old date", "command": "old run", "cpu": "Xeon",
                              "git_commit": None}
    with pytest.raises(ValueError, match="format"):
        benchmark.combine_parts([{**reports[0], "format": "other"}])
