"""Export a trained model as one ONNX file, for ONNX Runtime and game engines (Unity).

    python -m experiments.export_onnx --model=runs/ferplus_vgg_f_student --output=exports/fer.onnx
    python -m experiments.export_onnx --model=runs/ferplus_vgg_face_fuse --output=exports/fused.onnx
    python -m experiments.export_onnx --model=model.keras --view=lower_half_visible \
        --quantization=int8_dynamic --output=exports/fer_int8.onnx

Reads: what experiments/export_savedmodel.py reads (a run directory, a bare .keras/.mat file
with --view, or a `fuse` run). Writes: the .onnx file --output, atomically: input `images`,
uint8 (N, H, W, 3) RGB crops of any one size; resize, view and mean subtraction inside; outputs
probabilities, class_id, embedding, and logits (decision for the fused SVM). Its metadata_props
carry the preprocessing contract (input_size, view, mean, class_names) and the full export
metadata as JSON (`fer_distill`). Prints a short summary, including the file's agreement with
the TensorFlow graph on a probe batch (a float32 file that disagrees is not written).

Needs the `onnx` extra: pip install '.[onnx]' (tf2onnx, onnx, onnxruntime). Run it from Python
with `fer_distill.serving.predict.Predictor.load(FILE)`, or `experiments.predict
--model=FILE`.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from experiments import cli, export_common

_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
export_common.define_model_flags(output_help="The .onnx file to write.")
flags.DEFINE_enum("quantization", "none", ["none", "int8_dynamic"],
                  "none: float32 (checked against TensorFlow); int8_dynamic: ONNX Runtime's "
                  "dynamic int8 quantisation (numerics change slightly).", **_ANY)


@dataclasses.dataclass(frozen=True)
class ONNXExportConfig:
    model: str
    output: str
    view: str | None = None
    kd_student: str | None = None
    triplet_student: str | None = None
    quantization: str = "none"


def run(config: ONNXExportConfig) -> dict:
    """Exports the model the config names; returns (and the binary prints) a summary."""
    from fer_distill.serving.onnx_model import export_onnx, read_metadata

    servable = export_common.load(config)
    servable.source["export_config"] = dataclasses.asdict(config)
    path = export_onnx(servable, config.output, quantization=config.quantization)
    metadata = read_metadata(path)
    return {"output": str(path), "kind": metadata["kind"], "view": metadata["view"],
            "quantization": metadata["quantization"],
            "input_sizes": metadata["input_sizes"],
            "megabytes": round(path.stat().st_size / 1e6, 2),
            "probe_agreement": metadata["probe_agreement"]}


main = export_common.main_of(ONNXExportConfig, run)


if __name__ == "__main__":
    cli.run(main)
