"""The bundled face detector loads and behaves; boxes are clipped to the image.

No photograph of a face exists on this machine (and none may be downloaded), so the cascade is
checked for what can be checked without one: it ships with OpenCV 4.x, loads, finds nothing in
flat or noisy images, and rejects bad input. The prediction plumbing is tested with an injected
detector (test_predict.py).
"""
import numpy as np
import pytest

from fer_distill.serving.faces import HaarFaceDetector, clip, crop, whole_image


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
