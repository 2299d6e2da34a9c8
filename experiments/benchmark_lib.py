"""What `experiments/benchmark.py` measures: the package against the machine it runs on.

Every figure is a ratio to something measured in the same run, because absolute speeds say
more about the machine (and whoever else is using it) than about the code:

1. `matmul`: TensorFlow's float32 matrix-multiply rate (GFLOP/s), the yardstick. Measured at
   the start and at the end of the run; the median of all samples is used.
2. `inference:<arch>`: batch-1 latency and batch-32 throughput of each inference path (plain
   Keras call and `predict`, `tf.function`, XLA, the exported SavedModel, its bfloat16 variant,
   the TFLite/XNNPACK exports, the ONNX export under ONNX Runtime in float32 and with its
   dynamic int8 quantisation), as the fraction of the matmul rate the model's FLOPs achieve,
   and, for each path, its agreement with the float32 model on the demo test set.
3. `training:<arch>`: one step of plain fine-tuning, KD with the cached teacher, KD with the
   live teacher, triplet, through the package's own trainers, as ratios to the plain step.
4. `mining`: triplet mining (`mine_triplets`, and the eager by_class variant of
   experiments/mining_by_class.py) at FER+ and AffectNet scale against the per-anchor loop.
5. `pipeline`: paired views per second from `make_dataset`, against the training step.
6. Peak resident memory of each part: every part runs in a fresh Python process that reports
   its own `ru_maxrss` (a parent's RUSAGE_CHILDREN only gives the maximum over all children
   so far), beside a `baseline` process that only imports TensorFlow and the package.

Noise. The machine may be shared: inference paths and training modes are timed in interleaved
rounds (every candidate once per round) and summarised by medians, so a burst of load
affects all candidates alike; the load average is recorded at the start and the end.

`merge=True` keeps the parts of an earlier report in the output directory that this run did
not measure (e.g. a serving-only run beside an earlier full one); the report names the run,
date and CPU of every part, so no ratio silently mixes machines.

Library code: functions take arguments; the binary owns the flags.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fer_distill.atomic import write_json, write_text

FORMAT = "fer_distill.benchmarks/1"
MARKDOWN_FILE = "BENCHMARKS.md"
JSON_FILE = "benchmarks.json"

# FER+ training counts per class (data/README.md), the label mix of the mining benchmark.
FERPLUS_TRAIN_COUNTS = (8733, 7284, 3136, 3022, 2098, 116, 536, 120)
AFFECTNET_TRAIN = 88021
FERPLUS_TRAIN = 25045
FERPLUS_POOL = 2505  # the paper's random tenth

INFERENCE_PATHS = ("keras_call", "keras_predict", "tf_function", "xla", "savedmodel",
                   "savedmodel_bfloat16", "tflite_float32", "tflite_dynamic_range",
                   "tflite_float16", "onnx_float32", "onnx_int8")
ONNX_PATHS = ("onnx_float32", "onnx_int8")
# Paths a user serves with (export_savedmodel, export_tflite, export_onnx); the latency target
# is theirs. TF_SERVING_PATHS: those that run on TensorFlow's own runtimes, compared with ONNX
# Runtime by the `vgg_f_vs_onnx` target.
TF_SERVING_PATHS = ("savedmodel", "savedmodel_bfloat16", "tflite_float32",
                    "tflite_dynamic_range", "tflite_float16")
SERVING_PATHS = TF_SERVING_PATHS + ONNX_PATHS
PATH_DESCRIPTIONS = {
    "keras_call": "plain Keras: `model(x)` eagerly (the reference)",
    "keras_predict": "plain Keras: `model.predict(x)`",
    "tf_function": "`tf.function` around `model(x)`",
    "xla": "`tf.function(jit_compile=True)` (XLA)",
    "savedmodel": "exported SavedModel, `predict_images` (uint8 in, resize/view in graph)",
    "savedmodel_bfloat16": "SavedModel of `precision.bfloat16_servable` (bf16 weights, oneDNN)",
    "tflite_float32": "`tflite.export_tflite(quantization='none')`, XNNPACK",
    "tflite_dynamic_range": "`tflite.export_tflite(quantization='dynamic_range')`: int8 "
                            "weights, XNNPACK",
    "tflite_float16": "`tflite.export_tflite(quantization='float16')`, XNNPACK",
    "onnx_float32": "`onnx_model.export_onnx()` (tf2onnx), ONNX Runtime CPU provider",
    "onnx_int8": "`onnx_model.export_onnx(quantization='int8_dynamic')`: ONNX Runtime's "
                 "dynamic int8 quantisation of the fully connected layers",
}
CHANGES_NUMERICS = {"xla": False, "savedmodel_bfloat16": True, "tflite_dynamic_range": True,
                    "tflite_float16": True, "onnx_int8": True}
TRAINING_MODES = ("plain", "kd_cached", "kd_live", "triplet")

TARGETS = {
    "kd_cached_step": ("KD step (cached teacher) / plain step", "<=", 1.10),
    "triplet_step": ("triplet step / plain step", "<=", 2.3),
    "mining_fraction": ("mining at FER+ scale, fraction of the matmul rate", ">=", 0.50),
    "mining_speedup": ("mining speed-up over the per-anchor NumPy loop", ">=", 100.0),
    "pipeline_ratio": ("input pipeline / VGG-f training consumption", ">=", 5.0),
    "vgg_face_throughput": ("VGG-face batch-32 inference in float32 numerics, fraction of the "
                            "matmul rate", ">=", 0.70),
    "vgg_f_latency": ("fastest serving path's VGG-f batch-1 latency / plain Keras", "<=", 0.33),
    "vgg_f_vs_onnx": ("fastest TensorFlow-runtime serving path's VGG-f batch-1 latency / "
                      "fastest ONNX Runtime path's", "<=", 1.0),
    "min_agreement": ("lowest top-1 agreement with float32 of any inference path", ">=", 0.99),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (`settings(quick)` gives the two standard ones)."""

    quick: bool = False
    matmul_size: int = 2048
    matmul_repeats: int = 15
    # inference
    inference_archs: tuple = ("vgg_f", "vgg_face")
    inference_paths: dict = dataclasses.field(default_factory=lambda: {
        "vgg_f": list(INFERENCE_PATHS),
        "vgg_face": ["keras_call", "tf_function", "savedmodel", "savedmodel_bfloat16",
                     "tflite_dynamic_range", "onnx_float32", "onnx_int8"]})
    image_size: int = 224  # the input size of "mini"; VGG always takes 224
    throughput_batch: int = 32
    latency_rounds: int = 7
    latency_calls: int = 5
    throughput_rounds: int = 3
    demo_sizes: dict = dataclasses.field(default_factory=lambda: {
        "train": 1000, "validation": 50, "test": 500})
    head_fit_images: dict = dataclasses.field(default_factory=lambda: {
        "vgg_f": 600, "vgg_face": 200, "mini": 200})
    agreement_images: dict = dataclasses.field(default_factory=lambda: {
        "vgg_f": 476, "vgg_face": 96, "mini": 64})
    # training
    train_archs: tuple = ("vgg_f", "vgg_face")
    train_batch: dict = dataclasses.field(default_factory=lambda: {
        "vgg_f": 32, "vgg_face": 16, "mini": 16})
    # per arch: (warm-up steps, rounds, steps per mode per round); VGG-face steps take ~10 s
    train_schedule: dict = dataclasses.field(default_factory=lambda: {
        "vgg_f": [2, 8, 1], "vgg_face": [1, 4, 1], "mini": [1, 2, 1]})
    # mining
    mining_anchors: int = FERPLUS_TRAIN
    mining_pool: int = FERPLUS_POOL
    mining_dim: int = 4096
    mining_growth: tuple = (2505, 6262, 12522, FERPLUS_TRAIN, 50090, AFFECTNET_TRAIN)
    mining_repeats: int = 3
    loop_anchors: int = 150
    # pipeline
    pipeline_images: int = FERPLUS_TRAIN
    pipeline_batch: int = 64
    pipeline_steps: int = 30
    pipeline_warmup: int = 5
    pipeline_rounds: int = 3
    affectnet_images: int = 7200  # 224x224x3: > 1 GiB, so the memmap (streaming) path runs

    def arch_size(self, arch: str) -> int:
        return self.image_size if arch == "mini" else 224


