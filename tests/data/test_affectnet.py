"""AffectNet preparation: the paper's 88,021 training images on the real class counts, the
code-to-class mapping, face crops, the validation choice, and bad input."""
import os

import cv2
import numpy as np
import pytest

from fer_distill.data import affectnet
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.prepared import read_prepared

# NOTES §4: training counts of codes 0-7 in the real training.csv.
REAL_COUNTS = [74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750]
HEADER = ",".join(affectnet.COLUMNS) + "\n"


def _row(name, code, box=(10, 12, 40, 44)):
    x, y, w, h = box
    return f"{name},{x},{y},{w},{h},1.5;2.5;3.5;4.5,{code},0.25,-0.5\n"


def _write_lists(raw, train_codes, validation_codes, *, header=(True, False), boxes=None):
    lists = raw / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for file, codes, with_header, prefix in [("training.csv", train_codes, header[0], "t"),
                                             ("validation.csv", validation_codes, header[1], "v")]:
        rows = [_row(f"{i % 97}/{prefix}{i}.png", c,
                     (boxes or {}).get((prefix, i), (10, 12, 40, 44)))
                for i, c in enumerate(codes)]
        (lists / file).write_text((HEADER if with_header else "") + "".join(rows))


def test_real_class_counts_give_88021(tmp_path):
    rng = np.random.default_rng(0)
    codes = np.concatenate([np.repeat(np.arange(8), REAL_COUNTS), np.repeat([8, 9, 10], 50)])
    rng.shuffle(codes)
    _write_lists(tmp_path / "raw", codes, np.repeat(np.arange(11), 500))
    summary = affectnet.prepare_affectnet(tmp_path / "raw", tmp_path / "out", manifest_only=True,
                                          progress=False)
    train = summary["splits"]["train"]
    assert train["count"] == 88021
    assert train["per_class"] == {"neutral": 15000, "happiness": 15000, "surprise": 14090,
                                  "sadness": 15000, "anger": 15000, "disgust": 3803,
                                  "fear": 6378, "contempt": 3750}
    assert summary["splits"]["test"]["per_class"] == {name: 500 for name in CLASS_NAMES}
    assert summary["splits"]["validation"] == summary["splits"]["test"]  # the paper's setting
    assert "validation == test" in summary["source"]["validation"]
    assert summary["source"]["header_present"] == {"training": True, "validation": False}
    prepared = read_prepared(tmp_path / "out")
    assert prepared.manifest_only and not (tmp_path / "out" / "train" / "images.npy").exists()
    manifest = prepared.manifest("train")
    kept_codes = manifest["expression"].astype(int)
    np.testing.assert_array_equal(prepared.labels("train"), affectnet.CODE_TO_LABEL[kept_codes])
    lines = manifest["line"].astype(int)
    assert (np.diff(lines) > 0).all()  # file order
    np.testing.assert_array_equal(codes[lines - 2], kept_codes)  # line 1 is the header
    # a fixed seed gives the same rows; another seed other rows, the same counts
    again = affectnet.select_training(codes, seed=0)
    np.testing.assert_array_equal(again, lines - 2)
    other = affectnet.select_training(codes, seed=1)
    assert len(other) == 88021 and not np.array_equal(other, again)


