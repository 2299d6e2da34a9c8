"""The pictures a run and a report come with, and the report's captions: each run's training
curves, the links and captions of the report's figures, and what its table columns mean.

    write_curves(history, RUN / CURVES_FILE)   # RUN/metrics.json["history"]: one dict an epoch
    markdown(report["figures"])                # the report's "Figures" section (lines)

The curves are drawn on a bare Agg canvas (no pyplot state, no display) and written atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fer_distill.atomic import atomic_path

CURVES_FILE = "training_curves.png"  # in the run directory, beside metrics.json
GRADCAM_FILE = "figure3_gradcam.png"  # in the report directory (fer_distill.reproduce)

GRADCAM_CAPTION = (
    "Grad-CAM (the paper's Figure 3): where the model's evidence for the class it predicts lies, "
    "red = most. Heat on the black half is real: the network takes the black pixels as input like "
    "any others, so it can read the position of the edge, and the contrast at the edge, as "
    "evidence. Heat along the borders comes from the zero padding of the convolutions, which the "
    "network also sees as an edge. Grad-CAM is coarse: its map has the resolution of the last "
    "convolution, upsampled.")
CURVES_CAPTION = (
    "Training curves of each run: loss (left; the extra terms of the distillation losses when "
    "logged) and accuracy (right), on the training batches (solid) and the validation split "
    "(dashed), per epoch.")

# What the report's table columns mean (printed under each table).
DELTA_PAPER = (
    "Test faces: the part of the face the model sees at test time. paper: the accuracy the paper "
    "reports; ours: this reproduction's, from its own test predictions; Δ = ours − paper, in "
    "points.")
DELTA_STAND_IN = (
    "Test faces: the part of the face the model sees at test time. The paper column is another "
    "data set and network, so Δ = ours − that column says nothing about the reproduction; compare "
    "the ours column down the rows instead (the distilled students against the student baseline "
    "[1]).")
MCNEMAR_COLUMNS = (
    "Both models on the same test images: b = images the student baseline [1] gets right and this "
    "model wrong, c = the reverse (images both get right, or both wrong, do not count); p = the "
    "chance of a split of b + c at least this uneven if the two models were equally good; † = p < "
    "{alpha} and c > b.")

_SKIP = ("epoch", "learning_rate", "lr")


def _series(history: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    names: list[str] = []
    for entry in history:
        names += [k for k in entry if k not in names and k not in _SKIP]
    return {name: [_number(entry.get(name)) for entry in history] for name in names}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def write_curves(history: Sequence[Mapping[str, Any]], output: str | os.PathLike, *,
                 title: str = "") -> Path | None:
    """Loss and accuracy (train solid, validation dashed) per epoch as a PNG at `output`;
    None (nothing written) for an empty history."""
    if not history:
        return None
    # why here: matplotlib takes seconds to import and only this function needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why here: as above
    from matplotlib.figure import Figure  # why here: as above
    from matplotlib.ticker import MaxNLocator  # why here: as above

    series = _series(history)
    epochs = [int(entry.get("epoch", i + 1)) for i, entry in enumerate(history)]
    bases = list(dict.fromkeys(name.removeprefix("val_") for name in series))
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    loss_axis, accuracy_axis = fig.subplots(1, 2)
    for name, values in series.items():
        base = name.removeprefix("val_")  # a term and its validation value share a colour
        axis = accuracy_axis if "acc" in base else loss_axis
        axis.plot(epochs, values, linestyle="--" if name.startswith("val_") else "-",
                  color=f"C{bases.index(base) % 10}", marker="." if len(epochs) < 20 else None,
                  label=name)
    for axis, label in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    # why not tight_layout: it doubles the drawing time, paid once per training run
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.22)
    output = Path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return output


def find(run_dirs: Iterable[tuple[str, str | os.PathLike]],
         output: str | os.PathLike | None) -> dict[str, Any]:
    """The report's "figures" entry: {"curves": [{"label", "path"}], "gradcam": path or None}
    for the (label, run directory) pairs whose curves exist, paths relative to `output` (the
    report's directory) when it is given."""
    def shown(path: Path) -> str:
        return os.path.relpath(path, output) if output else str(path)

    curves = []
    for label, run_dir in run_dirs:
        path = Path(run_dir) / CURVES_FILE
        if path.is_file():
            curves.append({"label": label, "path": shown(path)})
    gradcam = Path(output) / GRADCAM_FILE if output else None
    return {"curves": curves,
            "gradcam": shown(gradcam) if gradcam is not None and gradcam.is_file() else None}


def markdown(figures: Mapping[str, Any] | None) -> list[str]:
    """The report's "Figures" section as Markdown lines (none when there is no figure)."""
    if not figures or not (figures.get("curves") or figures.get("gradcam")):
        return []
    lines = ["## Figures", ""]
    if figures.get("gradcam"):
        lines += [f"![Grad-CAM]({figures['gradcam']})", "", GRADCAM_CAPTION, ""]
    if figures.get("curves"):
        lines += [CURVES_CAPTION, ""]
        lines += [f"- {c['label']}: [{c['path']}]({c['path']})" for c in figures["curves"]]
        lines.append("")
    return lines
