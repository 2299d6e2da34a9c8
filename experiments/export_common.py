"""What the export binaries (export_savedmodel, export_tflite, export_onnx) share: the flags
that name the model to export, loading it, and `main`.

    export_common.define_model_flags(output_help="The .onnx file to write.")
    main = export_common.main_of(ONNXExportConfig, run)

Each binary's config dataclass starts with the fields `model`, `output`, `view`, `kd_student`
and `triplet_student`; its own settings (precision, quantisation) follow.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from experiments.flagconfig import given_fields

_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"


def define_model_flags(*, output_help: str) -> None:
    """Defines --model, --output, --view, --kd_student, --triplet_student, owned by the calling
    binary (so its --help lists them)."""
    caller = sys._getframe(1).f_globals.get("__name__", "")
    module = {"module_name": sys.argv[0] if caller == "__main__" else caller}
    flags.DEFINE_string("model", None, "Run directory, fuse run, or .keras/.mat model file.",
                        **_ANY, **module)
    flags.DEFINE_string("output", None, output_help, **_ANY, **module)
    flags.DEFINE_string("view", None, "Occlusion view (full, lower_half_visible, "
                        "upper_half_visible, a mask name or mask file); overrides the run's "
                        "config.json, required for a bare model file.", **_ANY, **module)
    flags.DEFINE_string("kd_student", None, "Fusion only: the KD student (run directory or "
                        ".keras), instead of the one named in the fuse run's config.json.",
                        **_ANY, **module)
    flags.DEFINE_string("triplet_student", None, "Fusion only: the triplet student (run "
                        "directory or .keras).", **_ANY, **module)


def load(config):
    """The servable `config.model` names (fer_distill.serving.servable.load_servable)."""
    from fer_distill.serving.servable import load_servable

    return load_servable(config.model, view=config.view, kd_student=config.kd_student,
                         triplet_student=config.triplet_student)


def main_of(config_class, run):
    """The binary's `main`: the config from the flags that were given, `run`, the summary."""
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if not flags.FLAGS.model or not flags.FLAGS.output:
            raise app.UsageError("--model and --output are required")
        print(json.dumps(run(config_class(**given_fields(config_class))), indent=2))
    return main
