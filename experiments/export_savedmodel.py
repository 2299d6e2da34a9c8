"""Export a trained model as a SavedModel for TF Serving.

    python -m experiments.export_savedmodel --model=runs/ferplus_vgg_f_student \
        --output=exports/fer/1
    python -m experiments.export_savedmodel --model=model.keras --view=lower_half_visible \
        --output=exports/fer/1
    python -m experiments.export_savedmodel --model=runs/ferplus_vgg_f_fuse --output=exports/fused/1

Reads: a run directory (RUN/model.keras and the view in RUN/config.json), a bare .keras or
MatConvNet .mat file (then --view is required), or a `fuse` run (RUN/fusion/ and the two
students named in its config.json, or given with --kd_student and --triplet_student).
Writes: the SavedModel directory --output, atomically (TF Serving wants MODEL_DIR/<version>),
with `assets/metadata.json` recording the view, classes, provenance and this command's
settings; prints a short summary. Serve it with

    docker run -p 8501:8501 -v $PWD/exports/fer:/models/fer -e MODEL_NAME=fer tensorflow/serving
    curl -d '{"instances": [{"b64": "<base64 of a JPEG face crop>"}]}' \
        localhost:8501/v1/models/fer:predict

`--precision=bfloat16` stores the networks' weights in bfloat16 (fer_distill/serving/
precision.py): several times faster on CPUs with AMX or AVX512-BF16, at a small change in the
numbers (BENCHMARKS.md measures both and their top-1 agreement); float32 is the default.

`serving_default` takes encoded JPEG/PNG face crops of any size and returns `probabilities`,
`class_id`, `class_name`, `embedding` and `logits` (`decision` for the fused SVM, whose
`probabilities` are a softmax of SVM scores, not calibrated probabilities); `predict_images`
takes uint8 (N, H, W, 3) crops. See fer_distill/serving/export.py.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from experiments import cli, export_common

_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
export_common.define_model_flags(output_help="SavedModel directory to write, e.g. exports/fer/1.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "Weights of the exported networks: float32 (exact) or bfloat16 (faster on "
                  "CPUs with AMX/AVX512-BF16; numbers change slightly).", **_ANY)
flags.DEFINE_bool("verify", True, "Reload the written model and check both signatures "
                  "against the in-memory model before moving it into place.", **_ANY)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    model: str
    output: str
    view: str | None = None
    kd_student: str | None = None
    triplet_student: str | None = None
    precision: str = "float32"
    verify: bool = True


def run(config: ExportConfig) -> dict:
    """Exports the model the config names; returns (and the binary prints) a summary."""
    from fer_distill.serving.export import export_savedmodel, read_metadata

    servable = export_common.load(config)
    if config.precision == "bfloat16":
        from fer_distill.serving.precision import bfloat16_servable

        servable = bfloat16_servable(servable)
    elif config.precision != "float32":
        raise ValueError(f"precision must be float32 or bfloat16, got {config.precision!r}")
    servable.source["export_config"] = dataclasses.asdict(config)
    path = export_savedmodel(servable, config.output, verify=config.verify)
    metadata = read_metadata(path)
    return {"output": str(path), "kind": metadata["kind"], "view": metadata["view"],
            "precision": config.precision,
            "input_sizes": metadata["input_sizes"],
            "embedding_size": metadata["embedding_size"]}


main = export_common.main_of(ExportConfig, run)


if __name__ == "__main__":
    cli.run(main)
