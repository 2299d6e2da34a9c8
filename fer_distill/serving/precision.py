"""bfloat16 copies of the networks, for CPUs with bfloat16 matrix units (AMX-BF16, AVX512-BF16).

    servable = bfloat16_servable(load_servable("runs/ferplus_vgg_f_student"))
    export_savedmodel(servable, "exports/fer_bf16/1")

Weights are stored in bfloat16 (the logits layer and the outputs stay float32), so numbers
change a little. `cpu_features`, `candidates` and `runner` pick a precision this CPU has.
Why not a mixed policy: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from fer_distill.models import simplenn
from fer_distill.models.layers import MeanSubtraction
from fer_distill.serving.export import ServingModule, _probe_images
from fer_distill.serving.tflite import TFLiteModel, convert

POLICY = "bfloat16"


def bfloat16_network(model: keras.Model) -> keras.Model:
    """A copy of a SimpleNN network (vgg_f, vgg_face, mini, a converted chain) with bfloat16
    weights and arithmetic; same layers, names, input and output (fc8 float32 logits)."""
    normalization = next((layer for layer in model.layers
                          if isinstance(layer, MeanSubtraction)), None)
    if normalization is None:
        raise ValueError(f"model {model.name!r} has no MeanSubtraction layer: not a network "
                         "built by fer_distill.models")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICY)
    try:
        copy = simplenn.build_chain(
            simplenn.chain_of(model), input_shape=model.input_shape[1:], name=model.name,
            average_image_shape=normalization.image_shape, zero_init=True)
    finally:
        keras.config.set_dtype_policy(previous)
    for layer in copy.layers:
        if layer.weights:
            source = model.get_layer(layer.name).get_weights()
            layer.set_weights([np.asarray(w, dtype=np.float32) for w in source])
    return copy


def bfloat16_servable(servable):
    """The same `Servable` with every network replaced by its `bfloat16_network` copy."""
    return dataclasses.replace(
        servable, models=tuple(bfloat16_network(m) for m in servable.models),
        source={**servable.source, "precision": POLICY})


# -- choosing the precision for this machine ---------------------------------------------------

PRECISIONS = ("float32", "bfloat16", "int8")
BF16_FEATURES = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bfloat16 matrix units
INT8_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni")
# A lower precision is taken only if it agrees with float32 on the probe batch this well and
# is faster than float32 by this factor (smaller gains are within timing noise).
AUTO_MIN_AGREEMENT = 0.99
AUTO_MAX_PROBABILITY_DIFFERENCE = 0.05
AUTO_MIN_SPEEDUP = 1.15


def cpu_features(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def candidates(features: set[str], allowed=PRECISIONS) -> tuple[dict, dict]:
    """({precision: why it is tried}, {precision: why not}) from the CPU's features alone."""
    tried, skipped = {"float32": "the reference, always available"}, {}
    if "bfloat16" in allowed:
        have = [f for f in BF16_FEATURES if f in features]
        if have:
            tried["bfloat16"] = f"the CPU has {', '.join(have)}"
        else:
            skipped["bfloat16"] = (f"no {'/'.join(BF16_FEATURES)}: bfloat16 arithmetic would "
                                   "be emulated in float32 units")
    if "int8" in allowed:
        have = [f for f in INT8_FEATURES if f in features]
        tried["int8"] = ("int8 weights halve to quarter the bytes read per call"
                         + (f"; the CPU has {', '.join(have)}" if have else ""))
    return tried, skipped


def _median_ms(call, images, repeats: int) -> float:
    call(images)  # warm-up: traces, plans, allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(images)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def runner(servable, precision: str):
    """A callable: uint8 (N, H, W, 3) RGB crops -> {output: NumPy} (no `class_name`), running
    `servable` at `precision` ("float32", "bfloat16" or "int8", see `choose_precision`)."""
    if precision == "int8":
        return TFLiteModel(convert(servable, quantization="dynamic_range"))
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    module = ServingModule(servable if precision == "float32" else bfloat16_servable(servable))

    def run(images):
        out = module.predict_images(tf.constant(images))
        return {k: v.numpy() for k, v in out.items() if k != "class_name"}

    run.module = module  # keeps the graph alive with the callable
    return run


