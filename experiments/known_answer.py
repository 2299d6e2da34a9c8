"""Known-answer benchmark: does distillation move a lower-half student toward its teacher?

Usage:

  python -m experiments.known_answer                       # the full run: KNOWN_ANSWER.md
  python -m experiments.known_answer --quick --workdir=/tmp/ka --output=/tmp/ka.md

For each regime of the synthetic FER+-shaped demo set (fer_distill.data.demo: "privileged",
where the lower half shows a weak trace of the brows, and "control", where it shows nothing of
them) and each seed (data and training), it trains a teacher (full faces) and a student
baseline [1] (lower halves) with the package's own `fer_distill.train.run`, then every method
below from that baseline, and measures each model's test and validation accuracy and its
transfer diagnostics (fer_distill.evaluation.transfer: KL(teacher ‖ model), top-1 agreement).
Teacher and baseline fine-tune one shared "pretrained" network with a fresh fc8, as the
paper's start from one pretrained file: `mini` trained on full faces of the "classic" demo set
(other faces, other expression blends). The controls: `kd_lambda0` (λ = 0: the kd stage's
extra epochs without the teacher, which must equal the baseline) and `kd_shuffled` (each image
paired with another image's cached teacher output, which must not beat the baseline).
Writes --output (Markdown: mean ± sd over seeds, paired t-tests over seeds and McNemar's exact
test on the pooled test images, both against the baseline; the kd and triplet settings chosen
on validation, `chosen_on_validation`) and --output's .json twin; every run stays under
--workdir.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # why: see experiments/reproduce.py

from absl import app, flags  # noqa: E402

from experiments import cli  # noqa: E402
from fer_distill.preset import DEMO_SCHEDULES  # noqa: E402

FLAGS = flags.FLAGS
_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
flags.DEFINE_string("workdir", "known_answer", "Where the data sets and runs go.", **_ANY)
flags.DEFINE_string("output", "KNOWN_ANSWER.md", "The Markdown report (and its .json twin).",
                    **_ANY)
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 (data and training).", **_ANY)
flags.DEFINE_list("regimes", ["privileged", "control"], "Demo regimes.", **_ANY)
flags.DEFINE_list("methods", None, "Methods (default: all).", **_ANY)
flags.DEFINE_enum("scale", "full", ["full", "scarce"],
                  "full: 2,400 training faces; scarce: 800 (the same schedules: where generalised "
                  "distillation says a teacher helps most).", **_ANY)
flags.DEFINE_bool("quick", False, "Tiny sizes and epochs instead of --scale (the test suite's "
                  "smoke run).", **_ANY)
flags.DEFINE_bool("deterministic", True, "TensorFlow op determinism in every run.", **_ANY)

# name: (stage, TrainConfig fields, what it is). Every kd/triplet method starts from the
# seed's converged student baseline with the seed's teacher, as the paper's stages do.
METHODS = {
    "baseline": ("student", {}, "student baseline [1]: lower halves, no teacher"),
    "kd_lambda0": ("kd", {"kd_lambda": 0.0}, "control: the kd stage with λ = 0 (extra epochs, "
                   "no teacher); must equal the baseline"),
    "kd_shuffled": ("kd", {"shuffle_teacher": True, "temperature": 4.0,
                           "temperature_squared": True},
                    "control: kd (τ = 4, τ²) with each image given another image's teacher "
                    "output; must not beat the baseline"),
    "kd_paper": ("kd", {"temperature": 20.0}, "eq. 1 as printed: λ = 0.7, τ = 20, no τ²"),
    "kd_t20_sq": ("kd", {"temperature": 20.0, "temperature_squared": True}, "τ = 20 with τ²"),
    "kd_t4": ("kd", {"temperature": 4.0}, "τ = 4, no τ²"),
    "kd_t4_sq": ("kd", {"temperature": 4.0, "temperature_squared": True}, "τ = 4 with τ²"),
    "kd_t1": ("kd", {"temperature": 1.0}, "τ = 1 (τ² = 1: the same either way)"),
    "rkd": ("rkd", {}, "ours, not in the paper: CE + RKD (Park et al. 2019; λ = 1, w_d = 25, "
            "w_a = 50) on the embeddings"),
    "hint": ("hint", {}, "ours, not in the paper: CE + FitNets hint (λ = 0.01) on the "
             "positions the student sees"),
    "triplet_sum": ("triplet", {"triplet_reduction": "sum"},
                    "eq. 3 summed over the batch, as printed (λ = 0.5)"),
    "triplet_mean": ("triplet", {"triplet_reduction": "mean"},
                     "eq. 3 averaged over the batch (λ = 0.5)"),
    "triplet_unit": ("triplet", {"triplet_reduction": "mean", "triplet_normalize": True},
                     "ours: eq. 3 averaged, on unit-length embeddings (mining too; λ = 0.5)"),
}
CONTROLS = ("kd_lambda0", "kd_shuffled")
TABLE_HEADER = ("| method | what | val acc | test acc | Δ test acc (p) | test KL | Δ KL (p) "
                "| test agreement | McNemar b/c, p | Δ test acc vs λ = 0 (p); McNemar b/c, p |",
                "|---|---|---|---|---|---|---|---|---|---|")
# Validation accuracies closer than this are a tie (0.5 points: about 5 of the ~1,050
# validation faces of 3 seeds), broken by the validation KL (chosen_on_validation).
TIE = 0.005
PRETRAIN_SEED = 1000  # data and initialisation of the shared pretrained network


@dataclasses.dataclass(frozen=True)
class Scale:
    """Data sizes and schedules of one benchmark size (mini network, 32x32, batch 32)."""

    sizes: dict
    base: dict  # teacher and baseline
    kd: dict
    triplet: dict


FULL = Scale(  # the embedded demo's schedules (fer_distill.preset.DEMO_SCHEDULES)
    sizes={"train": 2400, "validation": 400, "test": 600},
    base=DEMO_SCHEDULES["base"], kd=DEMO_SCHEDULES["kd"], triplet=DEMO_SCHEDULES["triplet"],
)
# Scarce data: a third of FULL's training faces, everything else the same.
SCARCE = dataclasses.replace(FULL, sizes={"train": 800, "validation": 400, "test": 600})
SCALES = {"full": FULL, "scarce": SCARCE}
QUICK = Scale(
    sizes={"train": 96, "validation": 32, "test": 32},
    base={"epochs": 1, "learning_rate": 0.01, "steps_per_epoch": 2},
    kd={"epochs": 1, "learning_rate": 0.001, "steps_per_epoch": 2},
    triplet={"epochs": 1, "learning_rate": 0.001, "steps_per_epoch": 2},
)


def _train(stage, data, workdir, seed, scale, deterministic, **fields):
    from fer_distill.train import TrainConfig, run

    # rkd and hint (ours) are scheduled like kd, as in fer_distill.train.config
    schedule = {"kd": scale.kd, "rkd": scale.kd, "hint": scale.kd,
                "triplet": scale.triplet}.get(stage, scale.base)
    config = TrainConfig(stage=stage, arch="mini", data=str(data), workdir=str(workdir),
                         image_size=32, batch_size=32, seed=seed, verbose=0,
                         deterministic=deterministic, **{**schedule, **fields})
    return run(config)


def _pretrained(root: Path, scale, deterministic) -> Path:
    """The one network every teacher and baseline fine-tunes (with a fresh fc8), as the paper's
    all start from one pretrained file: `mini` trained on full faces of the "classic" demo set,
    a related task with other faces, other expression blends and made-up votes."""
    from fer_distill.data.demo import prepare_demo

    data = root / "data"
    if not (data / "summary.json").is_file():
        prepare_demo(data, sizes=scale.sizes, seed=PRETRAIN_SEED, regime="classic")
    _train("teacher", data, root / "run", PRETRAIN_SEED, scale, deterministic)
    return root / "run" / "model.keras"


def run_benchmark(workdir, *, seeds, regimes, methods, scale, deterministic, log=print):
    """Trains everything; returns {regime: {method: [per-seed record]}} (module docstring)."""
    from fer_distill.data.demo import prepare_demo
    from fer_distill.evaluation.predictions import load_predictions, predictions_path
    from fer_distill.evaluation.transfer import transfer_between

    workdir = Path(workdir)
    pretrained = _pretrained(workdir / "pretrained", scale, deterministic)
    results = {}
    for regime in regimes:
        results[regime] = {m: [] for m in methods}
        for seed in range(seeds):
            root = workdir / regime / f"seed{seed}"
            data = root / "data"
            if not (data / "summary.json").is_file():
                prepare_demo(data, sizes=scale.sizes, seed=seed, regime=regime)
            started = time.monotonic()
            teacher = root / "teacher"
            _train("teacher", data, teacher, seed, scale, deterministic, init=str(pretrained),
                   head="new")
            baseline = root / "baseline"
            _train("student", data, baseline, seed, scale, deterministic, init=str(pretrained),
                   head="new")
            for method in methods:
                stage, fields, _ = METHODS[method]
                run_dir = baseline if method == "baseline" else root / method
                if method != "baseline":
                    _train(stage, data, run_dir, seed, scale, deterministic,
                           init=str(baseline / "model.keras"),
                           teacher=str(teacher / "model.keras"), **fields)
                record = {"seed": seed, "run": str(run_dir)}
                for split in ("validation", "test"):
                    predictions = load_predictions(
                        predictions_path(run_dir, split, "lower_half_visible"))
                    record[split] = {
                        "accuracy": float((predictions["pred"] == predictions["label"]).mean()),
                        **transfer_between(teacher, run_dir, split, "lower_half_visible")}
                    record[split + "_predictions"] = predictions
                teacher_test = load_predictions(predictions_path(teacher, "test", "full"))
                record["teacher_test_accuracy"] = float(
                    (teacher_test["pred"] == teacher_test["label"]).mean())
                results[regime][method].append(record)
            log(f"{regime} seed {seed}: {len(methods)} methods in "
                f"{time.monotonic() - started:.0f} s")
    return results


def _against(records, reference, suffix) -> dict:
    """Paired differences of test accuracy and KL over seeds (mean, sd, t-test p) and McNemar's
    exact test on the pooled test images, of `records` against `reference` (one per seed)."""
    import numpy as np
    from scipy import stats

    from fer_distill.evaluation.mcnemar import mcnemar_test

    row = {}
    for key in ("accuracy", "kl"):
        ours = np.array([r["test"][key] for r in records])
        theirs = np.array([r["test"][key] for r in reference])
        diff = ours - theirs
        p = (float(stats.ttest_rel(ours, theirs).pvalue)
             if len(diff) > 1 and diff.std() > 0 else float("nan"))
        row[f"delta{suffix}_test_{key}"] = (float(diff.mean()),
                                            float(diff.std(ddof=1)) if len(diff) > 1 else 0.0, p)

    def pooled(group, key):
        return np.concatenate([r["test_predictions"][key] for r in group])

    result = mcnemar_test(pooled(reference, "label"), pooled(reference, "pred"),
                          pooled(records, "pred"), labels_b=pooled(records, "label"),
                          index_a=pooled(reference, "index"), index_b=pooled(records, "index"))
    row[f"mcnemar{suffix}"] = {"b": result.b, "c": result.c, "p": result.pvalue}
    return row


def _stats(results):
    """Per regime and method: mean ± sd and the tests against the baseline (and against the
    λ = 0 run, where there is one)."""
    import numpy as np

    table = {}
    for regime, by_method in results.items():
        base = by_method.get("baseline")
        table[regime] = {}
        for method, records in by_method.items():
            row = {}
            for split in ("validation", "test"):
                for key in ("accuracy", "kl", "agreement"):
                    values = np.array([r[split][key] for r in records])
                    row[f"{split}_{key}"] = (float(values.mean()),
                                             float(values.std(ddof=1)) if len(values) > 1
                                             else 0.0)
            row["teacher_test_accuracy"] = float(np.mean(
                [r["teacher_test_accuracy"] for r in records]))
            if base is not None and method != "baseline":
                row.update(_against(records, base, ""))
            lam0 = by_method.get("kd_lambda0")
            if lam0 is not None and method not in ("baseline", "kd_lambda0"):
                # the distillation effect proper: the same stage and epochs without a teacher
                row.update(_against(records, lam0, "_vs_lambda0"))
            table[regime][method] = row
    return table


def _pm(pair, scale=100.0, digits=2):
    mean, sd = pair[0] * scale, pair[1] * scale
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def chosen_on_validation(rows) -> dict:
    """The kd and the triplet method the evidence supports, chosen on VALIDATION only (controls
    excluded): the best mean validation accuracy; among the methods within `TIE` of it, the one
    with the lowest mean validation KL to the teacher (a distiller's job is to move the student
    toward its teacher, and a difference of a few validation images decides nothing)."""
    out = {}
    for family in ("kd", "triplet"):
        candidates = [m for m in rows if METHODS[m][0] == family and m not in CONTROLS]
        if candidates:
            best = max(rows[m]["validation_accuracy"][0] for m in candidates)
            tied = [m for m in candidates if rows[m]["validation_accuracy"][0] >= best - TIE]
            out[family] = min(tied, key=lambda m: rows[m]["validation_kl"][0])
    return out


def verdicts(rows) -> list[str]:
    """The controls against what they must show (module docstring), one line each."""
    out = []
    lam0, shuffled = rows.get("kd_lambda0"), rows.get("kd_shuffled")
    if lam0 is not None and "mcnemar" in lam0:
        delta, test = lam0["delta_test_accuracy"], lam0["mcnemar"]
        same = test["p"] >= 0.05
        out.append(f"- λ = 0 control ({'holds' if same else 'FAILED'}): "
                   f"{100 * delta[0]:+.2f} points against the baseline, McNemar p = "
                   f"{test['p']:.3g} on the pooled test images"
                   + ("" if same else " — the kd stage's extra epochs alone changed the "
                      "student, so gains of the kd methods must be read against this row, "
                      "not against the baseline"))
    if shuffled is not None and "mcnemar" in shuffled:
        delta, test = shuffled["delta_test_accuracy"], shuffled["mcnemar"]
        beats = delta[0] > 0 and test["p"] < 0.05
        out.append(f"- shuffled-teacher control ({'FAILED' if beats else 'holds'}): "
                   f"{100 * delta[0]:+.2f} points against the baseline (McNemar p = "
                   f"{test['p']:.3g})" + (" — a misaligned teacher helped: suspect the "
                                          "cache's alignment with the batches" if beats else
                                          "; the teacher's term acts, and only with the right "
                                          "images"))
    return out


def render(table, *, seeds, methods, scale_name, seconds, command, load) -> str:
    """The Markdown report."""
    import keras
    import tensorflow as tf

    lines = [
        "# Known-answer benchmark: does distillation transfer?", "",
        f"Command: `{command}`; {seeds} seeds; scale {scale_name}; {seconds / 60:.1f} min wall.",
        f"Machine: {_cpu()}; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}; load average {load[0]:.1f} at the start, {load[1]:.1f} "
        "at the end (above 2 on 2 cores: other jobs shared the machine, so times are long).",
        "",
        "Each seed draws its own data set (fer_distill.data.demo, FER+ vote vectors) and trains "
        "its own teacher and baseline; every other method starts from that seed's baseline. "
        "Accuracy in %, mean ± sd over seeds; KL(teacher ‖ model) in nats and top-1 agreement "
        "with the teacher (teacher on full faces, model on lower halves); Δ against the "
        "baseline with the paired t-test's p over seeds; McNemar: exact test on the test images "
        "of all seeds pooled (b = baseline right / method wrong, c = the reverse); Δ vs λ = 0: "
        "against the kd stage run for the same epochs without a teacher, the teacher's own "
        "share of any gain (paired t-test over seeds). A run directory that already holds a "
        "finished run with the same settings is reported, not trained again (fer_distill.train."
        "run), so a rerun into the same --workdir adds only the methods it has not run yet.",
    ]
    out = []
    for regime, rows in table.items():
        out.append(f"\n## Regime `{regime}`\n")
        teacher = next(iter(rows.values()))["teacher_test_accuracy"]
        out.append(f"Teacher (full faces) test accuracy: {100 * teacher:.2f}% (mean).\n")
        out.extend(verdicts(rows) + [""])
        best = chosen_on_validation(rows)
        if best:
            out.append(f"Chosen on validation (controls excluded; the best accuracy, ties within "
                       f"{100 * TIE:g} points broken by the lower KL): " + ", ".join(
                f"{family} `{m}`" for family, m in best.items()) + ".\n")
        out.extend(TABLE_HEADER)
        for method in methods:
            row = rows[method]
            delta = row.get("delta_test_accuracy")
            dkl = row.get("delta_test_kl")
            mc = row.get("mcnemar")
            vs0 = row.get("delta_vs_lambda0_test_accuracy")
            mc0 = row.get("mcnemar_vs_lambda0")
            out.append("| " + " | ".join([
                f"`{method}`", METHODS[method][2], _pm(row["validation_accuracy"]),
                _pm(row["test_accuracy"]),
                "-" if delta is None else f"{100 * delta[0]:+.2f} ± {100 * delta[1]:.2f} "
                                          f"(p = {delta[2]:.3g})",
                _pm(row["test_kl"], 1.0, 3),
                "-" if dkl is None else f"{dkl[0]:+.3f} (p = {dkl[2]:.3g})",
                _pm(row["test_agreement"], 100.0, 1),
                "-" if mc is None else f"{mc['b']}/{mc['c']}, p = {mc['p']:.3g}",
                "-" if vs0 is None else f"{100 * vs0[0]:+.2f} ± {100 * vs0[1]:.2f} "
                                        f"(p = {vs0[2]:.3g}); {mc0['b']}/{mc0['c']}, "
                                        f"p = {mc0['p']:.3g}"]) + " |")
    return "\n".join(lines + out) + "\n"


def _cpu() -> str:
    """The machine line: the benchmark's own description of the CPU (`benchmark_lib.machine`)."""
    from experiments.benchmark_lib import machine

    m = machine()
    return f"{m['cpu']} ({m['cores']} cores; {', '.join(m['cpu_features']) or 'no AVX2'})"