def settings(quick: bool = False, **overrides) -> Settings:
    """The full benchmark, or with `quick` a seconds-long one on the `mini` network and tiny
    sizes that still runs every code path (for tests)."""
    if not quick:
        return dataclasses.replace(Settings(), **overrides)
    quick_sizes = dict(
        quick=True, matmul_size=256, matmul_repeats=3,
        inference_archs=("mini",), inference_paths={"mini": list(INFERENCE_PATHS)},
        image_size=32, throughput_batch=4, latency_rounds=2, latency_calls=2,
        throughput_rounds=2, demo_sizes={"train": 80, "validation": 20, "test": 40},
        head_fit_images={"mini": 60}, agreement_images={"mini": 24},
        train_archs=("mini",), train_batch={"mini": 8}, train_schedule={"mini": [1, 2, 1]},
        mining_anchors=300, mining_pool=40, mining_dim=32, mining_growth=(100, 300),
        mining_repeats=2, loop_anchors=20,
        pipeline_images=200, pipeline_batch=16, pipeline_steps=3, pipeline_warmup=1,
        pipeline_rounds=2, affectnet_images=20)
    return dataclasses.replace(Settings(), **{**quick_sizes, **overrides})


def settings_from_dict(values: dict) -> Settings:
    values = dict(values)
    for key in ("inference_archs", "train_archs", "mining_growth"):
        values[key] = tuple(values[key])
    return Settings(**values)


def default_parts(s: Settings) -> list[str]:
    """The parts of a run, in order (matmul first and last: the yardstick brackets the run)."""
    return (["baseline", "matmul"] + [f"inference:{a}" for a in s.inference_archs]
            + [f"training:{a}" for a in s.train_archs] + ["mining", "pipeline", "matmul"])


# ------------------------------------------------------------------------------------------
# timing helpers
# ------------------------------------------------------------------------------------------

def interleaved(candidates: dict[str, Callable[[], Any]], *, rounds: int, calls: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate, timed in `rounds` rounds of `calls` calls each,
    every candidate once per round (so load changes hit all alike). Each candidate must
    return only when its work is done (return NumPy, not a lazy tensor)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def _median(values) -> float:
    return float(statistics.median(values))


def model_flops(model) -> int:
    """Floating-point operations of one image through `model`'s convolutions and dense layers
    (2 per multiply-add); activations, pooling and LRN are left out (a few % of the total)."""
    import keras

    from fer_distill.models.layers import MatConvNetConv2D

    total = 0
    for layer in model.layers:
        if isinstance(layer, MatConvNetConv2D):
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            _, h, w, _ = layer.output.shape
            total += 2 * int(h) * int(w) * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            fan_in, units = (int(d) for d in layer.kernel.shape)
            total += 2 * fan_in * units
    return total


# ------------------------------------------------------------------------------------------
# 1. matmul
# ------------------------------------------------------------------------------------------

def measure_matmul(s: Settings, scratch: Path) -> dict:
    """float32 (and, for information, bfloat16) n x n x n matmul rate through TensorFlow."""
    import tensorflow as tf

    n = s.matmul_size
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
    f32 = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    bf16 = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a16, b16)[:1, :1], tf.float32)))
    times = interleaved({"float32": lambda: f32().numpy(), "bfloat16": lambda: bf16().numpy()},
                        rounds=s.matmul_repeats, calls=1, warmup=2)
    flops = 2.0 * n ** 3
    return {"n": n, "float32_gflops_samples": [flops / t / 1e9 for t in times["float32"]],
            "float32_gflops": flops / _median(times["float32"]) / 1e9,
            "bfloat16_gflops": flops / _median(times["bfloat16"]) / 1e9}


YARDSTICK = "matmul (yardstick)"


def matmul_probe(n: int) -> tuple[Callable[[], Any], float]:
    """(a call computing one float32 n x n x n product, its FLOPs), to interleave with a part's
    own candidates: on a shared machine the CPU time a process gets changes from minute to
    minute (this machine has measured 2x apart within one run), so fractions of "the matmul
    rate" are taken against the rate measured in the same rounds."""
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    return (lambda: product().numpy()), 2.0 * n ** 3


def _yardstick(times: dict[str, list[float]], flops: float) -> dict:
    """Pops the yardstick's samples from `times`; its GFLOP/s samples and median."""
    samples = [flops / t / 1e9 for t in times.pop(YARDSTICK)]
    return {"matmul_gflops_samples": samples, "matmul_gflops": _median(samples)}


# ------------------------------------------------------------------------------------------
# 2. inference
# ------------------------------------------------------------------------------------------

def _demo(s: Settings, scratch: Path):
    from fer_distill.data.demo import prepare_demo
    from fer_distill.data.prepared import read_prepared

    path = scratch / "demo"  # one per inference part's scratch: parts may run at once
    if not (path / "summary.json").is_file():
        prepare_demo(path, sizes=dict(s.demo_sizes), seed=0)
    return read_prepared(path)


def _views(prepared, split: str, rows, size: int, view: str) -> np.ndarray:
    """float32 (N, S, S, 3) of `rows` in `view`, exactly as training and evaluation see them."""
    from fer_distill.data.pipeline import make_dataset

    key = "full" if view == "full" else "occluded"
    dataset = make_dataset(prepared, split, image_size=size, batch_size=64, training=False,
                           views=(key,), occlusion="lower_half_visible" if key == "full" else view,
                           indices=np.asarray(rows))
    return np.concatenate([batch[key].numpy() for batch in dataset])


def fit_head(model, prepared, rows, size: int, view: str, seed: int = 0) -> float:
    """Refits `model`'s fc8 in place: a logistic regression on its relu7 embeddings of `rows`
    of the training split. Random VGG weights give near-uniform softmaxes, on which 'top-1
    agreement' would measure ties, not precision; a fitted head makes the model confident the
    way a trained one is. Returns the training accuracy."""
    from sklearn.linear_model import LogisticRegression

    from fer_distill.models import embedding_model, logits_layer

    views = _views(prepared, "train", rows, size, view)
    labels = np.asarray(prepared.labels("train"))[np.asarray(rows)]
    embeddings = np.asarray(embedding_model(model).predict(views, batch_size=32, verbose=0)
                            ["embedding"], dtype=np.float64)
    scale = float(np.mean(np.linalg.norm(embeddings, axis=1))) or 1.0
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(embeddings / scale, labels)
    head = logits_layer(model)
    kernel, bias = head.get_weights()
    new_kernel = np.zeros_like(kernel)
    new_bias = np.full_like(bias, float(np.min(classifier.intercept_)) - 10.0)
    coef = classifier.coef_ if len(classifier.classes_) > 2 else np.vstack(
        [-classifier.coef_[0], classifier.coef_[0]])
    intercept = classifier.intercept_ if len(classifier.classes_) > 2 else np.array(
        [-classifier.intercept_[0], classifier.intercept_[0]])
    for row, cls in enumerate(classifier.classes_):
        new_kernel[:, int(cls)] = coef[row] / scale
        new_bias[int(cls)] = intercept[row]
    head.set_weights([new_kernel.astype(np.float32), new_bias.astype(np.float32)])
    return float(classifier.score(embeddings / scale, labels))


def _softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _in_batches(fn, images, batch: int) -> np.ndarray:
    return np.concatenate([fn(images[i:i + batch]) for i in range(0, len(images), batch)])