def choose_precision(servable, *, allowed=PRECISIONS, batch: int = 1, repeats: int = 5,
                     features: set[str] | None = None) -> tuple[str, dict, dict]:
    """The fastest precision for this machine that keeps float32's answers.

    Candidates come from the CPU's features (`candidates`); each is built ("float32": the
    ServingModule, "bfloat16": `bfloat16_servable`, "int8": the TFLite dynamic-range file run
    by XNNPACK), timed at `batch` on a probe batch (median of `repeats` calls after a warm-up)
    and compared with float32 on it. A lower precision wins only if its top-1 agreement is >=
    `AUTO_MIN_AGREEMENT`, its largest probability difference <= `AUTO_MAX_PROBABILITY_DIFFERENCE`
    and it is at least `AUTO_MIN_SPEEDUP` times faster than float32.

    Returns (precision, {precision: predict_images callable on uint8 (N, H, W, 3)}, record),
    where `record` says what was chosen and why (features, latencies, agreement).
    """
    allowed = tuple(allowed)
    unknown = [p for p in allowed if p not in PRECISIONS]
    if unknown or "float32" not in allowed:
        raise ValueError(f"precisions must be among {PRECISIONS} and include float32, got "
                         f"{allowed}")
    features = cpu_features() if features is None else set(features)
    tried, skipped = candidates(features, allowed)
    runners = {precision: runner(servable, precision) for precision in tried}
    probe, _ = _probe_images(ServingModule(servable).input_sizes)
    rng = np.random.default_rng(1)
    agreement_batch = np.concatenate([probe, rng.integers(0, 256, (14,) + probe.shape[1:],
                                                          dtype=np.uint8)])
    timing_batch = agreement_batch[:batch]
    reference = runners["float32"](agreement_batch)
    measured = {}
    for precision, run in runners.items():
        out = run(agreement_batch)
        measured[precision] = {
            "latency_ms": _median_ms(run, timing_batch, repeats),
            "top1_agreement": float(np.mean(np.asarray(out["class_id"])
                                            == np.asarray(reference["class_id"]))),
            "max_probability_difference": float(np.max(np.abs(
                np.asarray(out["probabilities"]) - np.asarray(reference["probabilities"])))),
        }
    base = measured["float32"]["latency_ms"]
    chosen, why = "float32", "no lower precision was both faster and in agreement"
    best = base
    for precision, m in measured.items():
        if precision == "float32":
            continue
        speedup = base / m["latency_ms"]
        m["speedup"] = speedup
        if m["top1_agreement"] < AUTO_MIN_AGREEMENT or (
                not m["max_probability_difference"] <= AUTO_MAX_PROBABILITY_DIFFERENCE):
            m["rejected"] = "disagrees with float32 on the probe batch"
        elif speedup < AUTO_MIN_SPEEDUP:
            m["rejected"] = f"only {speedup:.2f}x faster than float32 (< {AUTO_MIN_SPEEDUP})"
        elif m["latency_ms"] < best:
            chosen, best = precision, m["latency_ms"]
            why = (f"{speedup:.2f}x faster than float32 at batch {batch} with top-1 agreement "
                   f"{m['top1_agreement']:.3f}")
    record = {"chosen": chosen, "reason": why, "batch": batch,
              "cpu_features": sorted(features & set(BF16_FEATURES + INT8_FEATURES
                                                   + ("avx2", "avx512f"))),
              "tried": tried, "skipped": skipped, "probe": measured,
              "probe_images": int(len(agreement_batch))}
    return chosen, runners, record
