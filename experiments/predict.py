"""Predict the expressions of the faces in images, folders and videos; write a CSV.

    python -m experiments.predict --model=runs/ferplus_vgg_f_student --output=predictions.csv \
        photos/ clip.mp4
    python -m experiments.predict --model=exports/fer/1 --no_detect --output=p.csv crops/
    python -m experiments.predict --model=model.keras --view=lower_half_visible \
        --every_nth_frame=10 --annotate_dir=annotated/ --output=p.csv session.avi

Reads: --model, a run directory, fuse run, .keras/.mat file (with --view when no config.json
lies beside it), a SavedModel exported by experiments.export_savedmodel, or a TFLite directory
exported by experiments.export_tflite (their view is fixed);
then every path given: image files, folders (searched recursively for image and video files),
video files (OpenCV; frames 0, n, 2n, ... with --every_nth_frame=n).
Writes: --output, one CSV row per face (file, frame, face, x, y, w, h, status, class,
prob_<class> per class, error), atomically; with --annotate_dir, each image or sampled frame as
a JPEG with boxes and labels. Prints a summary (frames, faces, frames without a face,
unreadable files).

Faces are found with OpenCV's bundled Haar frontal-face cascade. That detector looks for the
eye region, so it fails on people wearing a VR headset, the very users of the
lower-half-visible models: crop their faces first and pass --no_detect, which treats each image
or frame as one face crop. An image or frame without a detected face gets one row with status
"no_face" and an empty box, class and probabilities; an unreadable file gets a row with status
"unreadable" and the reason in `error`, a warning, and the run goes on.
"""
from __future__ import annotations

import dataclasses
import json

from absl import app, flags, logging

from experiments import cli
from experiments.flagconfig import given_fields

FLAGS = flags.FLAGS
# allow_override: the test suite imports every binary into one process, where generic names
# (--model, --output, --view, --batch_size) would otherwise clash with other binaries' flags.
_ANY = {"allow_override": True}
flags.DEFINE_string("model", None, "Run directory, fuse run, .keras/.mat file, or an exported "
                    "SavedModel or TFLite export directory.", **_ANY)
flags.DEFINE_string("output", "predictions.csv", "CSV file to write.", **_ANY)
flags.DEFINE_string("view", None, "Occlusion view; overrides the run's config.json, required "
                    "for a bare model file, cannot differ for a SavedModel.", **_ANY)
flags.DEFINE_bool("no_detect", False, "Treat each image or frame as a face crop (no face "
                  "detection); use it for people wearing a headset.", **_ANY)
flags.DEFINE_integer("every_nth_frame", 1, "Videos: classify frames 0, n, 2n, ...", **_ANY)
flags.DEFINE_integer("batch_size", 32, "Faces per model call.", **_ANY)
flags.DEFINE_string("annotate_dir", None, "Write annotated images here.", **_ANY)
flags.DEFINE_bool("progress", True, "Show a progress bar.", **_ANY)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    model: str
    paths: tuple[str, ...]
    output: str = "predictions.csv"
    view: str | None = None
    no_detect: bool = False
    every_nth_frame: int = 1
    batch_size: int = 32
    annotate_dir: str | None = None
    progress: bool = True


def run(config: PredictConfig, detector=None) -> dict:
    """Writes the CSV the config asks for; returns the summary. `detector` replaces the Haar
    cascade (tests inject a scripted one); --no_detect wins over it."""
    from fer_distill.serving.faces import HaarFaceDetector
    from fer_distill.serving.predict import Predictor, predict_files

    if not config.paths:
        raise ValueError("give at least one image file, folder or video file")
    predictor = Predictor.load(config.model, view=config.view)
    if config.no_detect:
        detector = None
    elif detector is None:
        detector = HaarFaceDetector()
    summary = predict_files(predictor, config.paths, config.output, detector=detector,
                            batch_size=config.batch_size,
                            every_nth_frame=config.every_nth_frame,
                            annotate_dir=config.annotate_dir, progress=config.progress)
    if summary["unreadable"]:
        logging.warning("%d file(s) could not be read (rows with status 'unreadable'): %s",
                        len(summary["unreadable"]), ", ".join(summary["unreadable"]))
    return {**summary, "view": predictor.view,
            "detector": "none (--no_detect)" if detector is None else repr(detector)}


def main(argv):
    if not FLAGS.model:
        raise app.UsageError("--model is required")
    if len(argv) < 2:
        raise app.UsageError("give at least one image file, folder or video file")
    config = PredictConfig(**given_fields(PredictConfig), paths=tuple(argv[1:]))
    print(json.dumps(run(config), indent=2))


if __name__ == "__main__":
    cli.run(main)
