"""A LiteRT (TFLite) export run by XNNPACK: the fast path for one face at a time on a CPU.

    export_tflite(servable, "DIR", quantization="dynamic_range" | "none" | "float16")

writes, atomically, DIR/model.tflite (the SavedModel's `predict_images` graph: uint8 RGB crops
of any one size -> resize, view, network(s), softmax; the same outputs but `class_name`) and
DIR/metadata.json (the export's metadata, `quantization`, the probe agreement with float32).
`Predictor.load(DIR)` runs it (`load_runner` here). Why TFLite, and what each quantisation
changes: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fer_distill.atomic import atomic_path, write_json
from fer_distill.serving import preprocess
from fer_distill.serving.export import ServingModule, _probe_images, describe

log = logging.getLogger(__name__)

FORMAT = "fer_distill.tflite/1"
MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
SIGNATURE = "predict_images"
QUANTIZATIONS = ("none", "dynamic_range", "float16")
# Probabilities of the float32 file may differ from TensorFlow's only by summation order.
FLOAT32_TOLERANCE = 1e-5


def _predict_images_graph(module):
    """`module.predict_images` as TFLite can take it: float resize, no empty-batch cond, no
    string output."""

    def predict_images(images):
        # why the cast first: TFLite's RESIZE_BILINEAR takes float input only; converting
        # uint8 to float32 is exact, so the resize gives what `preprocess.resize` gives.
        pixels = tf.cast(images, tf.float32)
        sizes = dict.fromkeys(module.input_sizes)
        # why `outputs` and not the signatures: they wrap the graph in a tf.cond for empty
        # requests, which TFLite would have to carry; TFLiteModel rejects an empty batch in
        # Python instead.
        outputs = dict(module.outputs({size: preprocess.resize(pixels, size)
                                        for size in sizes}))
        outputs.pop("class_name")
        return outputs

    return predict_images


def convert(servable, *, quantization: str = "dynamic_range") -> bytes:
    """The TFLite flatbuffer of `servable`'s `predict_images` graph (see the module docstring).

    The graph is written as a SavedModel by Keras' `ExportArchive`, which records the
    networks' weights so that the converter freezes them into constants (from a plain
    `tf.saved_model.save` of the module it keeps them as variables nothing initialises, and
    the file computes NaN).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    module = ServingModule(servable)
    archive = keras.export.ExportArchive()
    for network in module.networks:
        archive.track(network)
    if getattr(module, "fusion_svm", None) is not None:
        archive.track(module.fusion_svm)
    archive.add_endpoint(SIGNATURE, _predict_images_graph(module), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    with tempfile.TemporaryDirectory(prefix="fer_distill_tflite_") as scratch:
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=[SIGNATURE])
        if quantization == "dynamic_range":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


class TFLiteModel:
    """Runs a converted `predict_images` flatbuffer with the XNNPACK delegate.

    `num_threads` defaults to the machine's CPU count. The interpreter is resized when a batch
    of another shape arrives (XNNPACK re-plans once per new shape). Not thread-safe: one
    interpreter per thread.
    """

    def __init__(self, content: bytes, *, num_threads: int | None = None, source: str = ""):
        with warnings.catch_warnings():
            # why: TF 2.21 warns that tf.lite.Interpreter moves to the ai_edge_litert package;
            # it is still the interpreter TensorFlow ships, with XNNPACK applied by default.
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(
                model_content=content, num_threads=num_threads or os.cpu_count())
        signatures = self._interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ValueError(f"{source or 'TFLite model'}: no {SIGNATURE!r} signature (found "
                             f"{sorted(signatures)}); not written by fer_distill.serving.tflite")
        self._runner = self._interpreter.get_signature_runner(SIGNATURE)
        self.output_names = tuple(signatures[SIGNATURE]["outputs"])

    def __call__(self, images) -> dict[str, np.ndarray]:
        """uint8 (N, H, W, 3) RGB crops → {output name: NumPy array}."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or (
                0 in images.shape):
            raise ValueError(f"TFLiteModel: expected non-empty uint8 (N, H, W, 3) RGB images, got "
                             f"{images.dtype} {images.shape}")
        return {name: np.asarray(value) for name, value in self._runner(images=images).items()}


def _agreement(got: dict, want: dict) -> dict:
    probabilities = np.asarray(want["probabilities"])
    return {
        "top1_agreement": float(np.mean(np.asarray(got["class_id"])
                                        == np.asarray(want["class_id"]))),
        "max_probability_difference": float(np.max(np.abs(
            np.asarray(got["probabilities"]) - probabilities))),
        "images": int(len(probabilities)),
    }


def export_tflite(servable, output: str | os.PathLike, *,
                  quantization: str = "dynamic_range") -> Path:
    """Writes `servable` as DIR/model.tflite + DIR/metadata.json (atomically); returns DIR.

    Before the directory is moved into place the file is run on a probe batch and compared
    with the in-memory float32 graph: a "none" (float32) file must agree within
    `FLOAT32_TOLERANCE` or nothing is written; for the quantised variants the agreement is
    recorded in metadata.json (`probe_agreement`).
    """
    output = Path(output)
    if output.exists() and not (output / MODEL_FILE).is_file() and (
            not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"TFLite output {output} exists and is not a TFLite export; refusing "
                         "to replace it")
    content = convert(servable, quantization=quantization)
    module = ServingModule(servable)
    images, _ = _probe_images(module.input_sizes)
    want = {k: v.numpy() for k, v in module.predict_images(tf.constant(images)).items()}
    got = TFLiteModel(content)(images)
    agreement = _agreement(got, want)
    # why `not <=`: a NaN difference must fail too
    if quantization == "none" and not agreement["max_probability_difference"] <= FLOAT32_TOLERANCE:
        raise RuntimeError(
            f"TFLite export {output}: the float32 file's probabilities differ from the "
            f"TensorFlow graph's by {agreement['max_probability_difference']:.3g} (> "
            f"{FLOAT32_TOLERANCE}) on the probe batch; not written")
    metadata = {**describe(servable), "format": FORMAT, "quantization": quantization,
                "signatures": {SIGNATURE: "images: uint8 (N, H, W, 3) RGB crops"},
                "probe_agreement": agreement}
    with atomic_path(output, directory=True) as tmp:
        (tmp / MODEL_FILE).write_bytes(content)
        write_json(tmp / METADATA_FILE, metadata)
    log.info("exported %s TFLite model (%s, %.1f MB) to %s", servable.kind, quantization,
             len(content) / 1e6, output)
    return output


def read_metadata(path: str | os.PathLike) -> dict:
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {METADATA_FILE}; not a TFLite export written by "
                                "fer_distill.serving.tflite")
    metadata = json.loads(file.read_text(encoding="utf-8"))
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{file}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def load_runner(path: str | os.PathLike, *,
                num_threads: int | None = None) -> tuple[TFLiteModel, dict]:
    """(runner, metadata) of the TFLite export at `path`; `Predictor.load(path)`
    (fer_distill.serving.predict) wraps them."""
    path = Path(path)
    metadata = read_metadata(path)
    model_file = path / MODEL_FILE
    if not model_file.is_file():
        raise FileNotFoundError(f"{path}: no {MODEL_FILE}")
    model = TFLiteModel(model_file.read_bytes(), num_threads=num_threads,
                        source=str(model_file))
    return model, metadata
