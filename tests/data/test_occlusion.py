"""Views: the same pixels hidden by NumPy, eager TF, tf.function and tf.data."""
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.occlusion import MASK_SHAPES, VIEWS, Mask, occlude, resolve_view


def _expected(images, view):
    """The paper's definition row by row: the slow, obvious way."""
    out = images.copy()
    height = images.shape[-3]
    for row in range(height):
        hidden = (view == "lower_half_visible" and row < height // 2) or (
            view == "upper_half_visible" and row >= height // 2)
        if hidden:
            out[..., row, :, :] = 0
    return out


@pytest.mark.parametrize("height", [6, 7])
@pytest.mark.parametrize("view", VIEWS)
def test_numpy_matches_definition(view, height):
    images = np.random.default_rng(1).integers(1, 256, (2, height, 5, 3)).astype(np.uint8)
    before = images.copy()
    out = occlude(images, view)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, _expected(images, view))
    np.testing.assert_array_equal(images, before)  # input untouched
    np.testing.assert_array_equal(occlude(images[0], view), _expected(images, view)[0])


def test_half_views_split_odd_heights_at_floor():
    images = np.ones((1, 5, 1, 1), np.float32)
    assert occlude(images, "lower_half_visible")[0, :, 0, 0].tolist() == [0, 0, 1, 1, 1]
    assert occlude(images, "upper_half_visible")[0, :, 0, 0].tolist() == [1, 1, 0, 0, 0]


@pytest.mark.parametrize("view", [*VIEWS, "headset"])
def test_tensorflow_eager_function_and_data_agree_with_numpy(view):
    images = np.random.default_rng(2).uniform(1, 255, (3, 7, 6, 3)).astype(np.float32)
    expected = occlude(images, view)
    np.testing.assert_array_equal(occlude(tf.constant(images), view).numpy(), expected)

    static = tf.function(lambda x: occlude(x, view))
    np.testing.assert_array_equal(static(tf.constant(images)).numpy(), expected)

    # run-time image size: the graph does not know H and W
    dynamic = tf.function(lambda x: occlude(x, view),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_array_equal(dynamic(tf.constant(images)).numpy(), expected)

    ds = tf.data.Dataset.from_tensor_slices(images).batch(2).map(lambda x: occlude(x, view))
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), expected)


def test_mask_from_array_and_file(tmp_path):
    import cv2

    visible = np.zeros((4, 4), bool)
    visible[1:3, 2:] = True
    images = np.full((1, 8, 8, 1), 7, np.uint8)
    out = occlude(images, Mask(visible))
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 4:] = 7  # nearest-neighbour upscaling of the 4x4 mask
    np.testing.assert_array_equal(out[0, :, :, 0], expected)

    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), visible.astype(np.uint8) * 255)
    from_file = resolve_view(str(path))
    assert isinstance(from_file, Mask)
    np.testing.assert_array_equal(occlude(images, from_file), out)
    np.testing.assert_array_equal(occlude(tf.constant(images), from_file).numpy(), out)


def test_headset_hides_the_eyes_and_keeps_the_mouth():
    mask = Mask.named("headset").at(224, 224)
    assert mask.dtype == bool and mask.shape == (224, 224)
    assert not mask[90, 70] and not mask[90, 150]  # eyes (about 40% down)
    assert mask[180, 112]  # mouth
    assert mask[5, 112]  # above the strap line
    assert mask[int(0.57 * 224), 112]  # nose tip through the notch
    assert set(MASK_SHAPES) >= {"headset", "surgical_mask"}


def test_unknown_views_are_rejected():
    with pytest.raises(ValueError, match="unknown view 'left_half'"):
        occlude(np.zeros((1, 2, 2, 1)), "left_half")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        occlude(np.zeros((2, 2)), "full")
    with pytest.raises(ValueError, match="2-D"):
        Mask(np.zeros((2, 2, 2)))
