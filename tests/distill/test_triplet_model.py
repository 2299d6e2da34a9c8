"""TripletModel: eq. 4 with in-step mining against the epoch's pools, gradients through both
student embeddings, loss scaling, XLA and mixed precision; the pools' subset and the view
transform shared with the pipeline."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.pipeline import make_dataset, to_view
from fer_distill.distill.triplet_model import MiningPools, TripletModel, embed, mining_subset
from fer_distill.models import embedding_model, mini
from fer_distill.train.execution import dtype_policy
from fer_distill.train.networks import under_policy
from tests.conftest import write_tiny_prepared

LR = 1e-5  # eq. 3 is a sum over the batch: small rates, as in the paper
BATCH = 8


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny prepared set: 80/16/16 random 48x48 grey images, 8 classes."""
    return write_tiny_prepared(tmp_path_factory.mktemp("tiny") / "prepared",
                               {"train": 80, "validation": 16, "test": 16}, seed=0,
                               shape=(48, 48, 1), cyclic_labels=True, split_in_names=True)


@pytest.fixture(scope="module")
def networks():
    keras.utils.set_random_seed(1)
    student = mini(8, 32)
    keras.utils.set_random_seed(2)
    teacher = mini(8, 32)
    return student.get_weights(), teacher


def _batches(prepared, n_batches=2):
    data = make_dataset(prepared, "train", image_size=32, batch_size=BATCH, training=True,
                        views=("occluded",), seed=0)
    return [(b["occluded"], b["label"]) for b in data.take(n_batches)]


def _model(networks, prepared, *, policy="float32", jit=False, reduction="sum", epoch=0,
           normalize=False):
    """A compiled TripletModel with the pools of `epoch` installed (as MiningPools does)."""
    student_weights, teacher = networks
    with dtype_policy(policy):
        student = mini(8, 32)
        student.set_weights(student_weights)
        student = under_policy(student, policy)
        model = TripletModel(student, source_shape=prepared.image_shape, image_size=32,
                             reduction=reduction, lam=0.5, margin=0.1, normalize=normalize)
        optimizer = keras.optimizers.SGD(LR, momentum=0.9)
        if policy == "mixed_float16":
            # why 16, not Keras' 2**15: eq. 4 is ~30 here, and 30 * 2**15 overflows float16,
            # so the first steps would be skipped while the scale shrinks. With a scale that
            # fits, every step updates, and forgetting `scale_loss` in the step would shrink
            # the updates 16x: the comparison with float32 below would catch it.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=16.0)
        model.compile(optimizer=optimizer, jit_compile=jit)
        rows = np.arange(prepared.count("train"))
        teacher_embedder = embedding_model(teacher)

        def positives(subset):
            return embed(teacher_embedder, prepared, "train", subset, image_size=32,
                         view="full", batch_size=16)

        pools = MiningPools(model, prepared, rows=rows, positive_embeddings=positives, seed=0,
                            batch_size=16)
        pools.on_epoch_begin(epoch)
    return model, pools


def test_view_transform_is_the_pipelines(prepared):
    rows = np.array([3, 0, 17, 42, 79])
    batch = next(iter(make_dataset(prepared, "train", image_size=32, batch_size=5,
                                   training=False, views=("occluded",), indices=rows)))
    ours = to_view(prepared.images("train")[rows], 32, "lower_half_visible")
    np.testing.assert_array_equal(ours.numpy(), batch["occluded"].numpy())
    same_size = to_view(prepared.images("train")[rows], 48, "upper_half_visible")
    assert same_size.shape == (5, 48, 48, 3) and not np.any(same_size.numpy()[:, 24:])


def test_mining_subset_is_a_pure_function_of_seed_and_epoch():
    rows = np.arange(1000, 3507)  # 2507 rows: a tenth is 251
    a = mining_subset(rows, 0.1, seed=7, epoch=3)
    assert len(a) == 251 and np.all(np.diff(a) > 0) and np.all(np.isin(a, rows))
    np.testing.assert_array_equal(a, mining_subset(rows, 0.1, seed=7, epoch=3))
    assert not np.array_equal(a, mining_subset(rows, 0.1, seed=7, epoch=4))
    assert not np.array_equal(a, mining_subset(rows, 0.1, seed=8, epoch=3))
    assert len(mining_subset(rows[:5], 0.1, seed=0, epoch=0)) == 1