def _inference_paths(model, paths, size: int, view: str, scratch: Path) -> dict:
    """{path: (kind, fn)}: kind "views" (float32 model input, returns logits) or "crops"
    (uint8 crops, returns probabilities); fn(batch) -> NumPy."""
    import tensorflow as tf

    from fer_distill.serving import precision
    from fer_distill.serving.export import export_savedmodel
    from fer_distill.serving.servable import CLASSIFIER, Servable
    from fer_distill.serving.tflite import MODEL_FILE, TFLiteModel, export_tflite

    servable = Servable(CLASSIFIER, (model,), view)
    spec = [tf.TensorSpec([None, size, size, 3], tf.float32)]
    out: dict[str, tuple[str, Callable]] = {}
    for path in paths:
        if path == "keras_call":
            out[path] = ("views", lambda x: model(x, training=False).numpy())
        elif path == "keras_predict":
            out[path] = ("views", lambda x: model.predict(x, batch_size=len(x), verbose=0))
        elif path == "tf_function":
            fn = tf.function(lambda x: model(x, training=False), input_signature=spec)
            out[path] = ("views", lambda x, fn=fn: fn(x).numpy())
        elif path == "xla":
            fn = tf.function(lambda x: model(x, training=False), jit_compile=True)
            out[path] = ("views", lambda x, fn=fn: fn(x).numpy())
        elif path in ("savedmodel", "savedmodel_bfloat16"):
            source = servable if path == "savedmodel" else precision.bfloat16_servable(servable)
            target = export_savedmodel(source, scratch / path / "1")
            loaded = tf.saved_model.load(str(target))
            out[path] = ("crops", lambda x, loaded=loaded: loaded.predict_images(
                tf.constant(x))["probabilities"].numpy())
        elif path.startswith("tflite_"):
            quantization = {"tflite_float32": "none"}.get(path, path[len("tflite_"):])
            target = export_tflite(servable, scratch / path, quantization=quantization)
            content = (target / MODEL_FILE).read_bytes()
            # one interpreter per batch shape, so timing never includes re-planning
            interpreters: dict[int, TFLiteModel] = {}

            def run(x, content=content, interpreters=interpreters):
                if len(x) not in interpreters:
                    interpreters[len(x)] = TFLiteModel(content)
                return interpreters[len(x)](x)["probabilities"]

            out[path] = ("crops", run)
        elif path in ONNX_PATHS:
            from fer_distill.serving.onnx_model import ONNXModel, export_onnx

            quantization = "none" if path == "onnx_float32" else "int8_dynamic"
            target = export_onnx(servable, scratch / f"{path}.onnx", quantization=quantization)
            session = ONNXModel(target.read_bytes())
            out[path] = ("crops", lambda x, session=session: session(x)["probabilities"])
        else:
            raise ValueError(f"unknown inference path {path!r}; expected one of "
                             f"{INFERENCE_PATHS}")
    return out


def measure_inference(s: Settings, scratch: Path, arch: str) -> dict:
    """Latency, throughput and agreement of every inference path of `arch` (module docstring).

    Keras paths take the float32 model input (the student's view already applied); the
    serving paths take uint8 crops and resize and occlude in their graph, as deployed.
    """
    import keras

    from fer_distill.data.occlusion import occlude
    from fer_distill.models import build

    view = "lower_half_visible"
    size = s.arch_size(arch)
    keras.utils.set_random_seed(0)
    model = build(arch, 8, **({"input_size": size} if arch == "mini" else {}))
    prepared = _demo(s, scratch / f"inference_{arch}")
    fit_rows = np.arange(min(s.head_fit_images[arch], prepared.count("train")))
    head_accuracy = fit_head(model, prepared, fit_rows, size, view)
    test_rows = np.arange(min(s.agreement_images[arch], prepared.count("test")))
    test_views = _views(prepared, "test", test_rows, size, view)
    test_crops = np.asarray(prepared.images("test"))[test_rows]
    if test_crops.shape[-1] == 1:
        test_crops = np.repeat(test_crops, 3, axis=-1)  # grey files decode to RGB when served
    labels = np.asarray(prepared.labels("test"))[test_rows]

    paths = _inference_paths(model, s.inference_paths[arch], size, view,
                             scratch / f"inference_{arch}")
    rng = np.random.default_rng(0)
    crops = {b: rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)
             for b in (1, s.throughput_batch)}
    views = {b: occlude(c.astype(np.float32), view) for b, c in crops.items()}

    def call(kind_fn, batch):
        kind, fn = kind_fn
        return (lambda: fn(views[batch])) if kind == "views" else (lambda: fn(crops[batch]))

    probe, probe_flops = matmul_probe(s.matmul_size)
    latency = interleaved({**{p: call(kf, 1) for p, kf in paths.items()}, YARDSTICK: probe},
                          rounds=s.latency_rounds, calls=s.latency_calls, warmup=2)
    throughput = interleaved({**{p: call(kf, s.throughput_batch) for p, kf in paths.items()},
                              YARDSTICK: probe},
                             rounds=s.throughput_rounds, calls=1, warmup=1)
    yardstick = _yardstick(latency, probe_flops)
    more = _yardstick(throughput, probe_flops)["matmul_gflops_samples"]
    samples = yardstick["matmul_gflops_samples"] + more
    yardstick = {"matmul_gflops_samples": samples, "matmul_gflops": _median(samples)}

    reference = _softmax(_in_batches(paths["tf_function"][1] if "tf_function" in paths
                                     else (lambda x: model(x, training=False).numpy()),
                                     test_views, 32))
    results = {}
    for name, (kind, fn) in paths.items():
        if kind == "views":
            probabilities = _softmax(_in_batches(fn, test_views, 32))
        else:
            probabilities = np.asarray(_in_batches(fn, test_crops, 32), dtype=np.float64)
        results[name] = {
            "description": PATH_DESCRIPTIONS[name],
            "input": "float32 model input (view applied)" if kind == "views" else
                     "uint8 crops (resize + view in the graph)",
            "changes_numerics": CHANGES_NUMERICS.get(name, False),
            "latency_ms_samples": [1e3 * t for t in latency[name]],
            "latency_ms": 1e3 * _median(latency[name]),
            "throughput_samples": [s.throughput_batch / t for t in throughput[name]],
            "throughput": s.throughput_batch / _median(throughput[name]),
            "top1_agreement": float(np.mean(np.argmax(probabilities, 1)
                                            == np.argmax(reference, 1))),
            "max_probability_difference": float(np.max(np.abs(probabilities - reference))),
            "accuracy": float(np.mean(np.argmax(probabilities, 1) == labels)),
        }
    return {"arch": arch, "image_size": size, "flops_per_image": model_flops(model),
            "parameters": int(model.count_params()), "view": view,
            "throughput_batch": s.throughput_batch, "agreement_images": int(len(test_rows)),
            "head_fit_images": int(len(fit_rows)), "head_train_accuracy": head_accuracy,
            **yardstick, "paths": results}


# ------------------------------------------------------------------------------------------
# 3. training steps
# ------------------------------------------------------------------------------------------

def _ferplus_labels(n: int, rng) -> np.ndarray:
    p = np.asarray(FERPLUS_TRAIN_COUNTS, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int32)


