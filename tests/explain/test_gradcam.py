"""Grad-CAM: known answers on a hand-set network, finite differences on mini, the fused map,
and the figure."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import fer_distill  # noqa: F401
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.occlusion import occlude
from fer_distill.explain.gradcam import explain, figure, fused_gradcam, gradcam, target_layer
from fer_distill.models import mini
from fer_distill.serving.servable import FUSION, Servable

RED, GREEN = (255.0, 0.0, 0.0), (0.0, 255.0, 0.0)


def _hand_set(class0_region, class1_weight=1.0):
    """8x8 RGB → conv 1x1 (channel 0 = red/255, channel 1 = green/255) → ReLU → fc8.

    Class 0's logit is the sum of channel 0 over `class0_region` (a bool 8x8 mask) and nothing
    else; class 1's is `class1_weight` times the sum of channel 1 everywhere.
    """
    image = keras.Input((8, 8, 3))
    features = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(2, 1, name="conv")(image))
    logits = keras.layers.Dense(2, name="fc8")(keras.layers.Flatten()(features))
    model = keras.Model(image, logits)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[0, 0, 1, 1] = 1 / 255
    model.get_layer("conv").set_weights([kernel, np.zeros(2, np.float32)])
    dense = np.zeros((8, 8, 2, 2), np.float32)  # (row, col, channel, class), Flatten's order
    dense[class0_region, 0, 0] = 1.0
    dense[:, :, 1, 1] = class1_weight
    model.get_layer("fc8").set_weights([dense.reshape(128, 2), np.zeros(2, np.float32)])
    return model


def _paint(patches):
    image = np.zeros((1, 8, 8, 3), np.float32)
    for (rows, cols), colour in patches:
        image[0, rows, cols] = colour
    return image


def _mask(rows, cols):
    mask = np.zeros((8, 8), bool)
    mask[rows, cols] = True
    return mask


def test_target_layer_is_the_last_conv_after_its_relu():
    assert target_layer(mini()) == "relu2"
    from fer_distill.models import vgg_f
    assert target_layer(vgg_f()) == "relu5"
    assert target_layer(_hand_set(_mask(slice(0, 1), slice(0, 1)))) == "relu"
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no convolution with a spatial output"):
        target_layer(dense_only)


def test_the_map_lights_exactly_the_region_the_logit_reads():
    region = (slice(1, 3), slice(1, 3))
    distractor = (slice(5, 7), slice(4, 7))
    model = _hand_set(_mask(*region))
    image = _paint([(region, RED), (distractor, GREEN)])
    result = gradcam(model, image, class_index=0)
    # d logit0 / d A = 1 on the region's channel-0 cells: alpha = (4/64, 0)
    np.testing.assert_allclose(result.weights[0], [[4 / 64, 0.0]], atol=1e-7)
    np.testing.assert_allclose(result.cam[0], np.where(_mask(*region), 4 / 64, 0.0), atol=1e-7)
    np.testing.assert_array_equal(result.heatmap[0] > 0, _mask(*region))
    np.testing.assert_allclose(result.heatmap[0][_mask(*region)], 1.0)
    # the other class reads the green channel everywhere: its map is the green patch
    other = gradcam(model, image, class_index=1)
    np.testing.assert_allclose(other.weights[0], [[0.0, 1.0]], atol=1e-7)
    np.testing.assert_array_equal(other.heatmap[0] > 0, _mask(*distractor))
    # no class given: the predicted one (green's logit 6 beats red's 4)
    assert gradcam(model, image).class_index.tolist() == [1]
    np.testing.assert_allclose(gradcam(model, image).scores, [[4.0, 6.0]], rtol=1e-6)


def test_global_average_weights_light_the_same_feature_elsewhere_too():
    """Grad-CAM's known property, computed by hand: the weights are spatial means, so a red
    patch outside the region the logit reads is lit as strongly as the one inside."""
    region, elsewhere = (slice(0, 2), slice(0, 2)), (slice(6, 8), slice(6, 8))
    image = _paint([(region, RED), (elsewhere, RED)])
    result = gradcam(_hand_set(_mask(*region)), image, class_index=0)
    np.testing.assert_allclose(result.cam[0], np.where(_mask(*region) | _mask(*elsewhere),
                                                       4 / 64, 0.0), atol=1e-7)


def test_negative_evidence_gives_an_empty_map_not_noise():
    region = (slice(2, 5), slice(2, 5))
    model = _hand_set(_mask(*region), class1_weight=-1.0)
    result = gradcam(model, _paint([(region, GREEN)]), class_index=1)
    assert result.weights[0][0, 1] < 0
    np.testing.assert_array_equal(result.heatmap, 0.0)


def _sharp_mini(seed):
    keras.utils.set_random_seed(seed)
    model = mini()
    fc8 = model.get_layer("fc8")
    kernel, bias = fc8.get_weights()
    fc8.set_weights([np.random.default_rng(seed).normal(0, 0.5, kernel.shape).astype("float32"),
                     bias])
    return model


def _inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return occlude(rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32),
                   "lower_half_visible")


def test_weights_agree_with_finite_differences_on_mini():
    model = _sharp_mini(0)
    x = _inputs()
    classes = np.array([3, 6])
    result = gradcam(model, x, class_index=classes)
    names = [layer.name for layer in model.layers]
    features = keras.Model(model.input, model.get_layer("relu2").output)(x).numpy()

    # The layers after relu2, cloned in float64: central differences with a tiny step then
    # measure the derivative itself, not float32 rounding or a ReLU kink crossed by the step.
    head_layers = []
    for layer in model.layers[names.index("relu2") + 1:]:
        clone = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
        clone.build(layer.input.shape)
        clone.set_weights([w.astype(np.float64) for w in layer.get_weights()])
        head_layers.append(clone)

    def head(a):
        a = tf.constant(a, tf.float64)
        for layer in head_layers:
            a = layer(a)
        return a.numpy()

    features = features.astype(np.float64)
    _, h, w, k = features.shape
    eps = 1e-6
    for n, c in enumerate(classes):
        # alpha_k = (1/hw) sum_ij dy/dA_kij = (1/hw) d/dt y(A + t * ones_k)
        steps = np.eye(k)[:, None, None, :] * eps
        plus, minus = head(features[n] + steps), head(features[n] - steps)
        numeric = (plus[:, c] - minus[:, c]) / (2 * eps) / (h * w)
        np.testing.assert_allclose(result.weights[0][n], numeric, rtol=1e-3,
                                   atol=1e-4 * np.abs(numeric).max())
        assert np.abs(numeric).max() > 1e-4  # the comparison is not between zeros
    cam = np.maximum(np.einsum("nhwk,nk->nhw", features, result.weights[0]), 0.0)
    np.testing.assert_allclose(result.cam, cam, rtol=1e-4, atol=1e-6)
    upsampled = tf.image.resize(cam[..., None], [32, 32])[..., 0].numpy()
    np.testing.assert_allclose(result.heatmap,
                               upsampled / upsampled.max(axis=(1, 2), keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert result.heatmap.shape == (2, 32, 32) and result.heatmap.max() == pytest.approx(1.0)


def test_fused_map_is_gradcam_of_the_decision_through_both_students():
    kd, triplet = _sharp_mini(1), _sharp_mini(2)
    rng = np.random.default_rng(3)
    weights = rng.normal(0, 0.3, (128, 8)).astype(np.float32)
    bias = rng.normal(0, 0.3, 8).astype(np.float32)
    x = _inputs(seed=4)
    fused = fused_gradcam(kd, triplet, weights, bias, x, class_index=2)
    # each student's weights = Grad-CAM of that student with its share of the SVM as fc8
    per_student = []
    for student, part in ((kd, weights[:64]), (triplet, weights[64:])):
        head = keras.layers.Dense(8, name="fc8")
        partial = keras.Model(student.input, head(student.get_layer("relu7").output))
        head.set_weights([part, np.zeros(8, np.float32)])
        per_student.append(gradcam(partial, x, class_index=2))
    for mine, alone in zip(fused.weights, per_student):
        np.testing.assert_allclose(mine, alone.weights[0], rtol=1e-5, atol=1e-7)
    maps = [keras.Model(m.input, m.get_layer("relu2").output)(x).numpy() for m in (kd, triplet)]
    summed = sum(np.einsum("nhwk,nk->nhw", a, alpha) for a, alpha in zip(maps, fused.weights))
    np.testing.assert_allclose(fused.cam, np.maximum(summed, 0), rtol=1e-4, atol=1e-6)
    from fer_distill.models import embedding_model
    emb = np.concatenate([embedding_model(m)(x)["embedding"].numpy() for m in (kd, triplet)], 1)
    np.testing.assert_allclose(fused.scores, emb @ weights + bias, rtol=1e-5, atol=1e-5)


def test_explain_preprocesses_like_training_and_draws_figure_3(tmp_path):
    model = _sharp_mini(5)
    grey = np.random.default_rng(6).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)
    explanation = explain(Servable("classifier", (model,), "lower_half_visible"), list(grey))
    full = tf.repeat(tf.image.resize(grey, [32, 32]), 3, axis=-1).numpy()
    np.testing.assert_allclose(explanation.full, full, atol=1e-4)
    np.testing.assert_allclose(explanation.seen, occlude(full, "lower_half_visible"), atol=1e-4)
    direct = gradcam(model, explanation.seen)
    np.testing.assert_allclose(explanation.gradcam.heatmap, direct.heatmap, atol=1e-6)

    path = figure(explanation, tmp_path / "figs" / "gradcam.png", CLASS_NAMES,
                  labels=[0, 1, 2], title="mini")
    import matplotlib.image

    picture = matplotlib.image.imread(path)
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0] * 0.4
    assert picture[..., :3].std() > 0.05  # something was drawn
    assert sorted(p.name for p in path.parent.iterdir()) == ["gradcam.png"]


def test_explain_a_fusion_and_bad_classes():
    kd, triplet = _sharp_mini(7), _sharp_mini(8)
    rng = np.random.default_rng(9)
    servable = Servable(FUSION, (kd, triplet), "lower_half_visible",
                        linear_map=(rng.normal(0, 0.3, (128, 8)).astype(np.float32),
                                    np.zeros(8, np.float32)))
    images = list(rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8))
    explanation = explain(servable, images)
    assert explanation.gradcam.layers == ("relu2", "relu2")
    assert explanation.gradcam.heatmap.shape == (2, 32, 32)
    with pytest.raises(ValueError, match=r"class_index must lie in \[0, 8\)"):
        explain(servable, images, class_index=8)