@pytest.mark.parametrize("normalize", [False, True])
def test_objective_is_eq4_with_brute_force_mining(networks, prepared, normalize):
    """CE (batch mean) + λ·Σ_i [‖a_i − p_i‖ − ‖a_i − n_i‖ + α]_+ with p the farthest same-class
    teacher embedding and n the closest other-class student embedding of the pool, found here
    by a plain loop; the negative's embedding is the student's on the pool image. The pool (a
    tenth: 8 images) misses some classes, so some anchors have no triplet and count 0. With
    `normalize` (ours) every embedding of eq. 3 and of the mining is divided by its length."""
    model, pools = _model(networks, prepared, normalize=normalize)

    def unit(e):
        e = np.asarray(e, np.float64)
        return e / np.linalg.norm(e, axis=-1, keepdims=True) if normalize else e

    images, labels = _batches(prepared, 1)[0]
    result = model.objective(images, labels, training=False)

    out = model.embedder(images)
    anchors, logits = unit(out["embedding"].numpy()), out["logits"].numpy()
    subset = pools.subset
    pool_labels = prepared.labels("train")[subset]
    positives = unit(embed(embedding_model(networks[1]), prepared, "train", subset,
                           image_size=32, view="full", batch_size=16))
    negatives = unit(embed(model.embedder, prepared, "train", subset, image_size=32,
                           view="lower_half_visible", batch_size=16))
    ce = np.mean([-np.log(np.exp(z[y] - z.max()) / np.exp(z - z.max()).sum())
                  for z, y in zip(logits.astype(np.float64), labels.numpy())])
    total, counted = 0.0, 0
    for a, y in zip(anchors, labels.numpy()):
        same = [i for i in range(len(subset)) if pool_labels[i] == y]
        other = [i for i in range(len(subset)) if pool_labels[i] != y]
        if not same or not other:  # no triplet for this anchor (its class is not in the pool)
            continue
        counted += 1
        p = max(same, key=lambda i: np.linalg.norm(a - positives[i]))
        n = min(other, key=lambda i: np.linalg.norm(a - negatives[i]))
        total += max(0.0, np.linalg.norm(a - positives[p]) - np.linalg.norm(a - negatives[n])
                     + 0.1)
    assert float(result["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(result["triplet"]) == pytest.approx(total, rel=1e-4)
    assert float(result["loss"]) == pytest.approx(ce + 0.5 * total, rel=1e-4)
    assert total > 0  # the triplet term is active, so the checks above mean something
    assert counted == int(np.sum(result["mined"].valid))
    if normalize:  # the margin binds on the unit sphere: distances are at most 2
        assert total <= counted * (2 + 0.1)


def test_gradient_flows_through_anchor_and_negative_embeddings(networks, prepared):
    from fer_distill.distill.triplet import triplet_loss

    model, _ = _model(networks, prepared)
    images, labels = _batches(prepared, 1)[0]
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        through_both = model.objective(images, labels)["triplet"]
    with tf.GradientTape() as tape_constant_negatives:
        anchor = model.embedder(images, training=True)["embedding"]
        mined = model.miner.mine(tf.stop_gradient(anchor), tf.cast(labels, tf.int32))
        raw = tf.gather(model.pool_images, tf.maximum(mined.negative_index, 0))
        negative = tf.stop_gradient(
            model.embedder(to_view(raw, 32, "lower_half_visible"))["embedding"])
        anchor_only = triplet_loss(anchor, mined.positive_emb, negative, mask=mined.valid,
                                   margin=0.1, reduction="sum")
    assert float(through_both) == pytest.approx(float(anchor_only), rel=1e-5)
    def dense(gradients):  # fc8 plays no part in eq. 3: its gradient is None
        return [tf.zeros(v.shape) if g is None else g for g, v in zip(gradients, variables)]

    g_both = dense(tape.gradient(through_both, variables))
    g_anchor = dense(tape_constant_negatives.gradient(anchor_only, variables))
    difference = sum(float(tf.reduce_sum(tf.abs(a - b))) for a, b in zip(g_both, g_anchor))
    assert difference > 1e-3 * sum(float(tf.reduce_sum(tf.abs(a))) for a in g_both)
    assert {id(v) for v in variables} == {id(v) for v in model.student.trainable_variables}


def test_a_few_steps_lower_eq4_on_fixed_pools(networks, prepared):
    model, _ = _model(networks, prepared)
    images, labels = _batches(prepared, 1)[0]
    before = float(model.objective(images, labels, training=False)["loss"])
    model.fit(tf.data.Dataset.from_tensors((images, labels)).repeat(5), verbose=0,
              shuffle=False)
    after = float(model.objective(images, labels, training=False)["loss"])
    assert after < before


def _losses(model, batches):
    return [float(model.train_step((x, y))["loss"]) for x, y in batches]


def test_xla_and_mixed_precision_agree_with_float32(networks, prepared):
    batches = _batches(prepared, 3)
    reference = _losses(_model(networks, prepared)[0], batches)
    xla_model, _ = _model(networks, prepared, jit=True)
    xla_model.make_train_function()
    xla = [float(xla_model.train_function(iter([batch]))["loss"]) for batch in batches]
    np.testing.assert_allclose(xla, reference, rtol=1e-4)
    mixed_model, _ = _model(networks, prepared, policy="mixed_float16")
    assert isinstance(mixed_model.optimizer, keras.optimizers.LossScaleOptimizer)
    mixed = _losses(mixed_model, batches)
    np.testing.assert_allclose(mixed, reference, rtol=2e-2)
    changed = [not np.array_equal(a, b) for a, b in
               zip(networks[0], mixed_model.student.get_weights())]
    assert any(changed)  # the scaled loss reached the weights


def test_pool_images_must_match_the_pool(networks, prepared):
    model, _ = _model(networks, prepared)
    emb = np.zeros((4, model.embedding_dim), np.float32)
    labels = np.arange(4)
    with pytest.raises(ValueError, match="pool images must be uint8"):
        model.set_pools(positive_emb=emb, positive_labels=labels, negative_emb=emb,
                        negative_labels=labels, images=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="3 pool images for 4 negative embeddings"):
        model.set_pools(positive_emb=emb, positive_labels=labels, negative_emb=emb,
                        negative_labels=labels, images=np.zeros((3, 48, 48, 1), np.uint8))