def test_codes_map_to_class_names_by_name():
    assert [CLASS_NAMES[i] for i in affectnet.CODE_TO_LABEL] == [
        "neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]


def _images(raw, prefix, count, rng, unreadable=()):
    """Writes count random colour PNGs of varied sizes; returns them (BGR, as cv2 reads)."""
    out = {}
    for i in range(count):
        path = raw / "Manually_Annotated_Images" / f"{i % 97}" / f"{prefix}{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in unreadable:
            path.write_bytes(b"\x89PNG but not really")
            continue
        image = rng.integers(0, 256, (50 + 3 * i, 70 - 2 * i, 3), dtype=np.uint8)
        cv2.imwrite(str(path), image)
        out[i] = image
    return out


def _expected(image, box, size):
    x, y, w, h = box
    crop = image[max(y, 0):min(y + h, image.shape[0]), max(x, 0):min(x + w, image.shape[1])]
    shrink = crop.shape[0] > size or crop.shape[1] > size
    resized = cv2.resize(crop, (size, size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized[:, :, ::-1]  # RGB


def test_decoded_faces_are_cropped_resized_rgb(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "raw"
    train_codes = [0, 1, 1, 1, 1, 2, 8, 10, 7, 6]
    validation_codes = [3, 4, 9, 5]
    boxes = {("t", 2): (-5, -5, 30, 30), ("t", 3): (0, 0, 200, 200)}  # clipped boxes
    _write_lists(raw, train_codes, validation_codes, boxes=boxes)
    train = _images(raw, "t", len(train_codes), rng)
    validation = _images(raw, "v", len(validation_codes), rng)
    summary = affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=32, per_class_cap=3,
                                          workers=2, progress=False)
    prepared = read_prepared(tmp_path / "out")
    assert prepared.image_shape == (32, 32, 3)
    names = list(prepared.manifest("train")["name"])
    # code 1 has 4 images, capped to 3; codes 8 and 10 dropped
    assert summary["splits"]["train"]["count"] == 7
    assert sum(n.split("/")[1] in {"t1.png", "t2.png", "t3.png", "t4.png"} for n in names) == 3
    assert not any(n.endswith(("t6.png", "t7.png")) for n in names)
    for k, name in enumerate(names):
        i = int(name.split("/t")[1].split(".")[0])
        box = boxes.get(("t", i), (10, 12, 40, 44))
        np.testing.assert_array_equal(prepared.images("train")[k], _expected(train[i], box, 32))
        assert prepared.labels("train")[k] == CLASS_NAMES.index(
            affectnet.CODE_NAMES[train_codes[i]])
    test_names = list(prepared.manifest("test")["name"])
    assert test_names == ["0/v0.png", "1/v1.png", "3/v3.png"]  # code 9 dropped
    np.testing.assert_array_equal(prepared.images("test")[2],
                                  _expected(validation[3], (10, 12, 40, 44), 32))
    np.testing.assert_array_equal(prepared.images("validation"), prepared.images("test"))
    uncropped = affectnet.prepare_affectnet(raw, tmp_path / "whole", image_size=32,
                                            crop_faces=False, progress=False)
    assert uncropped["source"]["crop_faces"] is False
    whole = read_prepared(tmp_path / "whole").images("test")[0]
    np.testing.assert_array_equal(whole, cv2.resize(validation[0], (32, 32),
                                                    interpolation=cv2.INTER_AREA)[:, :, ::-1])


def test_missing_and_unreadable_images(tmp_path):
    rng = np.random.default_rng(2)
    raw = tmp_path / "raw"
    _write_lists(raw, [0, 1, 2, 3, 4, 5], [0, 1, 2])
    _images(raw, "t", 6, rng, unreadable={4})
    _images(raw, "v", 3, rng)
    os.remove(raw / "Manually_Annotated_Images" / "1" / "t1.png")
    with pytest.raises(ValueError, match=r"2 AffectNet images cannot be used .*1 missing, 1 "
                                         r"unreadable.*4/t4.png: not a readable image"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=16, max_missing=1,
                                    progress=False)
    with pytest.raises(ValueError, match=r"1 AffectNet images are missing .*1/t1.png"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=16, progress=False)
    assert not (tmp_path / "out").exists()
    summary = affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=16, max_missing=2,
                                          progress=False)
    assert summary["source"]["missing_images"]["train"] == ["1/t1.png", "4/t4.png"]
    prepared = read_prepared(tmp_path / "out")
    assert list(prepared.manifest("train")["name"]) == ["0/t0.png", "2/t2.png", "3/t3.png",
                                                        "5/t5.png"]
    assert prepared.images("train").shape == (4, 16, 16, 3)
    reference = cv2.imread(str(raw / "Manually_Annotated_Images" / "5" / "t5.png"))
    np.testing.assert_array_equal(prepared.images("train")[3],
                                  _expected(reference, (10, 12, 40, 44), 16))


def test_holdout_validation_is_stratified_and_disjoint(tmp_path):
    codes = np.repeat(np.arange(11), [40, 60, 20, 20, 20, 10, 30, 10, 5, 5, 5])
    _write_lists(tmp_path / "raw", codes, np.repeat(np.arange(8), 3))
    summary = affectnet.prepare_affectnet(tmp_path / "raw", tmp_path / "out", manifest_only=True,
                                          validation="holdout", holdout_fraction=0.1,
                                          per_class_cap=50, progress=False)
    prepared = read_prepared(tmp_path / "out")
    selected = {name: min(n, 50) for name, n in zip(
        [affectnet.CODE_NAMES[c] for c in range(8)], [40, 60, 20, 20, 20, 10, 30, 10])}
    for name, n in selected.items():
        assert summary["splits"]["validation"]["per_class"][name] == round(0.1 * n)
        assert summary["splits"]["train"]["per_class"][name] == n - round(0.1 * n)
    train, validation = (set(prepared.manifest(s)["name"]) for s in ("train", "validation"))
    assert not train & validation
    assert summary["splits"]["test"]["count"] == 24
    assert summary["source"]["validation"].startswith("holdout")


def test_bad_file_lists_are_named(tmp_path):
    raw = tmp_path / "raw"
    _write_lists(raw, [0, 1], [0, 11])
    with pytest.raises(ValueError, match=r"validation.csv, line 2: unknown expression code 11"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", manifest_only=True, progress=False)
    (raw / "Manually_Annotated_file_lists" / "validation.csv").write_text(
        "subDirectory_filePath,face_x,face_y,expression\n0/a.png,1,2,3\n")
    with pytest.raises(ValueError, match=r"line 1: header lacks columns \['face_width', "
                                         r"'face_height'\]"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", manifest_only=True, progress=False)
    (raw / "Manually_Annotated_file_lists" / "validation.csv").write_text("0/a.png,1,2,3\n")
    with pytest.raises(ValueError, match=r"validation.csv, line 1: 4 columns, expected 9"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", manifest_only=True, progress=False)
    with pytest.raises(FileNotFoundError, match="Known layout: RAW/Manually_Annotated_file_lists"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", progress=False)  # no images folder
    assert not (tmp_path / "out").exists()


def test_a_truncated_jpeg_and_a_box_outside_the_image_are_named_for_what_they_are(tmp_path):
    """Issue 10's probe: a JPEG cut to a third was stored with a grey lower half (libjpeg only
    warns), and a face box outside its image was called "missing or unreadable"."""
    rng = np.random.default_rng(4)
    raw = tmp_path / "raw"
    _write_lists(raw, [0, 1, 2], [0, 1, 2], boxes={("t", 2): (500, 500, 40, 40)})
    images = raw / "Manually_Annotated_Images"
    for prefix in "tv":
        for i in range(3):
            path = images / f"{i}" / f"{prefix}{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rng.integers(0, 256, (60, 60, 3), dtype=np.uint8))
    for name in ("training.csv", "validation.csv"):  # the lists name .png files
        path = raw / "Manually_Annotated_file_lists" / name
        path.write_text(path.read_text().replace(".png", ".jpg"))
    whole = images / "1" / "t1.jpg"
    assert not affectnet._jpeg_truncated(whole.read_bytes())
    whole.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"2 AffectNet images cannot be used .*1 truncated, 1 "
                                         r"face box outside the image; first: 1/t1.jpg: "
                                         r"truncated JPEG.*; 2/t2.jpg: face box x=500, y=500, "
                                         r"width=40, height=40 lies outside the 60x60 image"):
        affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=16, progress=False)
    summary = affectnet.prepare_affectnet(raw, tmp_path / "out", image_size=16, max_missing=2,
                                          progress=False)
    problems = summary["source"]["image_problems"]["train"]
    assert problems["1/t1.jpg"].startswith("truncated JPEG")
    assert problems["2/t2.jpg"].startswith("face box")
    assert list(read_prepared(tmp_path / "out").manifest("train")["name"]) == ["0/t0.jpg"]
