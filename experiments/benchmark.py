"""Measure the package against the machine it runs on; write BENCHMARKS.md and benchmarks.json.

Usage:

  python -m experiments.benchmark                      # the full run (12-20 min on 2 cores)
  python -m experiments.benchmark --quick --jobs=2 --output_dir=/tmp/bench   # a smoke test
  python -m experiments.benchmark --train_archs=vgg_f     # skip the VGG-face training steps
  python -m experiments.benchmark --parts=matmul,mining --output_dir=/tmp/bench  # some parts
  python -m experiments.benchmark --parts=matmul,inference:vgg_f,inference:vgg_face,matmul \
      --merge --shared_note="4 other jobs"   # serving only, kept beside an earlier full run
  python -m experiments.benchmark --combine=old/benchmarks.json,new/benchmarks.json \
      --output_dir=.                          # one report from separate runs' parts

Measures, in one run, each part in a fresh process (experiments/benchmark_lib.py says what and
how): the float32 matmul rate (the yardstick, at the start and the end), inference of VGG-f and
VGG-face through Keras, the SavedModel and the TFLite exports (latency, throughput, agreement
with float32 on the demo test set), training steps (plain, KD cached/live, triplet), triplet
mining at FER+ and AffectNet scale against the per-anchor loop, the input pipeline, and the
peak memory of each part. Reads nothing (the demo set and synthetic data are made in a
temporary directory). Writes `--output_dir`/BENCHMARKS.md and `--output_dir`/benchmarks.json
atomically; run it when the machine is otherwise idle (`uptime`), since timings are shared
with whatever else runs.
"""
from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process.
_ANY = {"allow_override": True}
flags.DEFINE_bool("quick", False, "Tiny sizes on the mini network (tests): every code path, "
                  "no meaningful figures.", **_ANY)
flags.DEFINE_string("output_dir", ".", "Where BENCHMARKS.md and benchmarks.json go.", **_ANY)
flags.DEFINE_list("parts", [], "Parts to run (default: all): baseline, matmul, "
                  "inference:<arch>, training:<arch>, mining, pipeline.", **_ANY)
flags.DEFINE_list("inference_archs", [], "Architectures for inference (default: vgg_f, "
                  "vgg_face; mini with --quick).", **_ANY)
flags.DEFINE_list("train_archs", [], "Architectures for training steps (default: vgg_f, vgg_face; "
                  "mini with --quick).", **_ANY)
flags.DEFINE_integer("jobs", 1, "Parts run at once. Keep 1 for measurements: concurrent "
                     "parts share the CPU and spoil each other's timings; 2 makes --quick "
                     "smoke tests faster.", **_ANY)
flags.DEFINE_multi_string("note", [], "A note to print under the tables (repeatable).",
                          **_ANY)
flags.DEFINE_bool("merge", False, "Keep the parts of the report already in --output_dir that "
                  "this run does not measure (each part's run, date and CPU are named).", **_ANY)
flags.DEFINE_list("skip_paths", [], "Inference paths to leave out for every architecture "
                  "(e.g. onnx_float32,onnx_int8: tf2onnx needs more than 19 GB to convert "
                  "VGG-face).", **_ANY)
flags.DEFINE_list("combine", [], "Measure nothing: write one report from these earlier "
                  "benchmarks.json files (later files win for a part; each part keeps the "
                  "run and CPU that measured it).", **_ANY)
flags.DEFINE_string("shared_note", None, "What else ran on the machine during the run "
                    "(printed beside the load average).", **_ANY)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from experiments import benchmark_lib as benchmark

    if FLAGS.combine:
        # why not sys.argv: the notes are printed under the tables already
        command = f"python -m experiments.benchmark --combine={','.join(FLAGS.combine)}"
        benchmark.combine_reports(FLAGS.combine, FLAGS.output_dir, command=command.strip(),
                                  notes=FLAGS.note, shared_note=FLAGS.shared_note)
        print(f"wrote {FLAGS.output_dir}/{benchmark.MARKDOWN_FILE} and "
              f"{FLAGS.output_dir}/{benchmark.JSON_FILE}")
        return
    overrides = {}
    if FLAGS.inference_archs:
        overrides["inference_archs"] = tuple(FLAGS.inference_archs)
    if FLAGS.train_archs:
        overrides["train_archs"] = tuple(FLAGS.train_archs)
    settings = benchmark.settings(FLAGS.quick, **overrides)
    if FLAGS.skip_paths:
        unknown = set(FLAGS.skip_paths) - set(benchmark.INFERENCE_PATHS)
        if unknown:
            raise app.UsageError(f"--skip_paths: unknown paths {sorted(unknown)}")
        settings = benchmark.dataclasses.replace(settings, inference_paths={
            arch: [p for p in paths if p not in FLAGS.skip_paths]
            for arch, paths in settings.inference_paths.items()})
    for arch in settings.inference_archs:
        if arch not in settings.inference_paths:
            raise app.UsageError(f"--inference_archs: no inference paths for {arch!r} "
                                 f"(known: {sorted(settings.inference_paths)})")
    for arch in settings.train_archs:
        if arch not in settings.train_batch or arch not in settings.train_schedule:
            raise app.UsageError(f"--train_archs: no batch size for {arch!r} "
                                 f"(known: {sorted(settings.train_batch)})")
    command = "python -m experiments.benchmark " + " ".join(sys.argv[1:])
    report = benchmark.run_benchmark(settings, FLAGS.output_dir, command=command.strip(),
                                     parts=FLAGS.parts or None, notes=FLAGS.note,
                                     jobs=FLAGS.jobs, merge=FLAGS.merge,
                                     shared_note=FLAGS.shared_note)
    for target in report["summary"]["targets"]:
        met = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        measured = target["measured"]
        print(f"{met:>12}  {target['target']}: "
              f"{'-' if measured is None else format(measured, '.3g')}")
    print(f"wrote {FLAGS.output_dir}/{benchmark.MARKDOWN_FILE} and "
          f"{FLAGS.output_dir}/{benchmark.JSON_FILE}")


if __name__ == "__main__":
    cli.run(main)