def measure_training(s: Settings, scratch: Path, arch: str) -> dict:
    """Seconds per training step of each mode, through the package's trainers, compiled as
    `fer_distill.train` compiles them (SGD with momentum 0.9, float32, no XLA: the defaults).

    Data are in-memory tensors, so the step is measured without the input pipeline (part 5
    measures that). The KD table and the triplet pools have FER+'s sizes (25,045 training
    images; a pool of 2,505 48x48 grey images with their embeddings).
    """
    import keras
    import tensorflow as tf

    from fer_distill.distill.kd_model import KDModel
    from fer_distill.distill.triplet_model import TripletModel
    from fer_distill.models import build, embedding_layer
    from fer_distill.train.config import TrainConfig

    # the paper's settings, from their one source (TrainConfig's defaults)
    paper = TrainConfig(stage="kd", arch=arch, data="-", workdir="-")
    kd_settings = dict(lam=paper.kd_lambda, temperature=paper.temperature,
                       temperature_squared=paper.temperature_squared)
    triplet_settings = dict(lam=paper.triplet_lambda, margin=paper.margin,
                            reduction=paper.triplet_reduction)

    size = s.arch_size(arch)
    batch = s.train_batch[arch]
    kwargs = {"input_size": size} if arch == "mini" else {}
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)

    def optimizer():
        # a tiny rate: random data must not drive the weights to NaN while we time steps
        return keras.optimizers.SGD(learning_rate=1e-7, momentum=0.9)

    def accuracy():
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    full = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    occluded = tf.constant(np.where(np.arange(size)[None, :, None, None] >= size // 2,
                                    full.numpy(), 0.0).astype(np.float32))
    labels = tf.constant(_ferplus_labels(batch, rng))
    index = tf.constant(rng.integers(0, FERPLUS_TRAIN, batch), tf.int64)

    trainers: dict[str, tuple[Any, Any]] = {}
    plain = build(arch, 8, **kwargs)
    plain.compile(optimizer=optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[accuracy()], jit_compile=False)
    trainers["plain"] = (plain, lambda m: m.train_on_batch(occluded, labels))

    table = rng.normal(0, 3, (FERPLUS_TRAIN, 8)).astype(np.float32)
    kd_cached = KDModel(build(arch, 8, **kwargs), None, train_logits=table, **kd_settings)
    kd_cached.compile(optimizer=optimizer(), metrics=[accuracy()], jit_compile=False)
    trainers["kd_cached"] = (kd_cached, lambda m: m.train_on_batch(
        {"image": occluded, "index": index}, labels))

    teacher = build(arch, 8, **kwargs)
    kd_live = KDModel(build(arch, 8, **kwargs), teacher, **kd_settings)
    kd_live.compile(optimizer=optimizer(), metrics=[accuracy()], jit_compile=False)
    trainers["kd_live"] = (kd_live, lambda m: m.train_on_batch(
        {"image": occluded, "full": full, "index": index}, labels))

    student = build(arch, 8, **kwargs)
    dim = int(embedding_layer(student).output.shape[-1])
    pool = min(FERPLUS_POOL, s.mining_pool) if s.quick else FERPLUS_POOL
    source_shape = (48, 48, 1)
    triplet = TripletModel(student, source_shape=source_shape, image_size=size,
                           **triplet_settings)
    pool_labels = _ferplus_labels(pool, rng)
    triplet.set_pools(
        positive_emb=np.abs(rng.normal(size=(pool, dim))).astype(np.float32),
        positive_labels=pool_labels,
        negative_emb=np.abs(rng.normal(size=(pool, dim))).astype(np.float32),
        negative_labels=pool_labels,
        images=rng.integers(0, 256, (pool, *source_shape), dtype=np.uint8))
    triplet.compile(optimizer=optimizer(), jit_compile=False)
    trainers["triplet"] = (triplet, lambda m: m.train_on_batch(occluded, labels))

    calls = {mode: (lambda t=trainer, f=step: f(t)) for mode, (trainer, step) in
             trainers.items()}
    warmup, rounds, steps = s.train_schedule[arch]
    times = interleaved(calls, rounds=rounds, calls=steps, warmup=warmup)
    modes = {}
    for mode in TRAINING_MODES:
        seconds = _median(times[mode])
        modes[mode] = {"step_seconds_samples": times[mode], "step_seconds": seconds,
                       "images_per_second": batch / seconds}
    return {"arch": arch, "image_size": size, "batch": batch, "warmup_steps": warmup,
            "timed_steps": rounds * steps, "pool": pool,
            "modes": modes}


# ------------------------------------------------------------------------------------------
# 4. mining
# ------------------------------------------------------------------------------------------

def per_anchor_loop(anchors, labels, positives, positive_labels, negatives, negative_labels):
    """The obvious way: for each anchor, the distances to every candidate by differences, then
    the farthest same-class positive and the closest other-class negative (lowest index on
    ties, -1 when none). The reference `mine_triplets` is measured against."""
    n = len(anchors)
    pos_index = np.full(n, -1, np.int64)
    neg_index = np.full(n, -1, np.int64)
    for i in range(n):
        a, k = anchors[i], labels[i]
        same = np.flatnonzero(positive_labels == k)
        if same.size:
            d = np.sqrt(np.sum((positives[same] - a) ** 2, axis=1))
            pos_index[i] = same[np.argmax(d)]
        other = np.flatnonzero(negative_labels != k)
        if other.size:
            d = np.sqrt(np.sum((negatives[other] - a) ** 2, axis=1))
            neg_index[i] = other[np.argmin(d)]
    return pos_index, neg_index


def measure_mining(s: Settings, scratch: Path) -> dict:
    """The eager "by_class" miner (experiments/mining_by_class.py) and the package's
    `mine_triplets` under XLA at FER+ scale, the former's growth with the number of anchors up
    to AffectNet's, and the per-anchor loop on a subsample.

    Embeddings are non-negative like relu7's; labels follow FER+'s class mix; the pools are a
    tenth of the anchors' size (2,505 at FER+ scale). Useful work = 2·N·M·D FLOPs (each anchor
    against each pool image once, what "by_class" computes; `mine_triplets`' masked search
    multiplies twice that).
    """
    import tensorflow as tf

    from experiments.mining_by_class import mine_triplets_by_class
    from fer_distill.distill.mining import mine_triplets

    rng = np.random.default_rng(0)
    d, m = s.mining_dim, s.mining_pool
    largest = max(max(s.mining_growth), s.mining_anchors)
    # why TensorFlow draws the anchors: one copy of AffectNet's 88,021 x 4096 floats (1.4 GB)
    # instead of a NumPy array plus its tensor copy
    anchors_all = tf.abs(tf.random.stateless_normal([largest, d], seed=[5, 6]))
    labels_all = tf.constant(_ferplus_labels(largest, rng))
    positives = np.abs(rng.standard_normal((m, d), dtype=np.float32))
    negatives = np.abs(rng.standard_normal((m, d), dtype=np.float32))
    pool_labels = _ferplus_labels(m, rng)
    pools = (tf.constant(positives), tf.constant(pool_labels), tf.constant(negatives),
             tf.constant(pool_labels))

    def by_class(anchors, labels):
        p, q = mine_triplets_by_class(anchors, labels, *pools)
        return p.numpy(), q.numpy()

    masked_xla = tf.function(lambda a, y: mine_triplets(a, y, *pools), jit_compile=True)

    n = s.mining_anchors
    anchors_n, labels_n = tf.identity(anchors_all[:n]), tf.identity(labels_all[:n])
    probe, probe_flops = matmul_probe(s.matmul_size)
    times = interleaved({"by_class": lambda: by_class(anchors_n, labels_n),
                         "masked_xla": lambda: [t.numpy() for t in masked_xla(anchors_n,
                                                                               labels_n)],
                         YARDSTICK: probe},
                        rounds=s.mining_repeats, calls=1, warmup=1)
    yardstick = _yardstick(times, probe_flops)
    fast_pos, fast_neg = by_class(anchors_n, labels_n)

    sub = np.sort(rng.choice(n, size=min(s.loop_anchors, n), replace=False))
    sub_anchors = tf.gather(anchors_all, sub).numpy()
    sub_labels = labels_all.numpy()[sub]
    start = time.perf_counter()
    loop_pos, loop_neg = per_anchor_loop(sub_anchors, sub_labels, positives, pool_labels,
                                         negatives, pool_labels)
    loop_seconds = time.perf_counter() - start
    mismatches = int(np.sum(loop_pos != fast_pos[sub]) + np.sum(loop_neg != fast_neg[sub]))
    del anchors_n, labels_n

    growth = []
    for count in s.mining_growth:
        anchors, labels = tf.identity(anchors_all[:count]), tf.identity(labels_all[:count])
        start = time.perf_counter()
        by_class(anchors, labels)
        growth.append({"anchors": int(count), "seconds": time.perf_counter() - start})
        del anchors, labels
    return {
        "anchors": n, "pool": m, "dim": d, "useful_flops": 2.0 * n * m * d, **yardstick,
        "by_class_seconds_samples": times["by_class"],
        "by_class_seconds": _median(times["by_class"]),
        "masked_xla_seconds_samples": times["masked_xla"],
        "masked_xla_seconds": _median(times["masked_xla"]),
        "loop_subsample": int(len(sub)), "loop_subsample_seconds": loop_seconds,
        "loop_seconds_scaled": loop_seconds * n / len(sub),
        "loop_mismatches": mismatches,
        "growth": growth,
    }


# ------------------------------------------------------------------------------------------
# 5. input pipeline
# ------------------------------------------------------------------------------------------

