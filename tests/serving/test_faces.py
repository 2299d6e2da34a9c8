"""The face detectors load and behave; boxes are clipped to the image.

The real photograph is scikit-image's `astronaut()` (Eileen Collins, NASA, public domain), which
ships inside the scikit-image wheel (a test dependency; nothing is downloaded, nothing is
committed). A headset is simulated as the paper does: the upper half of the face blacked out,
here widened past the face's sides as a headset's shell is. The prediction plumbing is tested
with an injected detector (test_predict.py).
"""
import numpy as np
import pytest

from fer_distill.serving.faces import (BlazeFaceDetector, HaarFaceDetector, center_crop, clip,
                                       crop, make_detector, whole_image)


@pytest.fixture(scope="module")
def astronaut():
    """(photo, its face box as Haar finds it on the unoccluded photo, the photo with the upper
    half of that face and a margin either side blacked out)."""
    from skimage import data

    photo = data.astronaut()
    boxes = HaarFaceDetector()(photo)
    assert len(boxes) == 1, boxes  # Haar finds her face when her eyes are visible
    x, y, w, h = boxes[0]
    headset = photo.copy()
    headset[max(y - h // 4, 0):y + h // 2, max(x - w // 4, 0):x + w + w // 4] = 0
    return photo, boxes[0], headset


def test_blazeface_finds_a_face_under_a_headset_that_haar_misses(astronaut):
    photo, face, headset = astronaut
    assert HaarFaceDetector()(headset) == []
    for name in ("blazeface", "blazeface_full"):
        detector = make_detector(name, min_score=0.4)
        found = detector(headset)
        assert [_iou(box, face) for box in found] and max(
            _iou(box, face) for box in found) > 0.5, (name, found, detector.scores)
    default = BlazeFaceDetector()  # short range at MediaPipe's 0.5
    found = default(headset)
    assert len(found) == 1 and _iou(found[0], face) > 0.5, (found, default.scores)
    assert default.name == "blazeface_short" and 0.5 <= default.scores[0] < 1
    assert BlazeFaceDetector()(photo) and BlazeFaceDetector()(
        np.zeros((120, 160, 3), np.uint8)) == []


def test_large_photos_are_searched_scaled_down_and_boxes_mapped_back(astronaut):
    import cv2

    photo, face, headset = astronaut
    big = cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_LINEAR)  # 4x
    haar = HaarFaceDetector(max_side=512)
    (box,) = haar(big)
    assert _iou(box, tuple(4 * v for v in face)) > 0.8, box
    blaze = BlazeFaceDetector()
    (small,) = blaze(headset)
    (large,) = blaze(cv2.resize(headset, (2048, 2048), interpolation=cv2.INTER_LINEAR))
    assert _iou(large, tuple(4 * v for v in small)) > 0.8, (small, large)


def test_center_crop_and_detector_errors():
    image = np.zeros((40, 100, 3), np.uint8)
    assert center_crop(image) == [(30, 0, 40, 40)] and center_crop.name == "center_crop"
    with pytest.raises(ValueError, match="min_score must be in"):
        BlazeFaceDetector(min_score=1.5)
    with pytest.raises(ValueError, match="unknown face detector 'dlib'"):
        make_detector("dlib")
    with pytest.raises(ValueError, match=r"expected a uint8 \(H, W, 3\) RGB image"):
        BlazeFaceDetector()(np.zeros((20, 20), np.float32))


def test_haar_cascade_ships_with_opencv_and_finds_nothing_in_noise():
    detector = HaarFaceDetector()
    assert detector.path.is_file() and detector.path.name == "haarcascade_frontalface_default.xml"
    flat = np.full((120, 160, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert detector(flat) == []
    boxes = detector(noise)
    assert isinstance(boxes, list) and boxes == sorted(boxes)


def test_haar_detector_errors_name_the_problem():
    with pytest.raises(FileNotFoundError, match="no_such_cascade.xml"):
        HaarFaceDetector("no_such_cascade.xml")
    with pytest.raises(ValueError, match=r"expected a uint8 \(H, W, 3\) RGB image"):
        HaarFaceDetector()(np.zeros((20, 20), np.uint8))


def test_whole_image_and_clipping():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    assert whole_image(image) == [(0, 0, 8, 6)]
    assert clip((-2, 1, 5, 10), 6, 8) == (0, 1, 3, 5)
    assert clip((8, 0, 3, 3), 6, 8) is None  # entirely right of the image
    np.testing.assert_array_equal(crop(image, (1, 2, 3, 4)), image[2:6, 1:4])


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_haar_finds_the_demo_sets_synthetic_faces_where_they_are():
    """The demo generator draws cartoon faces (brows, eyes, nose, mouth): enough of a face for
    the frontal cascade on about half of them. Every box it returns must sit on the face."""
    import cv2

    from fer_distill.data.demo import generate

    faces = generate({"train": 1, "validation": 1, "test": 12}, seed=0)["test"]["images"]
    detector = HaarFaceDetector()
    where = (120, 60, 144, 144)
    found = 0
    for face in faces:
        canvas = np.full((240, 320), 90, np.uint8)
        canvas[60:204, 120:264] = cv2.resize(face, (144, 144), interpolation=cv2.INTER_CUBIC)
        boxes = detector(np.repeat(canvas[..., None], 3, axis=-1))
        assert all(_iou(box, where) > 0.5 for box in boxes), boxes
        found += bool(boxes)
    assert found >= 3
