"""Getting a stage's networks ready: the fc8 rule, precision policies, .mat files."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_distill.models import mini
from fer_distill.train.networks import initial_network, load_network, under_policy


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    keras.utils.set_random_seed(0)
    seven, eight = mini(7, 32), mini(8, 32)
    seven.save(root / "seven.keras")
    eight.save(root / "eight.keras")
    return {"seven": str(root / "seven.keras"), "eight": str(root / "eight.keras"),
            "root": root}


def _same_except_fc8(a, b):
    for layer in a.layers:
        if layer.weights and layer.name != "fc8":
            for wa, wb in zip(layer.get_weights(), b.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(wa, wb)


def test_head_rule(files):
    source = keras.saving.load_model(files["seven"], compile=False)
    model, info = initial_network(files["seven"], arch="mini", num_classes=8, image_size=None,
                                  head="auto", seed=0)
    assert info["new_head"] and model.output_shape == (None, 8)
    _same_except_fc8(source, model)

    kept, info = initial_network(files["eight"], arch="mini", num_classes=8, image_size=None,
                                 head="auto", seed=0)
    assert not info["new_head"]
    eight = keras.saving.load_model(files["eight"], compile=False)
    for a, b in zip(kept.get_weights(), eight.get_weights()):
        np.testing.assert_array_equal(a, b)

    fresh, info = initial_network(files["eight"], arch="mini", num_classes=8, image_size=None,
                                  head="new", seed=0)
    assert info["new_head"]
    assert not np.array_equal(fresh.get_layer("fc8").get_weights()[0],
                              eight.get_layer("fc8").get_weights()[0])
    with pytest.raises(ValueError, match="fc8 has 7 outputs.*--head=keep"):
        initial_network(files["seven"], arch="mini", num_classes=8, image_size=None,
                        head="keep", seed=0)
    scratch, info = initial_network("scratch", arch="mini", num_classes=8, image_size=48,
                                    head="auto", seed=0)
    assert info == {"init": "scratch", "new_head": True}
    assert scratch.input_shape == (None, 48, 48, 3)


def test_under_policy_rebuilds_with_the_same_weights(files):
    model = keras.saving.load_model(files["eight"], compile=False)
    assert under_policy(model, "float32") is model
    mixed = under_policy(model, "mixed_float16")
    policies = {layer.name: layer.dtype_policy.name for layer in mixed.layers if layer.weights}
    assert policies.pop("fc8") == "float32"
    assert set(policies.values()) == {"mixed_float16"}
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(mixed(x).numpy(), model(x).numpy(), rtol=2e-2, atol=2e-2)
    back = under_policy(mixed, "float32")
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(layer.dtype_policy.name == "float32" for layer in back.layers)


def test_matconvnet_files_load_and_name_their_architecture(files):
    from experiments.matconvnet_writer import save_matconvnet

    path = files["root"] / "net-epoch-3.mat"
    model = keras.saving.load_model(files["eight"], compile=False)
    save_matconvnet(model, path, layout="checkpoint")
    loaded = load_network(path, role="init", arch="mini")
    assert loaded.name == "mini" and loaded.output_shape == (None, 8)
    with pytest.raises(ValueError, match="holds a mini network, but this run is vgg_f"):
        load_network(path, role="init", arch="vgg_f")


def test_matconvnet_class_order_is_checked_against_the_data_set(files):
    """A MatConvNet-trained 8-way file lists its classes in meta.classes: the data set's order
    passes, the same names reordered is refused (it would score silently wrong), and names
    that are not class names (cnn_train's '1'..'8') pass with a warning that says the order
    is assumed."""
    from fer_distill.data.classes import CLASS_NAMES
    from experiments.matconvnet_writer import save_matconvnet
    from fer_distill.train.networks import check_classes

    model = keras.saving.load_model(files["eight"], compile=False)
    cases = {"same": list(CLASS_NAMES), "swapped": [CLASS_NAMES[1], CLASS_NAMES[0],
                                                     *CLASS_NAMES[2:]],
             "numbers": [str(i + 1) for i in range(8)]}
    loaded = {}
    for name, names in cases.items():
        path = files["root"] / f"classes-{name}.mat"
        save_matconvnet(model, path, layout="beta17", class_names=names)
        loaded[name] = (load_network(path, role="teacher", arch="mini"), path)

    check_classes(*loaded["same"], role="teacher", class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match=r"classes-swapped\.mat lists its classes as "
                                         r"\['happiness', 'neutral'"):
        check_classes(*loaded["swapped"], role="teacher", class_names=CLASS_NAMES)
    with pytest.warns(UserWarning, match=r"classes-numbers\.mat names its classes.*assumed"):
        check_classes(*loaded["numbers"], role="teacher", class_names=CLASS_NAMES)


def test_a_garbage_or_truncated_keras_init_is_not_called_missing(files, tmp_path):
    """Issue 10's probe: Keras says "File not found" for a .keras file that exists."""
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(np.random.default_rng(0).bytes(2000))
    truncated = tmp_path / "truncated.keras"
    whole = (files["root"] / "eight.keras").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match=rf"init file {path} could not be loaded: {path} is "
                                             r"not a Keras .keras file: not a zip archive"):
            initial_network(str(path), arch="mini", num_classes=8, image_size=None,
                            head="auto", seed=0)


def test_an_input_size_mismatch_names_where_the_size_came_from(files):
    from fer_distill.train.networks import check_input_size

    model = load_network(files["eight"], role="teacher", arch="mini")
    with pytest.raises(ValueError, match=r"teacher file .*eight.keras takes 32x32 images; this "
                                         r"run's input size is 48x48 \(from the init \(student\) "
                                         r"file big.keras\)"):
        check_input_size(model, files["eight"], role="teacher", image_size=48,
                         source="the init (student) file big.keras")
