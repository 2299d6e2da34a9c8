"""Predictions CSV for images, folders and videos equals the model's own predictions."""
import csv

import cv2
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.occlusion import occlude
from fer_distill.models import embedding_model
from fer_distill.serving.export import export_savedmodel
from fer_distill.serving.predict import Predictor, csv_columns, predict_files
from fer_distill.serving.servable import load_servable

PROBS = [f"prob_{name}" for name in CLASS_NAMES]


def _picture(h, w, seed):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, h * w).reshape(h, w, 1) * rng.uniform(50, 255, (1, 1, 3))
    return np.clip(ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def _save(path, rgb, **params):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _keras_probs(model, crops, view="lower_half_visible"):
    """The model's own answer: pipeline-style resize, the view, the Keras model."""
    inputs = tf.concat([tf.image.resize(c[None], [32, 32]) for c in crops], axis=0)
    logits = embedding_model(model)(occlude(inputs, view))["logits"]
    return tf.nn.softmax(logits).numpy()


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def _probs(row):
    return np.array([float(row[p]) for p in PROBS])


@pytest.fixture(scope="module")
def predictor(student):
    return Predictor.load(student[0])


def test_keras_and_savedmodel_predictors_agree(student, predictor, tmp_path):
    run, model = student
    served = Predictor.load(export_savedmodel(load_servable(run), tmp_path / "m" / "1",
                                              verify=False))
    assert served.view == predictor.view == "lower_half_visible"
    assert served.class_names == CLASS_NAMES
    same = [_picture(40, 30, i) for i in range(3)]
    mixed = [_picture(40, 30, 0), _picture(25, 61, 1), _picture(32, 32, 2)]
    for crops in (same, mixed):
        a, b = predictor(crops), served(crops)
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)
        np.testing.assert_allclose(a["probabilities"], _keras_probs(model, crops),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot run with view 'full'"):
        Predictor.load(tmp_path / "m" / "1", view="full")
    with pytest.raises(ValueError, match=r"crop 1: expected a non-empty uint8"):
        predictor([same[0], same[1].astype(np.float32)])


def test_folder_of_crops(student, predictor, tmp_path):
    _, model = student
    folder = tmp_path / "faces"
    pictures = {"a.png": _picture(48, 48, 1), "sub/b.png": _picture(30, 41, 2),
                "sub/deeper/c.bmp": _picture(64, 64, 3)}
    for name, rgb in pictures.items():
        _save(folder / name, rgb)
    (folder / "notes.txt").write_text("not an image, skipped in a folder")
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    _save(tmp_path / "single.jpg", _picture(50, 40, 4))
    summary = predict_files(predictor, [folder, tmp_path / "single.jpg"],
                            tmp_path / "out.csv", batch_size=2)
    rows = _read_csv(tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="") as f:
        assert next(csv.reader(f)) == csv_columns(CLASS_NAMES)
    files = [r["file"] for r in rows]
    assert files == [str(folder / "a.png"), str(folder / "sub" / "b.png"),
                     str(folder / "sub" / "broken.png"), str(folder / "sub/deeper/c.bmp"),
                     str(tmp_path / "single.jpg")]
    broken = rows[2]
    assert broken["status"] == "unreadable" and "broken.png" in broken["error"]
    assert broken["class"] == "" and broken[PROBS[0]] == ""
    assert summary["unreadable"] == [str(folder / "sub" / "broken.png")]
    good = [r for r in rows if r["status"] == "ok"]
    crops = [pictures["a.png"], pictures["sub/b.png"], pictures["sub/deeper/c.bmp"],
             cv2.cvtColor(cv2.imread(str(tmp_path / "single.jpg")), cv2.COLOR_BGR2RGB)]
    want = _keras_probs(model, crops)
    np.testing.assert_allclose(np.stack([_probs(r) for r in good]), want, rtol=1e-4,
                               atol=1e-5)
    assert [r["class"] for r in good] == [CLASS_NAMES[i] for i in want.argmax(axis=1)]
    assert [(r["x"], r["y"], r["w"], r["h"]) for r in good] == [
        ("0", "0", "48", "48"), ("0", "0", "41", "30"), ("0", "0", "64", "64"),
        ("0", "0", "40", "50")]
    assert all(r["frame"] == "" and r["face"] == "0" for r in good)


def _write_video(path, frames, fps=10):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def _decoded_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_video_every_nth_frame(student, predictor, tmp_path):
    _, model = student
    video = tmp_path / "clip.avi"
    _write_video(video, [_picture(40, 48, 10 + i) for i in range(7)])
    decoded = _decoded_frames(video)
    assert len(decoded) == 7
    summary = predict_files(predictor, [video], tmp_path / "video.csv", every_nth_frame=3,
                            annotate_dir=tmp_path / "annotated")
    rows = _read_csv(tmp_path / "video.csv")
    assert [r["frame"] for r in rows] == ["0", "3", "6"] and summary["frames"] == 3
    want = _keras_probs(model, [decoded[0], decoded[3], decoded[6]])
    np.testing.assert_allclose(np.stack([_probs(r) for r in rows]), want, rtol=1e-4,
                               atol=1e-5)
    written = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert written == [f"clip.frame{i:06d}.jpg" for i in (0, 3, 6)]
    assert cv2.imread(str(tmp_path / "annotated" / written[0])).shape == (40, 48, 3)


def test_an_injected_detector_drives_boxes_crops_and_no_face_rows(student, predictor,
                                                                  tmp_path):
    _, model = student
    photo, empty = _picture(48, 60, 20), _picture(30, 30, 21)
    _save(tmp_path / "in" / "1_photo.png", photo)
    _save(tmp_path / "in" / "2_empty.png", empty)
    script = {48: [(2, 3, 20, 18), (40, 30, 40, 40)], 30: []}  # by image height
    calls = []

    def detector(image):
        calls.append(image.shape)
        return script[image.shape[0]]

    outputs = {}
    for batch_size in (2, 32):
        outputs[batch_size] = tmp_path / f"faces_{batch_size}.csv"
        summary = predict_files(predictor, [tmp_path / "in"], outputs[batch_size],
                                detector=detector, batch_size=batch_size,
                                annotate_dir=tmp_path / "ann")
    assert calls == [(48, 60, 3), (30, 30, 3)] * 2
    assert summary == {"output": str(outputs[32]), "frames": 2, "faces": 2, "no_face": 1,
                       "fallback": 0,
                       "unreadable": []}
    assert outputs[2].read_text() == outputs[32].read_text()
    rows = _read_csv(outputs[32])
    assert [(r["face"], r["x"], r["y"], r["w"], r["h"], r["status"]) for r in rows] == [
        ("0", "2", "3", "20", "18", "ok"),
        ("1", "40", "30", "20", "18", "ok"),  # clipped to the 60x48 image
        ("", "", "", "", "", "no_face")]
    assert rows[2]["class"] == "" and all(rows[2][p] == "" for p in PROBS)
    want = _keras_probs(model, [photo[3:21, 2:22], photo[30:48, 40:60]])
    np.testing.assert_allclose(np.stack([_probs(r) for r in rows[:2]]), want, rtol=1e-4,
                               atol=1e-5)
    annotated = cv2.imread(str(tmp_path / "ann" / "1_photo.jpg"))
    assert annotated is not None and annotated.shape == (48, 60, 3)
    assert (tmp_path / "ann" / "2_empty.jpg").is_file()


def test_inputs_are_checked_before_any_work(predictor, tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found: .*missing.png"):
        predict_files(predictor, [tmp_path / "missing.png"], tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image or video files found"):
        predict_files(predictor, [tmp_path / "empty"], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="every_nth_frame must be >= 1"):
        predict_files(predictor, [tmp_path], tmp_path / "x.csv", every_nth_frame=0)
    assert not (tmp_path / "x.csv").exists()


def test_an_unreadable_video_is_a_row(predictor, tmp_path):
    (tmp_path / "fake.mp4").write_bytes(b"this is not a video")
    _save(tmp_path / "ok.png", _picture(32, 32, 0))
    summary = predict_files(predictor, [tmp_path / "fake.mp4", tmp_path / "ok.png"],
                            tmp_path / "out.csv")
    rows = _read_csv(tmp_path / "out.csv")
    assert [r["status"] for r in rows] == ["unreadable", "ok"]
    assert "fake.mp4" in rows[0]["error"]
    assert summary["unreadable"] == [str(tmp_path / "fake.mp4")]


def test_missing_inputs_are_rows_and_the_rest_is_predicted(predictor, tmp_path):
    _save(tmp_path / "ok.png", _picture(32, 32, 0))
    summary = predict_files(predictor, [tmp_path / "gone.jpg", tmp_path / "ok.png"],
                            tmp_path / "out.csv")
    rows = _read_csv(tmp_path / "out.csv")
    assert [(r["status"], r["crop"]) for r in rows] == [("unreadable", ""), ("ok", "whole_image")]
    assert rows[0]["error"] == f"{tmp_path / 'gone.jpg'}: input not found"
    assert summary["unreadable"] == [str(tmp_path / "gone.jpg")]


def test_fallback_crops_the_centre_and_says_so(student, predictor, tmp_path):
    from fer_distill.serving.faces import center_crop

    _, model = student
    photo = _picture(30, 50, 3)
    _save(tmp_path / "wide.png", photo)

    def finds_nothing(image):
        return []

    finds_nothing.name = "scripted"
    summary = predict_files(predictor, [tmp_path / "wide.png"], tmp_path / "out.csv",
                            detector=finds_nothing, fallback=center_crop)
    (row,) = _read_csv(tmp_path / "out.csv")
    assert (row["status"], row["crop"], row["x"], row["y"], row["w"], row["h"]) == (
        "ok", "center_crop", "10", "0", "30", "30")
    np.testing.assert_allclose(_probs(row), _keras_probs(model, [photo[:, 10:40]])[0],
                               rtol=1e-4, atol=1e-5)
    assert (summary["no_face"], summary["fallback"], summary["faces"]) == (1, 1, 1)
    predict_files(predictor, [tmp_path / "wide.png"], tmp_path / "none.csv",
                  detector=finds_nothing)
    (row,) = _read_csv(tmp_path / "none.csv")
    assert (row["status"], row["crop"]) == ("no_face", "scripted")


def test_annotations_darken_the_hidden_half_and_names_do_not_collide(predictor, tmp_path):
    white = np.full((100, 100, 3), 255, np.uint8)
    _save(tmp_path / "in" / "a.png", white)
    _save(tmp_path / "in" / "a.bmp", white)
    predict_files(predictor, [tmp_path / "in"], tmp_path / "out.csv",
                  detector=lambda image: [(30, 40, 40, 40)], annotate_dir=tmp_path / "ann")
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["a.jpg", "a.png.jpg"]
    grey = cv2.imread(str(tmp_path / "ann" / "a.jpg"), cv2.IMREAD_GRAYSCALE).astype(float)
    # lower_half_visible: the upper half is what a headset hides, drawn dark; the lower half
    # is the photo, as is everything outside the box (the label sits above it)
    assert grey[43:58, 34:66].mean() < 100 and grey[63:78, 34:66].mean() > 200
    assert grey[85:, :].mean() > 200


def test_a_demo_trained_model_warns(tmp_path, caplog):
    from tests.serving.conftest import sharp_mini, write_run

    run = write_run(tmp_path / "demo_run", sharp_mini(3), stage="student",
                    view="lower_half_visible", dataset="demo")
    with caplog.at_level("WARNING"):
        predictor = Predictor.load(run)
    assert predictor.trained_on_demo and "synthetic demo set" in caplog.text
    with pytest.raises(FileNotFoundError, match="model not found: .*no_such_run"):
        Predictor.load(tmp_path / "no_such_run")