def _synthetic_prepared(path: Path, n: int, shape, seed: int):
    from fer_distill.data.prepared import PreparedWriter, read_prepared

    rng = np.random.default_rng(seed)
    with PreparedWriter(path, dataset="ferplus" if shape[-1] == 1 else "affectnet",
                        image_shape=shape, source={"generator": "experiments.benchmark_lib"}) as w:
        for split, count in (("train", n), ("validation", 8), ("test", 8)):
            images = w.new_images(split, count)
            for start in range(0, count, 1024):  # chunks: never the whole split in RAM twice
                stop = min(count, start + 1024)
                images[start:stop] = rng.integers(0, 256, (stop - start, *shape),
                                                  dtype=np.uint8)
            images.flush()
            del images
            w.add_split(split, _ferplus_labels(count, rng),
                        [f"{split}{i:06d}.png" for i in range(count)])
    return read_prepared(path)


def measure_pipeline(s: Settings, scratch: Path) -> dict:
    """Paired 224x224 views per second from `make_dataset` (training order, "full" and
    "occluded"), without a model: FER+'s layout (48x48 grey, in memory) at FER+'s size, and
    AffectNet's (224x224 RGB, streamed from the memmap when over 1 GiB)."""
    from fer_distill.data.pipeline import IN_MEMORY_BYTES, make_dataset

    layouts = {}
    for name, n, shape in (("ferplus", s.pipeline_images, (48, 48, 1)),
                           ("affectnet", s.affectnet_images, (224, 224, 3))):
        prepared = _synthetic_prepared(scratch / f"pipeline_{name}", n, shape, seed=1)
        batch = min(s.pipeline_batch, n)
        dataset = make_dataset(prepared, "train", image_size=224, batch_size=batch,
                               training=True)
        iterator = iter(dataset)
        for _ in range(s.pipeline_warmup):
            next(iterator)
        rates = []
        for _ in range(s.pipeline_rounds):
            start = time.perf_counter()
            pairs = 0
            for _ in range(s.pipeline_steps):
                element = next(iterator)
                pairs += int(element["index"].shape[0])
            element["occluded"].numpy()
            rates.append(pairs / (time.perf_counter() - start))
        stored = int(np.prod(shape)) * n
        layouts[name] = {"images": n, "stored_shape": list(shape), "batch": batch,
                         "source": "memmap" if stored > IN_MEMORY_BYTES else "in memory",
                         "pairs_per_second_samples": rates,
                         "pairs_per_second": _median(rates)}
        del iterator, dataset, prepared
    return {"image_size": 224, "layouts": layouts}


# ------------------------------------------------------------------------------------------
# 6. each part in its own process
# ------------------------------------------------------------------------------------------

def measure_baseline(s: Settings, scratch: Path) -> dict:
    """Nothing but the imports every part pays for: the floor under the parts' peak memory."""
    import tensorflow as tf  # noqa: F401

    import fer_distill.models  # noqa: F401
    return {}


def measure(part: str, s: Settings, scratch: Path) -> dict:
    """Runs one part in this process (`run_part` runs it in a fresh one)."""
    name, _, arch = part.partition(":")
    if name == "baseline":
        return measure_baseline(s, scratch)
    if name == "matmul":
        return measure_matmul(s, scratch)
    if name == "inference" and arch:
        return measure_inference(s, scratch, arch)
    if name == "training" and arch:
        return measure_training(s, scratch, arch)
    if name == "mining":
        return measure_mining(s, scratch)
    if name == "pipeline":
        return measure_pipeline(s, scratch)
    raise ValueError(f"unknown benchmark part {part!r}; expected baseline, matmul, "
                     "inference:<arch>, training:<arch>, mining or pipeline")


def _child_main(argv) -> None:
    """Entry of a part's process: argv = [input.json, output.json]."""
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    s = settings_from_dict(request["settings"])
    load_start = os.getloadavg()
    start = time.perf_counter()
    result = measure(request["part"], s, Path(request["scratch"]))
    result.update(
        part=request["part"], seconds=time.perf_counter() - start,
        # ru_maxrss is in KiB on Linux: the peak of this process alone
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        load_average_start=load_start[0], load_average_end=os.getloadavg()[0])
    write_json(argv[1], result)