def main(argv):
    del argv
    from fer_distill.atomic import write_json, write_text

    methods = FLAGS.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise app.UsageError(f"unknown methods {unknown}; known: {list(METHODS)}")
    if "baseline" not in methods:
        methods = ["baseline", *methods]
    scale_name = "quick" if FLAGS.quick else FLAGS.scale
    scale = QUICK if FLAGS.quick else SCALES[FLAGS.scale]
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    results = run_benchmark(FLAGS.workdir, seeds=FLAGS.seeds, regimes=FLAGS.regimes,
                            methods=methods, scale=scale, deterministic=FLAGS.deterministic)
    table = _stats(results)
    seconds = time.monotonic() - started
    command = " ".join(["python -m experiments.known_answer", *sys.argv[1:]])
    text = render(table, seeds=FLAGS.seeds, methods=methods,
                  scale_name=scale_name, seconds=seconds,
                  command=command, load=(load_start, os.getloadavg()[0]))
    output = Path(FLAGS.output)
    write_json(output.with_suffix(".json"), {
        "command": command, "seconds": seconds, "table": table,
        "load": [load_start, os.getloadavg()[0]],
        "chosen_on_validation": {r: chosen_on_validation(rows) for r, rows in table.items()}})
    write_text(output, text)
    print(text)


if __name__ == "__main__":
    cli.run(main)
