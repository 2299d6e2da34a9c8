"""Grad-CAM figure (the paper's Figure 3) for any model and faces.

    python -m experiments.gradcam --model=runs/ferplus_vgg_f_fuse --data=data/ferplus \
        --split=test --indices=3,17,42,99 --output=figures/gradcam.png
    python -m experiments.gradcam --model=model.keras --view=lower_half_visible \
        --images=me.png,you.jpg --output=gradcam.png

Reads: --model (run directory, fuse run, or .keras/.mat with --view) and either examples of a
prepared data set (--data, --split, --indices; their true labels are shown) or face-crop image
files (--images).
Writes: --output, one PNG (atomically): per example a column with the full face, the face as
the model sees it (its view), the Grad-CAM map and the map over the seen face, captioned with
the predicted (and true) label. The map is taken at the last conv layer after its ReLU (VGG-f
relu5, VGG-face relu5_3, mini relu2; --layer overrides). For the fused SVM it explains the fused
decision through both students (fer_distill/explain/gradcam.py says how).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import app, flags

from experiments import cli
from experiments.flagconfig import given_fields

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process, where generic names
# (--model, --data, --split, --output) would otherwise clash with other binaries' flags.
_ANY = {"allow_override": True}
flags.DEFINE_string("model", None, "Run directory, fuse run, or .keras/.mat model file.", **_ANY)
flags.DEFINE_string("view", None, "Occlusion view; overrides the run's config.json, required "
                    "for a bare model file.", **_ANY)
flags.DEFINE_string("data", None, "Prepared data set directory.", **_ANY)
flags.DEFINE_string("split", "test", "Split of --data: train, validation or test.", **_ANY)
flags.DEFINE_list("indices", ["0", "1", "2", "3"], "Rows of the split to explain.", **_ANY)
flags.DEFINE_list("images", None, "Face-crop image files to explain (instead of --data).",
                  **_ANY)
flags.DEFINE_enum("explain", "predicted", ["predicted", "true"],
                  "Class to explain: the predicted one, or the true label (--data only).",
                  **_ANY)
flags.DEFINE_string("layer", None, "Feature layer (default: the last conv layer's ReLU).",
                    **_ANY)
flags.DEFINE_string("output", None, "PNG file to write.", **_ANY)


@dataclasses.dataclass(frozen=True)
class GradCAMConfig:
    model: str
    output: str
    view: str | None = None
    data: str | None = None
    split: str = "test"
    indices: tuple[int, ...] = (0, 1, 2, 3)
    images: tuple[str, ...] | None = None
    explain: str = "predicted"
    layer: str | None = None

    def check(self) -> None:
        if (self.data is None) == (self.images is None):
            raise ValueError("give exactly one of --data (with --split, --indices) or --images")
        if self.explain not in ("predicted", "true"):
            raise ValueError(f"--explain must be 'predicted' or 'true', got {self.explain!r}")
        if self.explain == "true" and self.data is None:
            raise ValueError("--explain=true needs --data (its labels)")


def run(config: GradCAMConfig) -> Path:
    """Writes the figure the config asks for and returns its path."""
    import numpy as np

    from fer_distill.explain.gradcam import explain, figure
    from fer_distill.serving.servable import load_servable

    config.check()
    servable = load_servable(config.model, view=config.view)
    labels = None
    if config.data is not None:
        from fer_distill.data.prepared import read_prepared

        prepared = read_prepared(config.data)
        count = prepared.count(config.split)
        bad = [i for i in config.indices if not 0 <= i < count]
        if bad or not config.indices:
            raise ValueError(f"--indices must lie in [0, {count}) for split {config.split!r} "
                             f"of {config.data}, got {list(config.indices)}")
        if tuple(prepared.class_names) != tuple(servable.class_names):
            raise ValueError(f"{config.data} has classes {prepared.class_names}, the model "
                             f"{servable.class_names}")
        indices = list(config.indices)
        images = [np.asarray(prepared.images(config.split)[i]) for i in indices]
        labels = prepared.labels(config.split)[indices]
    else:
        from fer_distill.serving.predict import read_image

        images = [read_image(Path(path)) for path in config.images]
    class_index = labels if config.explain == "true" else None
    layers = [config.layer] * len(servable.models) if config.layer else None
    explanation = explain(servable, images, class_index, layers=layers)
    title = (f"{Path(config.model).name}: Grad-CAM at {', '.join(explanation.gradcam.layers)}, "
             f"view {explanation.view}")
    return figure(explanation, config.output, servable.class_names, labels, title=title)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.model or not FLAGS.output:
        raise app.UsageError("--model and --output are required")
    values = given_fields(GradCAMConfig)
    if "indices" in values:
        try:
            values["indices"] = tuple(int(i) for i in values["indices"])
        except ValueError:
            raise app.UsageError(f"--indices must be integers, got {FLAGS.indices}") from None
    if values.get("images"):
        values["images"] = tuple(values["images"])
    config = GradCAMConfig(**values)
    print(run(config))


if __name__ == "__main__":
    cli.run(main)
