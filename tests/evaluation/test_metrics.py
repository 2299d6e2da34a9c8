"""Accuracy, per-class accuracy and confusion matrix: by hand, against loops and scikit-learn;
the CSV text and the PNG file."""
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from fer_distill.data.classes import CLASS_NAMES
from fer_distill.evaluation import metrics

# labels      0 0 1 1 2      (class 3 absent)
# predictions 0 1 1 1 0
# confusion [true, pred]: (0,0)=1 (0,1)=1 (1,1)=2 (2,0)=1 → accuracy 3/5 = 0.6;
# per class: 0 → 1/2, 1 → 2/2, 2 → 0/1, 3 → undefined (NaN).
LABELS = [0, 0, 1, 1, 2]
PREDS = [0, 1, 1, 1, 0]
NAMES = ["a", "b", "c", "d"]


def test_hand_example():
    assert metrics.accuracy(LABELS, PREDS) == pytest.approx(0.6)
    cm = metrics.confusion_matrix(LABELS, PREDS, num_classes=4)
    np.testing.assert_array_equal(
        cm, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        metrics.per_class_accuracy(LABELS, PREDS, num_classes=4), [0.5, 1.0, 0.0, np.nan]
    )
    summary = metrics.summary(LABELS, PREDS, NAMES)
    assert summary["count"] == 5 and summary["accuracy"] == pytest.approx(0.6)
    assert summary["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.0, "d": None}
    assert summary["per_class_count"] == {"a": 2, "b": 2, "c": 1, "d": 0}


def test_against_loops_and_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 500)
    preds = np.where(rng.random(500) < 0.6, labels, rng.integers(0, 8, 500))
    loop_cm = np.zeros((8, 8), int)
    for t, p in zip(labels, preds):
        loop_cm[t, p] += 1
    cm = metrics.confusion_matrix(labels, preds)
    np.testing.assert_array_equal(cm, loop_cm)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(labels, preds, labels=range(8)))
    assert metrics.accuracy(labels, preds) == pytest.approx(
        sum(int(t == p) for t, p in zip(labels, preds)) / 500
    )
    loop_pca = [np.mean(preds[labels == k] == k) for k in range(8)]
    np.testing.assert_allclose(metrics.per_class_accuracy(labels, preds), loop_pca)


def test_csv_text():
    cm = metrics.confusion_matrix(LABELS, PREDS, num_classes=4)
    assert metrics.confusion_matrix_csv(cm, NAMES) == (
        "true\\predicted,a,b,c,d\n"
        "a,1,1,0,0\n"
        "b,0,2,0,0\n"
        "c,1,0,0,0\n"
        "d,0,0,0,0\n"
    )


def test_csv_and_png_written_atomically(tmp_path):
    import matplotlib.image

    cm = metrics.confusion_matrix(LABELS, PREDS)
    csv_path = metrics.write_confusion_csv(tmp_path / "cm.csv", cm)
    assert csv_path.read_text().splitlines()[0] == "true\\predicted," + ",".join(CLASS_NAMES)
    png = metrics.plot_confusion_matrix(tmp_path / "cm.png", cm, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    metrics.plot_confusion_matrix(tmp_path / "counts.png", cm, normalize=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.csv", "cm.png", "counts.png"]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="5 labels but 4 predictions"):
        metrics.accuracy(LABELS, PREDS[:4])
    with pytest.raises(ValueError, match="predictions holds class 9, outside 0..7"):
        metrics.confusion_matrix(LABELS, [0, 1, 9, 1, 0])
    with pytest.raises(ValueError, match="integer"):
        metrics.accuracy([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match=r"shape \(4, 4\), expected \(8, 8\)"):
        metrics.confusion_matrix_csv(np.zeros((4, 4), int))