def run_part(part: str, s: Settings, scratch: Path, tag: str | None = None) -> dict:
    """Runs `measure(part)` in a fresh Python process and returns its result, with the
    process's own peak resident memory (`peak_rss_mb`). `tag` names its files in `scratch`."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    tag = (tag or part).replace(":", "_").replace("@", "_")
    request, result = scratch / f"{tag}.request.json", scratch / f"{tag}.result.json"
    write_json(request, {"part": part, "settings": dataclasses.asdict(s),
                         "scratch": str(scratch)})
    if result.exists():
        result.unlink()
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    code = "import sys; from experiments.benchmark_lib import _child_main; _child_main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(request), str(result)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not result.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"benchmark part {part!r} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(result.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------

def machine() -> dict:
    """CPU model, cores, the CPU's bfloat16/AMX flags, TF/Keras/Python versions, devices."""
    import keras
    import tensorflow as tf

    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    return {
        "cpu": model, "cores": os.cpu_count(),
        "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                         "amx_int8", "avx512_vnni", "avx512_fp16"}),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "python": platform.python_version(), "numpy": np.__version__,
        "devices": sorted(set(devices)), "platform": platform.platform(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[1], timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _check(key: str, measured: float | None, where: str) -> dict:
    label, op, bound = TARGETS[key]
    met = None if measured is None else (measured <= bound if op == "<=" else measured >= bound)
    return {"key": key, "target": f"{label} {op} {bound:g}", "measured": measured,
            "met": met, "where": where}


def summarise(parts: dict[str, dict]) -> dict:
    """Derived figures (every one a ratio of numbers measured in this run) and the targets."""
    matmul_samples = [g for name, r in parts.items() if name.startswith("matmul")
                      for g in r["float32_gflops_samples"]]
    run_rate = _median(matmul_samples) * 1e9 if matmul_samples else None
    summary: dict[str, Any] = {"matmul_gflops": None if run_rate is None else run_rate / 1e9,
                               "inference": {}, "training": {}, "targets": []}

    for name, r in parts.items():
        if not name.startswith("inference:"):
            continue
        arch, flops = r["arch"], r["flops_per_image"]
        rate = _local_rate(r, run_rate)
        reference = r["paths"].get("keras_call", {}).get("latency_ms")
        rows = {}
        for path, p in r["paths"].items():
            rows[path] = {
                "latency_ms": p["latency_ms"],
                "latency_vs_plain_keras": (p["latency_ms"] / reference if reference else None),
                "latency_fraction_of_matmul": (flops / (p["latency_ms"] / 1e3) / rate
                                               if rate else None),
                "throughput": p["throughput"],
                "throughput_fraction_of_matmul": (flops * p["throughput"] / rate
                                                  if rate else None),
                "top1_agreement": p["top1_agreement"],
                "max_probability_difference": p["max_probability_difference"],
                "changes_numerics": p["changes_numerics"],
            }
        summary["inference"][arch] = rows

    for name, r in parts.items():
        if not name.startswith("training:"):
            continue
        plain = r["modes"]["plain"]["step_seconds"]
        summary["training"][r["arch"]] = {
            mode: {"images_per_second": m["images_per_second"],
                   "vs_plain": m["step_seconds"] / plain} for mode, m in r["modes"].items()}

    mining = parts.get("mining")
    if mining:
        rate = _local_rate(mining, run_rate)
        summary["mining"] = {
            "fraction_of_matmul": (mining["useful_flops"] / mining["by_class_seconds"] / rate
                                   if rate else None),
            "masked_xla_fraction_of_matmul": (mining["useful_flops"]
                                              / mining["masked_xla_seconds"] / rate
                                              if rate else None),
            "speedup_over_loop": mining["loop_seconds_scaled"] / mining["by_class_seconds"],
            "growth_seconds_per_1000_anchors": [1e3 * g["seconds"] / g["anchors"]
                                                for g in mining["growth"]],
        }

    pipeline = parts.get("pipeline")
    train_arch = "vgg_f" if "vgg_f" in summary["training"] else next(
        iter(summary["training"]), None)
    if pipeline and train_arch:
        consumption = parts[f"training:{train_arch}"]["modes"]["plain"]["images_per_second"]
        summary["pipeline"] = {
            "training_arch": train_arch, "training_images_per_second": consumption,
            "ratios": {name: layout["pairs_per_second"] / consumption
                       for name, layout in pipeline["layouts"].items()}}

    targets = summary["targets"]
    t = summary["training"].get(train_arch) if train_arch else None
    targets.append(_check("kd_cached_step", t and t["kd_cached"]["vs_plain"],
                          f"training:{train_arch}"))
    targets.append(_check("triplet_step", t and t["triplet"]["vs_plain"],
                          f"training:{train_arch}"))
    m = summary.get("mining")
    targets.append(_check("mining_fraction", m and m["fraction_of_matmul"], "mining by_class"))
    targets.append(_check("mining_speedup", m and m["speedup_over_loop"], "mining by_class"))
    pl = summary.get("pipeline")
    targets.append(_check("pipeline_ratio", pl and pl["ratios"].get("ferplus"),
                          "pipeline ferplus layout"))
    face_arch = "vgg_face" if "vgg_face" in summary["inference"] else None
    face_rows = summary["inference"].get(face_arch or "", {})
    best_face = _best({k: v for k, v in face_rows.items() if not v["changes_numerics"]},
                      "throughput_fraction_of_matmul", largest=True, only=None)
    targets.append(_check("vgg_face_throughput", best_face and best_face[1],
                          _where("vgg_face", best_face, face_rows)))
    f_arch = "vgg_f" if "vgg_f" in summary["inference"] else next(iter(summary["inference"]),
                                                                   None)
    best_f = _best(summary["inference"].get(f_arch or "", {}), "latency_vs_plain_keras",
                   largest=False, only=SERVING_PATHS)
    f_rows = summary["inference"].get(f_arch or "", {})
    targets.append(_check("vgg_f_latency", best_f and best_f[1], _where(f_arch, best_f, f_rows)))
    best_tf = _best(f_rows, "latency_ms", largest=False, only=TF_SERVING_PATHS)
    best_onnx = _best(f_rows, "latency_ms", largest=False, only=ONNX_PATHS)
    targets.append(_check(
        "vgg_f_vs_onnx", best_tf and best_onnx and best_tf[1] / best_onnx[1],
        f"inference:{f_arch} {best_tf[0]} / {best_onnx[0]}" if best_tf and best_onnx
        else f"inference:{f_arch} (ONNX Runtime not run)"))
    lowest = min(((row["top1_agreement"], f"inference:{arch} {path}")
                  for arch, rows in summary["inference"].items() for path, row in rows.items()),
                 default=None)
    targets.append(_check("min_agreement", lowest and lowest[0],
                          lowest[1] if lowest else "inference (not run)"))
    summary["memory_mb"] = {name: r["peak_rss_mb"] for name, r in parts.items()}
    summary["yardsticks_gflops"] = {name: r["matmul_gflops"] for name, r in parts.items()
                                    if r.get("matmul_gflops")}
    return summary


# Why a target can be missed here, and what would reach it (the closing note quotes the one
# that applies). Each names the work the figure is made of, from this package's own code.
MISSED_BECAUSE = {
    "kd_cached_step": (
        "a KD step with cached logits adds to the plain step only a gather of B x 8 floats "
        "and eq. 1's two softmaxes (far below 0.1 % of its FLOPs), so a ratio above 1.10 is "
        "timing noise on a shared machine (see the per-step samples in benchmarks.json); an "
        "idle machine or more rounds would reach it"),
    "triplet_step": (
        "the triplet step runs the student forward and backward on the anchors and again on "
        "the mined negatives (twice the plain step), plus mining against the 2,505-image pool "
        "and resizing the negatives' source images; embedding anchors and negatives as one "
        "batch of 2B would give every layer one larger, more efficient product"),
    "mining_fraction": (
        "`by_class` multiplies each class's anchors with that class's candidates, and FER+'s "
        "small classes (disgust 116, contempt 120 of 25,045) give thin products that run "
        "below the 2048³ matmul's rate; padding small classes into one masked block would "
        "reach it"),
    "mining_speedup": (
        "the loop's cost is memory traffic (it copies each anchor's candidates), so a fast "
        "memory system narrows the gap; the vectorised search itself is matmul-bound"),
    "pipeline_ratio": (
        "the pipeline resizes 48x48 grey images to two 224x224x3 float32 views per image on "
        "the CPU that also trains; caching the resized uint8 views, or resizing on an "
        "accelerator, would reach it"),
    "vgg_face_throughput": (
        "float32 VGG-face is a chain of 3x3 convolutions that oneDNN and ONNX Runtime run "
        "below the rate of one large matmul (im2col-free direct convolutions on small spatial "
        "maps); in float32 numerics nothing here reaches it, and the lower-precision paths "
        "that are faster do not count for this target"),
    "vgg_f_latency": (
        "at batch 1 VGG-f reads all 57 M weights (227 MB in float32) per image, so its latency "
        "is bound by memory bandwidth; int8 weights (tflite_dynamic_range) or bfloat16 weights "
        "cut the bytes, and a machine with more memory bandwidth per core would reach it"),
    "vgg_f_vs_onnx": (
        "ONNX Runtime's kernels were faster than TensorFlow's runtimes (oneDNN, XNNPACK) on "
        "this CPU for the same network; which kernels make the difference was not profiled. "
        "The package exports ONNX (experiments.export_onnx), so users whose engine runs ONNX "
        "get that path"),
    "min_agreement": (
        "a quantised path changes the numbers; where its agreement on the demo test set falls "
        "below 0.99, the float32 paths of the same runtime keep float32's answers exactly"),
}


def closing_notes(summary: dict) -> list[str]:
    """One sentence per target: what met it, or why it was missed and what would reach it."""
    notes = []
    for t in summary["targets"]:
        if t["met"] is None:
            notes.append(f"{t['target']}: not measured in this run.")
        elif t["met"]:
            notes.append(f"{t['target']}: met ({t['measured']:.3g}, {t['where']}).")
        else:
            notes.append(f"{t['target']}: MISSED ({t['measured']:.3g}, {t['where']}): "
                         f"{MISSED_BECAUSE[t['key']]}.")
    face = summary["inference"].get("vgg_face")
    if face:
        float32 = _best({k: v for k, v in face.items() if not v["changes_numerics"]},
                        "throughput_fraction_of_matmul", largest=True, only=None)
        if float32 and float32[1] is not None:
            notes.append(f"VGG-face batch-32 in float32 numerics only: {float32[1]:.2f} of the "
                         f"matmul rate ({float32[0]}).")
    return notes


def _local_rate(part: dict, run_rate: float | None) -> float | None:
    """FLOP/s of the yardstick measured inside `part` (interleaved with its candidates), or the
    run-wide rate for a part that has none."""
    local = part.get("matmul_gflops")
    return local * 1e9 if local else run_rate


def _where(arch, best, rows) -> str:
    """Where a target's figure comes from; a winner that changes numerics says by how much."""
    if not best:
        return f"inference:{arch} (not run)"
    row = rows[best[0]]
    text = f"inference:{arch} {best[0]}"
    if row.get("changes_numerics"):
        text += (f" (numerics change: top-1 agreement {row['top1_agreement']:.4f}, max "
                 f"probability difference {row['max_probability_difference']:.1e})")
    return text


def _best(rows: dict, key: str, *, largest: bool, only) -> tuple[str, float] | None:
    found = [(path, row[key]) for path, row in rows.items()
             if row.get(key) is not None and (only is None or path in only)]
    if not found:
        return None
    return (max if largest else min)(found, key=lambda item: item[1])


def _fmt(value, spec: str = ".2f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec)


def runs_and_targets(report: dict) -> list[str]:
    """Markdown lines: which earlier run measured each kept part (a merged report), then the
    targets table, each target's source marked when it comes from an earlier run."""
    lines = []
    runs = report.get("part_runs", {})
    earlier = {key: run for key, run in runs.items()
               if (run["date"], run["command"]) != (report["date"], report["command"])}
    if earlier:
        lines += ["", "This report merges runs: the parts below were measured by the run "
                  "named, on the CPU named, and are kept as that run wrote them; any other "
                  "part was measured by this run on the machine above. Ratios are only ever "
                  "taken within one part (each part measures its own yardstick).", "",
                  "| part | measured on | date | command |", "|---|---|---|---|"]
        for key, run in earlier.items():
            lines.append(f"| {key} | {run['cpu']} | {run['date']} | `{run['command']}` |")
    lines += ["", "## Targets (issues 6 and 11)", "",
              "| target | measured | met | where |", "|---|---|---|---|"]
    for t in report["summary"]["targets"]:
        met = {True: "yes", False: "**NO**", None: "not measured"}[t["met"]]
        where = t["where"]
        part = where.split(" ")[0]
        if part in earlier:
            where += f" (run of {earlier[part]['date']}, {earlier[part]['cpu']})"
        lines.append(f"| {t['target']} | {_fmt(t['measured'], '.3g')} | {met} | {where} |")
    return lines


def render_markdown(report: dict) -> str:
    """BENCHMARKS.md: the machine, the targets, then one table per measured item."""
    m, parts, summary = report["machine"], report["parts"], report["summary"]
    kind = ("QUICK settings (tiny sizes, for tests): not a measurement of the package"
            if report["settings"]["quick"] else "full settings")
    if report.get("jobs", 1) > 1:
        kind += (f"; {report['jobs']} parts ran at once, so their timings disturbed each "
                 "other")
    lines = [
        "# Benchmarks",
        "",
        (f"Combined by `{report['command']}` (git {report.get('combined_git_commit')}) from "
         "the runs named in the table below the machine; the machine is that of the last "
         f"run ({report['date']}); {kind}." if report.get("combined_from") else
         f"Written by `{report['command']}` on {report['date']} (git {report['git_commit']}); "
         f"{kind}."),
        ("Every figure is measured within one part of one run; ratios divide numbers of one "
         "part only. " if report.get("combined_from") else
         "Every figure is measured in this one run; ratios divide numbers of this run only. ")
        + "Medians over interleaved repetitions (every candidate once per round).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| CPU features used here | {', '.join(m['cpu_features']) or '-'} |",
        f"| devices | {', '.join(m['devices'])} |",
        f"| TensorFlow / Keras / Python / NumPy | {m['tensorflow']} / {m['keras']} / "
        f"{m['python']} / {m['numpy']} |",
        f"| oneDNN | {m['onednn']} |",
        f"| load average (1 min) at start / end | {report['load_average_start']:.2f} / "
        f"{report['load_average_end']:.2f} |",
        f"| wall time | {report['seconds']:.0f} s |",
    ]
    if report.get("shared_note"):
        lines.append(f"| what else ran | {report['shared_note']} |")
    lines += runs_and_targets(report)

    rate = summary["matmul_gflops"]
    lines += ["", "## 1. Matrix multiply (the yardstick)", "",
              "| measurement | GFLOP/s |", "|---|---|"]
    for name, r in parts.items():
        if name.startswith("matmul"):
            lines.append(f"| {name}: float32 {r['n']}³, median of "
                         f"{len(r['float32_gflops_samples'])} | {r['float32_gflops']:.1f} |")
            lines.append(f"| {name}: bfloat16 {r['n']}³ (information) | "
                         f"{r['bfloat16_gflops']:.1f} |")
    lines.append(f"| **run-wide float32 rate** (median of the samples above) | "
                 f"**{_fmt(rate, '.1f')}** |")
    for name, local in summary.get("yardsticks_gflops", {}).items():
        lines.append(f"| float32 {report['settings']['matmul_size']}³ interleaved with the "
                     f"candidates of {name} (used for its fractions) | {local:.1f} |")
    lines += ["", "The CPU time a process gets on a shared machine changes from minute to "
              "minute, so each part that reports fractions of the matmul rate measures the "
              "matmul itself in the same rounds as its candidates and divides by that."]

    for name, r in parts.items():
        if not name.startswith("inference:"):
            continue
        arch = r["arch"]
        rows = summary["inference"][arch]
        lines += ["", f"## 2. Inference: {arch} ({r['image_size']}x{r['image_size']}, "
                  f"{r['flops_per_image'] / 1e9:.2f} GFLOP/image, {r['parameters']:,} "
                  f"parameters)", "",
                  f"Batch-1 latency (median ms) and batch-{r['throughput_batch']} throughput, "
                  "each also as the fraction of the matmul rate the model's FLOPs reach "
                  f"({_fmt(r.get('matmul_gflops'), '.1f')} GFLOP/s, measured in the same "
                  "rounds). "
                  f"Agreement: against the float32 `tf.function` model on {r['agreement_images']} "
                  f"demo test images ({r['view']}), with fc8 refitted on "
                  f"{r['head_fit_images']} demo training images so the model is confident "
                  "(logistic regression on relu7; random VGG weights otherwise give "
                  "near-ties).", "",
                  "| path | batch-1 ms | vs plain Keras | b1 fraction | "
                  f"b{r['throughput_batch']} img/s | b{r['throughput_batch']} fraction | "
                  "top-1 agreement | max prob. diff | numerics |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for path, p in r["paths"].items():
            row = rows[path]
            lines.append(
                f"| {path} | {row['latency_ms']:.1f} | {_fmt(row['latency_vs_plain_keras'])} | "
                f"{_fmt(row['latency_fraction_of_matmul'])} | {row['throughput']:.1f} | "
                f"{_fmt(row['throughput_fraction_of_matmul'])} | "
                f"{row['top1_agreement']:.4f} | {row['max_probability_difference']:.2e} | "
                f"{'changed' if p['changes_numerics'] else 'float32'} |")
        lines += ["", "Paths: " + "; ".join(f"`{p}`: {PATH_DESCRIPTIONS[p]}"
                                            for p in r["paths"]) + "."]

    for name, r in parts.items():
        if not name.startswith("training:"):
            continue
        rows = summary["training"][r["arch"]]
        lines += ["", f"## 3. Training steps: {r['arch']} ({r['image_size']}x{r['image_size']},"
                  f" batch {r['batch']})", "",
                  f"Median of {r['timed_steps']} steps per mode after {r['warmup_steps']} "
                  "warm-up step(s), modes interleaved; the package's trainers (Keras model "
                  "compiled as `fer_distill.train` does, `KDModel`, `TripletModel` with a "
                  f"{r['pool']}-image pool), float32, no XLA, in-memory batches.", "",
                  "| mode | step s | images/s | vs plain | fastest / slowest step s |",
                  "|---|---|---|---|---|"]
        for mode, mr in r["modes"].items():
            steps = mr["step_seconds_samples"]
            lines.append(f"| {mode} | {mr['step_seconds']:.3f} | "
                         f"{mr['images_per_second']:.1f} | {rows[mode]['vs_plain']:.2f} | "
                         f"{min(steps):.3f} / {max(steps):.3f} |")

    mining = parts.get("mining")
    if mining:
        ms = summary["mining"]
        lines += ["", f"## 4. Triplet mining ({mining['anchors']:,} anchors, pools of "
                  f"{mining['pool']:,}, {mining['dim']}-d)", "",
                  f"Useful work {mining['useful_flops'] / 1e9:.0f} GFLOP (2·N·M·D); matmul "
                  f"rate in the same rounds {_fmt(mining.get('matmul_gflops'), '.1f')} "
                  "GFLOP/s. The "
                  f"per-anchor NumPy loop was timed on {mining['loop_subsample']} random "
                  f"anchors ({mining['loop_subsample_seconds']:.2f} s) and SCALED to all "
                  f"{mining['anchors']:,}; on that subsample it and the by_class miner disagree "
                  f"on {mining['loop_mismatches']} indices.", "",
                  "| method | seconds | fraction of matmul | speed-up over loop |",
                  "|---|---|---|---|",
                  f"| `mine_triplets_by_class`, eager | {mining['by_class_seconds']:.2f} | "
                  f"{_fmt(ms['fraction_of_matmul'])} | {ms['speedup_over_loop']:.0f} |",
                  f"| `mine_triplets` masked, XLA (2x the multiply-adds) | "
                  f"{mining['masked_xla_seconds']:.2f} | "
                  f"{_fmt(ms['masked_xla_fraction_of_matmul'])} | "
                  f"{mining['loop_seconds_scaled'] / mining['masked_xla_seconds']:.0f} |",
                  f"| per-anchor NumPy loop (scaled from {mining['loop_subsample']}) | "
                  f"{mining['loop_seconds_scaled']:.1f} | - | 1 |",
                  "", "Growth with the number of anchors (by_class, pools fixed):", "",
                  "| anchors | seconds | s per 1000 anchors |", "|---|---|---|"]
        for g, per in zip(mining["growth"], ms["growth_seconds_per_1000_anchors"]):
            lines.append(f"| {g['anchors']:,} | {g['seconds']:.2f} | {per:.3f} |")

    pipeline = parts.get("pipeline")
    if pipeline:
        ps = summary.get("pipeline", {})
        lines += ["", "## 5. Input pipeline (paired 224x224 views: one full + one "
                  "occluded per image)", "",
                  "`make_dataset(training=True)` iterated without a model, so it has both "
                  "cores; during training it shares them with the step. Ratio: pairs/s over "
                  f"the {ps.get('training_arch', '?')} plain training step's images/s "
                  f"({_fmt(ps.get('training_images_per_second'), '.1f')}).", "",
                  "| layout | images | source | batch | pairs/s | ratio to training |",
                  "|---|---|---|---|---|---|"]
        for name, layout in pipeline["layouts"].items():
            lines.append(f"| {name} ({'x'.join(map(str, layout['stored_shape']))} stored) | "
                         f"{layout['images']:,} | {layout['source']} | {layout['batch']} | "
                         f"{layout['pairs_per_second']:.0f} | "
                         f"{_fmt(ps.get('ratios', {}).get(name), '.1f')} |")

    lines += ["", "## 6. Peak resident memory of each part", "",
              "Each part ran in a fresh process; `ru_maxrss` of that process. `baseline` "
              "only imports TensorFlow and the package.", "",
              "| part | peak RSS MB | wall s |", "|---|---|---|"]
    for name, r in parts.items():
        lines.append(f"| {name} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    lines += ["", "## Closing note", ""] + [f"- {note}" for note in
                                             closing_notes(summary) + report.get("notes", [])]
    return "\n".join(lines) + "\n"


def _merge_earlier(output_dir: Path, results: dict, this_run: dict) -> tuple[dict, dict]:
    """(parts, part_runs): the earlier report's parts that this run did not measure, then this
    run's, and for each part the run (date, command, CPU, git commit) that measured it."""
    earlier_file = output_dir / JSON_FILE
    if not earlier_file.is_file():
        return results, {key: this_run for key in results}
    earlier = json.loads(earlier_file.read_text(encoding="utf-8"))
    if earlier.get("format") != FORMAT:
        raise ValueError(f"{earlier_file}: format {earlier.get('format')!r}, expected "
                         f"{FORMAT!r}; cannot merge into it")
    earlier_run = {"date": earlier["date"], "command": earlier["command"],
                   "cpu": earlier["machine"]["cpu"], "git_commit": earlier.get("git_commit")}
    earlier_runs = earlier.get("part_runs", {})
    merged, runs = {}, {}
    for key, part in earlier["parts"].items():
        if key not in results:
            merged[key], runs[key] = part, earlier_runs.get(key, earlier_run)
    for key, part in results.items():
        merged[key], runs[key] = part, this_run
    return merged, runs


def combine_parts(reports: list[dict]) -> tuple[dict, dict]:
    """(parts, part_runs) of earlier reports, later reports winning for a part; the matmul parts
    (the run-wide yardstick) are taken as a group from the last report that has any, so that
    yardstick never mixes machines. Each part keeps the run (date, command, CPU, git commit)
    that measured it."""
    parts: dict = {}
    runs: dict = {}
    for report in reports:
        if report.get("format") != FORMAT:
            raise ValueError(f"report of {report.get('date')}: format {report.get('format')!r}, "
                             f"expected {FORMAT!r}")
        run = {"date": report["date"], "command": report["command"],
               "cpu": report["machine"]["cpu"], "git_commit": report.get("git_commit")}
        if any(key.startswith("matmul") for key in report["parts"]):
            for key in [k for k in parts if k.startswith("matmul")]:
                del parts[key], runs[key]
        for key, part in report["parts"].items():
            parts[key] = part
            runs[key] = report.get("part_runs", {}).get(key, run)
    return parts, runs


def combine_reports(paths: list[str | os.PathLike], output_dir: str | os.PathLike, *,
                    command: str, notes: list[str] | None = None,
                    shared_note: str | None = None) -> dict:
    """Writes BENCHMARKS.md and benchmarks.json in `output_dir` from the parts of earlier
    reports (`combine_parts`), measuring nothing: for parts run as separate commands (e.g. an
    earlier full run plus a newer serving-only one). The header is the last report's machine
    and load."""
    if not paths:
        raise ValueError("combine_reports: no reports given")
    reports = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    parts, runs = combine_parts(reports)
    last = reports[-1]
    combined = {**last, "command": command, "parts": parts, "part_runs": runs,
                "shared_note": shared_note or last.get("shared_note"),
                "notes": list(notes or []), "combined_from": [str(p) for p in paths],
                "combined_git_commit": _git_commit()}
    combined["summary"] = summarise(parts)
    markdown = render_markdown(combined)
    output_dir = Path(output_dir)
    write_json(output_dir / JSON_FILE, combined)
    write_text(output_dir / MARKDOWN_FILE, markdown)
    return combined


def run_benchmark(s: Settings, output_dir: str | os.PathLike, *, command: str,
                  parts: list[str] | None = None, notes: list[str] | None = None,
                  jobs: int = 1, log: Callable[[str], None] = print,
                  merge: bool = False, shared_note: str | None = None) -> dict:
    """Runs every part (each in its own process), writes BENCHMARKS.md and benchmarks.json
    into `output_dir` atomically, and returns the report.

    `jobs` > 1 runs that many parts at once: for smoke tests of the quick settings only, since
    concurrent parts share the CPU and spoil each other's timings (the report says so).
    `merge` keeps the earlier report's other parts (module docstring); `shared_note` says what
    else ran on the machine meanwhile (the report prints it beside the load average).
    """
    from concurrent.futures import ThreadPoolExecutor

    output_dir = Path(output_dir)
    parts = list(parts or default_parts(s))
    keys: list[str] = []
    for part in parts:  # a part named twice (the closing matmul) is recorded as part@end
        keys.append(part if part not in keys else f"{part}@end")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()

    def one(part: str, key: str, scratch: str) -> dict:
        log(f"benchmark: {key} ...")
        result = run_part(part, s, Path(scratch), tag=key)
        log(f"benchmark: {key} done in {result['seconds']:.0f} s, peak "
            f"{result['peak_rss_mb']:.0f} MB")
        return result

    with tempfile.TemporaryDirectory(prefix="fer_distill_benchmark_") as scratch, \
            ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        futures = [pool.submit(one, part, key, scratch) for part, key in zip(parts, keys)]
        results = {key: future.result() for key, future in zip(keys, futures)}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    this_machine, commit = machine(), _git_commit()
    this_run = {"date": date, "command": command, "cpu": this_machine["cpu"],
                "git_commit": commit}
    if merge:
        results, part_runs = _merge_earlier(output_dir, results, this_run)
    else:
        part_runs = {key: this_run for key in results}
    report = {
        "format": FORMAT,
        "date": date,
        "command": command, "git_commit": commit, "machine": this_machine,
        "settings": dataclasses.asdict(s), "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0], "seconds": time.perf_counter() - started,
        "jobs": max(1, int(jobs)), "parts": results, "part_runs": part_runs,
        "shared_note": shared_note, "notes": list(notes or []),
    }
    report["summary"] = summarise(results)
    write_json(output_dir / JSON_FILE, report)
    write_text(output_dir / MARKDOWN_FILE, render_markdown(report))
    return report
