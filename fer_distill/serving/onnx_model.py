"""An ONNX export run by ONNX Runtime: for game engines and ONNX Runtime serving stacks.

    export_onnx(servable, "fer.onnx", quantization="none" | "int8_dynamic")

converts with tf2onnx the graph the TFLite export converts: uint8 (N, H, W, 3) RGB crops of
any one size -> bilinear resize to the input size -> the view -> the network(s) -> softmax;
outputs `probabilities`, `class_id`, `embedding`, and `logits` or `decision`. The
preprocessing contract (`contract`: input_size, view, mean, class_names, input) rides in the
file's `metadata_props`. `Predictor.load("fer.onnx")` runs it (`load_runner` here).
Why (int8 on fully connected layers only, no spinning, VGG-face's memory): docs/DESIGN.md,
"Evaluation, report, serving".
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from fer_distill.atomic import atomic_path
from fer_distill.models.layers import MeanSubtraction
from fer_distill.serving.export import ServingModule, _probe_images, describe
from fer_distill.serving.tflite import _agreement, _predict_images_graph

log = logging.getLogger(__name__)

FORMAT = "fer_distill.onnx/1"
QUANTIZATIONS = ("none", "int8_dynamic")
OPSET = 17
INPUT = "images"
# Probabilities of the float32 file may differ from TensorFlow's by summation order only.
FLOAT32_TOLERANCE = 1e-5


def _require():
    try:  # why here: the optional onnx extra (setup.cfg), needed by the ONNX paths only
        import onnx  # why here: see above
        import onnxruntime  # why here: see above
        import tf2onnx  # why here: see above
    except ImportError as error:
        raise ImportError("ONNX export needs tf2onnx, onnx and onnxruntime: "
                          "pip install 'fer-distill[onnx]'") from error
    return onnx, onnxruntime, tf2onnx


def _mean_rgb(servable) -> list[list[float]]:
    means = []
    for model in servable.models:
        layer = next(layer for layer in model.layers if isinstance(layer, MeanSubtraction))
        image = np.asarray(layer.get_weights()[0], dtype=np.float64).reshape(-1, 3)
        means.append([round(float(v), 4) for v in image.mean(axis=0)])
    return means


def contract(servable) -> dict[str, str]:
    """The preprocessing contract as the string metadata_props written into the file."""
    sizes = servable.input_sizes
    means = _mean_rgb(servable)
    return {
        "input": f"{INPUT}: uint8 (N, H, W, 3) RGB, 0-255, any H and W (one size per call)",
        "input_size": ";".join(f"{h},{w}" for h, w in sizes),
        "view": str(servable.view),
        "mean": ";".join(",".join(str(v) for v in m) for m in means)
                + " (RGB, per-channel mean of the mean image the graph subtracts)",
        "class_names": ",".join(servable.class_names),
    }


def convert(servable) -> bytes:
    """The float32 ONNX model (serialised ModelProto) of `servable`'s `predict_images` graph."""
    _, _, tf2onnx = _require()

    module = ServingModule(servable)
    spec = [tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT)]
    function = tf.function(_predict_images_graph(module), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET)
    return proto.SerializeToString()


def quantize_int8_dynamic(content: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation of a float32 model's MatMul layers."""
    _require()
    from onnxruntime.quantization import QuantType, quantize_dynamic  # why here: onnx extra

    with tempfile.TemporaryDirectory(prefix="fer_distill_onnx_") as scratch:
        source, target = Path(scratch) / "float32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(content)
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
        return target.read_bytes()


class ONNXModel:
    """Runs an exported file with ONNX Runtime's CPU provider; `num_threads` defaults to the
    machine's CPU count."""

    def __init__(self, content: bytes, *, num_threads: int | None = None, source: str = ""):
        _, ort, _ = _require()
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or os.cpu_count() or 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(content, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{source or 'ONNX model'}: ONNX Runtime cannot load it: "
                             f"{error}") from error
        inputs = [i.name for i in self._session.get_inputs()]
        if inputs != [INPUT]:
            raise ValueError(f"{source or 'ONNX model'}: expected one input {INPUT!r}, found "
                             f"{inputs}; not written by fer_distill.serving.onnx_model")
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        self.metadata_props = dict(self._session.get_modelmeta().custom_metadata_map)

    def __call__(self, images) -> dict[str, np.ndarray]:
        """uint8 (N, H, W, 3) RGB crops → {output name: NumPy array}."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or (
                0 in images.shape):
            raise ValueError(f"ONNXModel: expected non-empty uint8 (N, H, W, 3) RGB images, "
                             f"got {images.dtype} {images.shape}")
        values = self._session.run(None, {INPUT: images})
        return dict(zip(self.output_names, values))


def export_onnx(servable, output: str | os.PathLike, *, quantization: str = "none") -> Path:
    """Writes `servable` as one .onnx file at `output` (atomically) and returns its path; see
    the module docstring for what the file computes and records."""
    onnx, _, _ = _require()

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output must be a .onnx file, got {output}")
    if output.is_dir():
        raise ValueError(f"ONNX output {output} is a directory")
    content = convert(servable)
    if quantization == "int8_dynamic":
        content = quantize_int8_dynamic(content)
    module = ServingModule(servable)
    images, _ = _probe_images(module.input_sizes)
    want = {k: v.numpy() for k, v in module.predict_images(tf.constant(images)).items()}
    agreement = _agreement(ONNXModel(content)(images), want)
    # why `not <=`: a NaN difference must fail too
    if quantization == "none" and not agreement["max_probability_difference"] <= FLOAT32_TOLERANCE:
        raise RuntimeError(
            f"ONNX export {output}: the float32 file's probabilities differ from the "
            f"TensorFlow graph's by {agreement['max_probability_difference']:.3g} (> "
            f"{FLOAT32_TOLERANCE}) on the probe batch; not written")
    metadata = {**describe(servable), "format": FORMAT, "quantization": quantization,
                "opset": OPSET,
                "signatures": {INPUT: "uint8 (N, H, W, 3) RGB crops"},
                "probe_agreement": agreement}
    model = onnx.load_from_string(content)
    props = {**contract(servable), "fer_distill": json.dumps(metadata, default=str)}
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "fer_distill"
    with atomic_path(output) as tmp:
        tmp.write_bytes(model.SerializeToString())
    log.info("exported %s ONNX model (%s, %.1f MB) to %s", servable.kind, quantization,
             output.stat().st_size / 1e6, output)
    return output


def read_metadata(path: str | os.PathLike) -> dict:
    """The `fer_distill` metadata of an exported .onnx file."""
    onnx, _, _ = _require()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's own
        raise ValueError(f"{path}: not an ONNX model ({error})") from error
    props = {p.key: p.value for p in model.metadata_props}
    if "fer_distill" not in props:
        raise ValueError(f"{path}: no fer_distill metadata; not written by "
                         "fer_distill.serving.onnx_model")
    metadata = json.loads(props["fer_distill"])
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def load_runner(path: str | os.PathLike, *,
                num_threads: int | None = None) -> tuple[ONNXModel, dict]:
    """(runner, metadata) of the .onnx export at `path`; `Predictor.load(path)`
    (fer_distill.serving.predict) wraps them."""
    path = Path(path)
    metadata = read_metadata(path)
    model = ONNXModel(path.read_bytes(), num_threads=num_threads, source=str(path))
    return model, metadata
