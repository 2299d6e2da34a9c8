"""Export a trained model as a TFLite (LiteRT) file for fast one-face-at-a-time CPU inference.

    python -m experiments.export_tflite --model=runs/ferplus_vgg_f_student \
        --output=exports/fer_tflite [--quantization=dynamic_range|none|float16]
    python -m experiments.export_tflite --model=model.keras --view=lower_half_visible \
        --output=exports/fer_tflite

Reads: what experiments/export_savedmodel.py reads (a run directory, a bare .keras/.mat file
with --view, or a `fuse` run). Writes: the directory --output, atomically, holding
`model.tflite` (uint8 (N, H, W, 3) RGB crops in; resize, view and network inside; outputs
probabilities, class_id, embedding, logits or decision) and `metadata.json` (view, classes,
quantization, and the file's agreement with the float32 graph on a probe batch); prints a
short summary. Run it from Python with `fer_distill.serving.predict.Predictor.load(DIR)`, a
`Predictor` that `predict_files` accepts.

Why: with the default `dynamic_range` (int8 weights, XNNPACK) VGG-f answers for one face in
about a sixth of the time a plain Keras call takes (a third of a `tf.function`'s), at 99 %+
top-1 agreement with float32 (BENCHMARKS.md measures both on its machine). `none` keeps
float32 numerics up to rounding.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from experiments import cli, export_common

_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
export_common.define_model_flags(
    output_help="Directory to write (model.tflite + metadata.json).")
flags.DEFINE_enum("quantization", "dynamic_range", ["dynamic_range", "none", "float16"],
                  "dynamic_range: int8 weights (fastest, numerics change slightly); none: "
                  "float32; float16: float16 weights (half the file).", **_ANY)


@dataclasses.dataclass(frozen=True)
class TFLiteExportConfig:
    model: str
    output: str
    view: str | None = None
    kd_student: str | None = None
    triplet_student: str | None = None
    quantization: str = "dynamic_range"


def run(config: TFLiteExportConfig) -> dict:
    """Exports the model the config names; returns (and the binary prints) a summary."""
    from fer_distill.serving.tflite import MODEL_FILE, export_tflite, read_metadata

    servable = export_common.load(config)
    servable.source["export_config"] = dataclasses.asdict(config)
    path = export_tflite(servable, config.output, quantization=config.quantization)
    metadata = read_metadata(path)
    return {"output": str(path), "kind": metadata["kind"], "view": metadata["view"],
            "quantization": metadata["quantization"],
            "megabytes": round((path / MODEL_FILE).stat().st_size / 1e6, 2),
            "probe_agreement": metadata["probe_agreement"]}


main = export_common.main_of(TFLiteExportConfig, run)


if __name__ == "__main__":
    cli.run(main)
