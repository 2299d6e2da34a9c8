"""Predict the expressions of the faces in images, folders and videos; write a CSV.

    python -m experiments.predict --model=runs/ferplus_vgg_f_student --output=predictions.csv \
        photos/ clip.mp4
    python -m experiments.predict --model=exports/fer/1 --no_detect --output=p.csv crops/
    python -m experiments.predict --model=model.keras --view=lower_half_visible \
        --every_nth_frame=10 --annotate_dir=annotated/ --output=p.csv session.avi
    python -m experiments.predict --model=exports/fer.onnx --detect_threshold=0.1 \
        --output=p.csv headset_frames/

Reads: --model, a run directory, fuse run, .keras/.mat file (with --view when no config.json
lies beside it), a SavedModel exported by experiments.export_savedmodel, a TFLite directory
exported by experiments.export_tflite, or an .onnx file from experiments.export_onnx (an
export's view is fixed);
then every path given: image files, folders (searched recursively for image and video files),
video files (OpenCV; frames 0, n, 2n, ... with --every_nth_frame=n).
Writes: --output, one CSV row per face (file, frame, face, x, y, w, h, status, crop, class,
prob_<class> per class, error), atomically; with --annotate_dir, each image or sampled frame as
a JPEG with boxes, labels and the part of each face the model's view hides darkened. Prints a
summary (frames, faces, frames without a detected face, centre-crop fallbacks, unreadable
files).

Faces are found with MediaPipe's BlazeFace (--detector=blazeface, short range; blazeface_full
for faces farther than ~2 m), which finds faces whose upper half a VR headset hides; its
confidence threshold is --detect_threshold (MediaPipe's 0.5 by default; EmoHeVRDB, recorded
from real headset wearers, used 0.1, which suits frames of one wearer but adds loose boxes in
ordinary photos). --detector=haar is OpenCV 4's Haar cascade, which looks for eyes and so misses
headset wearers. A frame in which the detector finds nothing is classified on its centre square
(--fallback=center, the default; `crop` says "center_crop") or gets a "no_face" row
(--fallback=none). --no_detect treats each image or frame as one face crop. A missing or
unreadable file gets a row with status "unreadable" and the reason in `error`, a warning, and
the run goes on. A model trained on the synthetic demo set gets a warning: its labels on real
photos mean nothing.
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
                  "detection).", **_ANY)
flags.DEFINE_enum("detector", "blazeface", ["blazeface", "blazeface_full", "haar"],
                  "Face detector: BlazeFace short range (finds faces under a headset), "
                  "BlazeFace full range, or OpenCV 4's Haar cascade (needs the eyes).", **_ANY)
flags.DEFINE_float("detect_threshold", 0.5, "BlazeFace confidence threshold (MediaPipe: 0.5; "
                   "EmoHeVRDB used 0.1 on headset wearers).", **_ANY)
flags.DEFINE_enum("fallback", "center", ["center", "none"], "When no face is found: classify "
                  "the centre square (center) or write a no_face row (none).", **_ANY)
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16", "int8", "auto"],
                  "Run or model file only: float32; bfloat16 weights; int8 weights (TFLite "
                  "dynamic range); or auto: the fastest of them on this CPU that agrees with "
                  "float32 on a probe batch (the summary says what it chose and why).", **_ANY)
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
    detector: str = "blazeface"
    detect_threshold: float = 0.5
    fallback: str = "center"
    precision: str = "float32"
    every_nth_frame: int = 1
    batch_size: int = 32
    annotate_dir: str | None = None
    progress: bool = True


def run(config: PredictConfig, detector=None) -> dict:
    """Writes the CSV the config asks for; returns the summary. `detector` replaces the one
    --detector names (tests inject a scripted one); --no_detect wins over it."""
    from fer_distill.serving.faces import center_crop, make_detector
    from fer_distill.serving.predict import Predictor, predict_files

    if not config.paths:
        raise ValueError("give at least one image file, folder or video file")
    if config.fallback not in ("center", "none"):
        raise ValueError(f"fallback must be 'center' or 'none', got {config.fallback!r}")
    predictor = Predictor.load(config.model, view=config.view, precision=config.precision)
    if config.no_detect:
        detector = None
    elif detector is None:
        detector = make_detector(config.detector, min_score=config.detect_threshold)
    fallback = center_crop if config.fallback == "center" and detector is not None else None
    summary = predict_files(predictor, config.paths, config.output, detector=detector,
                            batch_size=config.batch_size,
                            every_nth_frame=config.every_nth_frame,
                            annotate_dir=config.annotate_dir, progress=config.progress,
                            fallback=fallback)
    if summary["unreadable"]:
        logging.warning("%d file(s) could not be read (rows with status 'unreadable'): %s",
                        len(summary["unreadable"]), ", ".join(summary["unreadable"]))
    result = {**summary, "view": predictor.view,
              "detector": "none (--no_detect)" if detector is None else repr(detector)}
    if "precision" in predictor.metadata:
        result["precision"] = predictor.metadata["precision"]
    if predictor.trained_on_demo:
        result["warning"] = ("the model was trained on the synthetic demo set: its labels on "
                             "real photographs mean nothing")
    return result


def main(argv):
    if not FLAGS.model:
        raise app.UsageError("--model is required")
    if len(argv) < 2:
        raise app.UsageError("give at least one image file, folder or video file")
    config = PredictConfig(**given_fields(PredictConfig), paths=tuple(argv[1:]))
    print(json.dumps(run(config), indent=2))


if __name__ == "__main__":
    cli.run(main)
