"""The view-masked FitNets hint: the worked example, hidden positions that cannot matter, the
visible positions of the paper's views, and the hint layer of every architecture."""
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.distill.hint import HINT_LAYERS, masked_hint_loss, visible_positions


def _map(rows):
    return np.array(rows, np.float32)[None, :, :, None]


def test_worked_example_of_the_docstring():
    visible = np.array([[0, 0], [1, 1]], bool)
    loss = masked_hint_loss(_map([[9, 9], [1, 2]]), _map([[0, 0], [3, 2]]), visible)
    assert float(loss) == pytest.approx(2.0)


def test_hidden_positions_change_nothing_not_even_non_finite_ones():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
    teacher = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
    visible = np.zeros((4, 4), bool)
    visible[2:] = True
    before = float(masked_hint_loss(student, teacher, visible))
    changed_s, changed_t = student.copy(), teacher.copy()
    changed_s[:, :2] = rng.normal(size=(3, 2, 4, 5)) * 100
    changed_t[:, :2] = np.inf
    assert float(masked_hint_loss(changed_s, changed_t, visible)) == before
    # and the mean is over the visible positions: B * 8 positions * 5 channels
    want = np.mean((student[:, 2:] - teacher[:, 2:]) ** 2)
    assert before == pytest.approx(float(want), rel=1e-5)
    # a visible position does count
    changed_s[:, 3, 3] += 10.0
    assert float(masked_hint_loss(changed_s, changed_t, visible)) > before
    # and no gradient reaches a hidden position
    variable = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = masked_hint_loss(variable, teacher, visible)
    grad = tape.gradient(loss, variable).numpy()
    assert not grad[:, :2].any() and grad[:, 2:].any()


def test_visible_positions_of_the_views():
    lower = visible_positions("lower_half_visible", 32, 16, 16)
    assert not lower[:8].any() and lower[8:].all()
    upper = visible_positions("upper_half_visible", 32, 16, 16)
    assert (upper == ~lower).all()
    # VGG-f's 13x13 relu5 at 224: rows whose cell is at least half in the lower half
    rows = visible_positions("lower_half_visible", 224, 13, 13)[:, 0]
    assert rows.tolist() == [False] * 6 + [True] * 7
    assert visible_positions("full", 32, 4, 4).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="visible must be"):
        masked_hint_loss(_map([[1, 2]]), _map([[1, 2]]), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="must be the same"):
        masked_hint_loss(_map([[1, 2]]), _map([[1, 2, 3]]), np.ones((1, 2), bool))


@pytest.mark.parametrize("arch", sorted(HINT_LAYERS))
def test_the_hint_layer_of_every_architecture_is_its_last_conv_block_before_pooling(arch):
    import importlib

    module = importlib.import_module(f"fer_distill.models.{arch}")
    layers = module.layers(8) if arch != "resnet50" else module.layers(8, 224)
    names = [layer.name if hasattr(layer, "name") else layer["name"] for layer in layers]
    at = names.index(HINT_LAYERS[arch])
    assert names[at + 1].startswith("pool")  # what follows is the pooling before fc
