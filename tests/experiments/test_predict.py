"""experiments/predict.py end to end through its flags: folders, a video, a corrupt file, a
SavedModel, and the default Haar detector."""
import csv
import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app
from absl.testing import flagsaver

from experiments import predict
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.occlusion import occlude
from fer_distill.models import mini

PROBS = [f"prob_{name}" for name in CLASS_NAMES]



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = mini(8, 32)
    fc8 = model.get_layer("fc8")  # spread the logits, so probabilities differ by image
    fc8.set_weights([np.random.default_rng(0).normal(0, 0.5, fc8.kernel.shape)
                     .astype(np.float32), fc8.get_weights()[1]])
    path = tmp_path_factory.mktemp("run")
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"stage": "student",
                                                  "view": "lower_half_visible"}))
    (path / "metrics.json").write_text("{}")
    return path, model


def _predict(capsys, paths, **values):
    settings = {**dict(view=None, no_detect=False, every_nth_frame=1, batch_size=4,
                       annotate_dir=None, progress=False, detector="blazeface",
                       detect_threshold=0.5, fallback="center"), **values}
    with flagsaver.flagsaver(**settings):
        predict.main(["predict", *map(str, paths)])
    return json.loads(capsys.readouterr().out)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _keras_probs(model, crops):
    x = tf.concat([tf.image.resize(c[None], [32, 32]) for c in crops], axis=0)
    return tf.nn.softmax(model(occlude(x, "lower_half_visible"))).numpy()


def _picture(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_video_and_corrupt_file_without_detection(run, tmp_path, capsys):
    path, model = run
    (tmp_path / "in" / "sub").mkdir(parents=True)
    pictures = [_picture(48, 48, 1), _picture(36, 52, 2)]
    cv2.imwrite(str(tmp_path / "in" / "a.png"), cv2.cvtColor(pictures[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "in" / "sub" / "b.png"),
                cv2.cvtColor(pictures[1], cv2.COLOR_RGB2BGR))
    (tmp_path / "in" / "sub" / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (40, 30))
    for i in range(5):
        writer.write(_picture(30, 40, 10 + i))
    writer.release()
    summary = _predict(capsys, [tmp_path / "in", video], model=str(path),
                       output=str(tmp_path / "p.csv"), no_detect=True, every_nth_frame=2,
                       annotate_dir=str(tmp_path / "ann"))
    assert summary["frames"] == 5
    assert summary["unreadable"] == [str(tmp_path / "in" / "sub" / "c.jpg")]
    assert summary["view"] == "lower_half_visible" and "no_detect" in summary["detector"]
    rows = _rows(tmp_path / "p.csv")
    assert [(r["file"].replace(str(tmp_path), ""), r["frame"], r["status"]) for r in rows] == [
        ("/in/a.png", "", "ok"), ("/in/sub/b.png", "", "ok"), ("/in/sub/c.jpg", "", "unreadable"),
        ("/clip.avi", "0", "ok"), ("/clip.avi", "2", "ok"), ("/clip.avi", "4", "ok")]
    assert "c.jpg" in rows[2]["error"]
    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    want = _keras_probs(model, pictures + [frames[0], frames[2], frames[4]])
    got = np.array([[float(r[p]) for p in PROBS] for r in rows if r["status"] == "ok"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "ann").iterdir())) == 5


def test_a_savedmodel_gives_the_same_csv(run, tmp_path, capsys):
    from fer_distill.serving.export import export_savedmodel
    from fer_distill.serving.servable import load_servable

    path, _ = run
    exported = export_savedmodel(load_servable(path), tmp_path / "m" / "1", verify=False)
    cv2.imwrite(str(tmp_path / "x.png"), _picture(40, 40, 3))
    for model, output in ((path, "run.csv"), (exported, "saved.csv")):
        _predict(capsys, [tmp_path / "x.png"], model=str(model),
                 output=str(tmp_path / output), no_detect=True)
    a, b = _rows(tmp_path / "run.csv"), _rows(tmp_path / "saved.csv")
    np.testing.assert_allclose([float(a[0][p]) for p in PROBS],
                               [float(b[0][p]) for p in PROBS], atol=1e-6)
    assert a[0]["class"] == b[0]["class"]


def test_haar_detector_finds_a_face_and_reports_empty_frames(run, tmp_path, capsys):
    from fer_distill.data.demo import generate

    path, model = run
    face = generate({"train": 1, "validation": 1, "test": 1}, seed=0)["test"]["images"][0]
    canvas = np.full((240, 320), 90, np.uint8)
    canvas[60:204, 120:264] = cv2.resize(face, (144, 144), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "1_face.png"), canvas)
    cv2.imwrite(str(tmp_path / "2_wall.png"), np.full((120, 160), 90, np.uint8))
    summary = _predict(capsys, [tmp_path / "1_face.png", tmp_path / "2_wall.png"],
                       model=str(path), output=str(tmp_path / "h.csv"), detector="haar",
                       fallback="none")
    assert "HaarFaceDetector" in summary["detector"]
    face_row, wall_row = _rows(tmp_path / "h.csv")
    assert wall_row["status"] == "no_face" and wall_row["x"] == "" and wall_row["class"] == ""
    assert face_row["status"] == "ok" and face_row["crop"] == "haar"
    x, y, w, h = (int(face_row[k]) for k in "xywh")
    assert abs(x - 120) < 20 and abs(y - 60) < 20 and abs(w - 144) < 30
    rgb = np.repeat(canvas[..., None], 3, axis=-1)
    want = _keras_probs(model, [rgb[y:y + h, x:x + w]])[0]
    np.testing.assert_allclose([float(face_row[p]) for p in PROBS], want, rtol=1e-4,
                               atol=1e-5)


def test_no_inputs_is_a_usage_error(run, capsys):
    with pytest.raises(app.UsageError, match="at least one"):
        _predict(capsys, [], model=str(run[0]), output="unused.csv")


def test_default_detector_finds_a_headset_wearers_face_that_haar_misses(run, tmp_path, capsys):
    """A real photograph (scikit-image's astronaut, from its wheel) with the upper half of the
    face blacked out: the default BlazeFace finds the face; Haar finds none, and the row falls
    back to the centre crop and says so."""
    from skimage import data

    path, _ = run
    photo = data.astronaut().copy()
    photo[45:130, 150:300] = 0  # her face is at x 177-270, y 67-160: brows to mid-nose hidden
    cv2.imwrite(str(tmp_path / "headset.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    rows = {}
    for detector in ("blazeface", "haar"):
        summary = _predict(capsys, [tmp_path / "headset.png"], model=str(path),
                           output=str(tmp_path / f"{detector}.csv"), detector=detector)
        (rows[detector],) = _rows(tmp_path / f"{detector}.csv")
        assert summary["frames"] == 1
    blaze, haar = rows["blazeface"], rows["haar"]
    assert blaze["status"] == "ok" and blaze["crop"] == "blazeface_short"
    x, y, w, h = (int(blaze[k]) for k in "xywh")
    assert abs(x + w / 2 - 223) < 20 and abs(y + h / 2 - 113) < 25 and 70 < w < 140
    assert haar["status"] == "ok" and haar["crop"] == "center_crop"
    assert (haar["x"], haar["y"], haar["w"], haar["h"]) == ("0", "0", "512", "512")
