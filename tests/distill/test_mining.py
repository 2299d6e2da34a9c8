"""mine_triplets and pairwise_squared_distances against brute-force loops; ties, empty classes,
chunking, XLA, dtypes, and the per-epoch TripletMiner; the benchmark's eager by_class miner
(experiments/mining_by_class.py) gives the same answers."""
import numpy as np
import pytest
import tensorflow as tf

from experiments.mining_by_class import mine_triplets_by_class
from fer_distill.distill.mining import TripletMiner, mine_triplets, pairwise_squared_distances


def _loop_mine(a, al, p, pl, n, nl):
    """For each anchor, scan the pools in order and keep the first strictly better candidate:
    the farthest same-class positive and the closest other-class negative (float64); ties
    therefore go to the lowest index, -1 where no candidate exists."""
    pos, neg = [], []
    for i in range(len(a)):
        best_j, best_d = -1, -np.inf
        for j in range(len(p)):
            d = float(np.sum((a[i].astype(np.float64) - p[j]) ** 2))
            if pl[j] == al[i] and d > best_d:
                best_j, best_d = j, d
        pos.append(best_j)
        best_j, best_d = -1, np.inf
        for j in range(len(n)):
            d = float(np.sum((a[i].astype(np.float64) - n[j]) ** 2))
            if nl[j] != al[i] and d < best_d:
                best_j, best_d = j, d
        neg.append(best_j)
    return np.array(pos), np.array(neg)


def _random_problem(rng, n_anchor=40, n_pool=25, dim=6, classes=4, integer=False):
    def emb(k):
        if integer:  # small integers: every distance is exact in float32, ties are real ties
            return rng.integers(-3, 4, (k, dim)).astype(np.float32)
        return rng.normal(size=(k, dim)).astype(np.float32)

    return (
        emb(n_anchor), rng.integers(0, classes, n_anchor),
        emb(n_pool), rng.integers(0, classes, n_pool),
        emb(n_pool + 3), rng.integers(0, classes, n_pool + 3),
    )


def test_pairwise_squared_distances_hand_example_and_loop():
    """a = [(0,0), (1,1)], b = [(3,4), (1,0)]: 9+16 = 25, 1+0 = 1; 4+9 = 13, 0+1 = 1."""
    got = pairwise_squared_distances([[0.0, 0.0], [1.0, 1.0]], [[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(got.numpy(), [[25.0, 1.0], [13.0, 1.0]])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 5)), rng.normal(size=(7, 5))
    loop = np.array([[np.sum((x - y) ** 2) for y in b] for x in a])
    np.testing.assert_allclose(pairwise_squared_distances(a, b).numpy(), loop, rtol=1e-5, atol=1e-5)


def test_pairwise_squared_distances_clipped_at_zero_and_float32():
    """Identical large rows: ‖a‖² − 2a·a + ‖a‖² rounds to a tiny ± number; never below 0."""
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(16, 64)) * 1e3).astype(np.float16)
    d = pairwise_squared_distances(a, a)
    assert d.dtype == tf.float32
    assert np.all(d.numpy() >= 0.0)
    assert np.all(np.isfinite(np.sqrt(d.numpy())))


# The package's miner and the benchmark's by_class one: every case below holds for both.
MINERS = pytest.mark.parametrize("mine", [mine_triplets, mine_triplets_by_class],
                                 ids=["masked", "by_class"])


@MINERS
def test_hand_example(mine):
    """The docstring's 1-d example: positives [1, 3], negatives [2, 1] (tie → lowest row)."""
    pos, neg = mine(
        np.array([[0.0], [10.0]]), [0, 1],
        np.array([[1.0], [5.0], [-5.0], [12.0]]), [0, 0, 0, 1],
        np.array([[2.0], [9.0], [-1.0]]), [1, 0, 1],
    )
    assert pos.dtype == tf.int32 and neg.dtype == tf.int32
    np.testing.assert_array_equal(pos.numpy(), [1, 3])
    np.testing.assert_array_equal(neg.numpy(), [2, 1])


@MINERS
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_loop_on_random_data(seed, mine):
    rng = np.random.default_rng(seed)
    a, al, p, pl, n, nl = _random_problem(rng)
    pos, neg = mine(a, al, p, pl, n, nl)
    loop_pos, loop_neg = _loop_mine(a, al, p, pl, n, nl)
    # Indices equal unless two candidates are within float32 rounding of each other; check
    # the mined candidate is as far (close) as the loop's, and that indices mostly agree.
    valid = loop_pos >= 0
    np.testing.assert_array_equal(pos.numpy() >= 0, valid)
    np.testing.assert_array_equal(neg.numpy() >= 0, loop_neg >= 0)
    d_mined = np.sum((a[valid] - p[pos.numpy()[valid]]) ** 2, axis=1)
    d_loop = np.sum((a[valid] - p[loop_pos[valid]]) ** 2, axis=1)
    np.testing.assert_allclose(d_mined, d_loop, rtol=1e-5)
    d_mined = np.sum((a - n[neg.numpy()]) ** 2, axis=1)
    d_loop = np.sum((a - n[loop_neg]) ** 2, axis=1)
    np.testing.assert_allclose(d_mined, d_loop, rtol=1e-5)
    assert np.mean(pos.numpy() == loop_pos) > 0.95 and np.mean(neg.numpy() == loop_neg) > 0.95


@MINERS
def test_ties_go_to_the_lowest_pool_index_exactly_like_the_loop(mine):
    rng = np.random.default_rng(2)
    a, al, p, pl, n, nl = _random_problem(rng, n_anchor=30, n_pool=40, dim=3, classes=3,
                                          integer=True)
    # Duplicate rows (same label) guarantee exact ties on top of the many integer ones.
    p[20:] = p[:20]
    pl[20:] = pl[:20]
    pos, neg = mine(a, al, p, pl, n, nl)
    loop_pos, loop_neg = _loop_mine(a, al, p, pl, n, nl)
    np.testing.assert_array_equal(pos.numpy(), loop_pos)
    np.testing.assert_array_equal(neg.numpy(), loop_neg)
    assert np.all(pos.numpy() < 20)  # a duplicate in the upper half never wins


@MINERS
def test_empty_classes_give_minus_one(mine):
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    al = [0, 1, 2]
    p = np.array([[5.0, 5.0], [1.0, 1.0]], np.float32)
    pl = [0, 0]  # no positive for classes 1 and 2
    n = np.array([[2.0, 2.0], [3.0, 3.0]], np.float32)
    nl = [2, 2]  # every negative is class 2: none for the class-2 anchor
    pos, neg = mine(a, al, p, pl, n, nl)
    np.testing.assert_array_equal(pos.numpy(), [0, -1, -1])
    np.testing.assert_array_equal(neg.numpy(), [0, 0, -1])
    # Empty pools and no anchors are ordinary cases too.
    empty = np.zeros((0, 2), np.float32)
    none = np.zeros(0, int)
    pos, neg = mine(a, al, empty, none, empty, none)
    np.testing.assert_array_equal(pos.numpy(), [-1, -1, -1])
    np.testing.assert_array_equal(neg.numpy(), [-1, -1, -1])
    pos, neg = mine(empty, none, p, pl, n, nl)
    assert pos.shape == (0,) and neg.shape == (0,)


def test_chunked_equals_unchunked_and_by_class_and_xla_agree():
    rng = np.random.default_rng(3)
    a, al, p, pl, n, nl = _random_problem(rng, n_anchor=37)
    whole = [t.numpy() for t in mine_triplets(a, al, p, pl, n, nl, chunk_size=1000)]
    compiled = tf.function(mine_triplets, jit_compile=True)
    for chunk in (1, 5, 8, 36, 37):  # 37 = 4·8 + 5: the last chunk overlaps its predecessor
        for name, fn in (("eager", mine_triplets), ("xla", compiled),
                         ("by_class", mine_triplets_by_class)):
            got = [t.numpy() for t in fn(a, al, p, pl, n, nl, chunk_size=chunk)]
            np.testing.assert_array_equal(got[0], whole[0], err_msg=f"{name}, chunk {chunk}")
            np.testing.assert_array_equal(got[1], whole[1], err_msg=f"{name}, chunk {chunk}")


def test_graph_with_unknown_shapes_and_float16_inputs():
    rng = np.random.default_rng(4)
    a, al, p, pl, n, nl = _random_problem(rng, integer=True)
    expected = [t.numpy() for t in mine_triplets(a, al, p, pl, n, nl)]
    spec = [tf.TensorSpec([None, None], tf.float16), tf.TensorSpec([None], tf.int32)] * 3

    @tf.function(input_signature=spec)
    def graph(*args):
        return mine_triplets(*args, chunk_size=7)

    args = [a.astype(np.float16), al.astype(np.int32), p.astype(np.float16),
            pl.astype(np.int32), n.astype(np.float16), nl.astype(np.int32)]
    got = [t.numpy() for t in graph(*args)]  # integers are exact in float16 too
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    empty = graph(np.zeros((0, 6), np.float16), np.zeros(0, np.int32), *args[2:])
    assert empty[0].shape == (0,)


def test_bad_input_is_named():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="positive_pool_emb has 4"):
        mine_triplets(a, [0, 1], np.zeros((2, 4)), [0, 1], np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="negative_pool_labels has 3 entries"):
        mine_triplets(a, [0, 1], a, [0, 1], a, [0, 1, 1])
    with pytest.raises(ValueError, match="integer"):
        mine_triplets(a, [0.0, 1.0], a, [0, 1], a, [0, 1])
    with pytest.raises(ValueError, match="chunk_size"):
        mine_triplets(a, [0, 1], a, [0, 1], a, [0, 1], chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        mine_triplets_by_class(a, [0, 1], a, [0, 1], a, [0, 1], chunk_size=0)
    graph = tf.function(mine_triplets_by_class)
    with pytest.raises(ValueError, match="eagerly only"):
        graph(a, [0, 1], a, [0, 1], a, [0, 1])


def test_triplet_miner_follows_new_pools_without_retracing():
    rng = np.random.default_rng(5)
    a, al, p, pl, n, nl = _random_problem(rng, dim=4)
    miner = TripletMiner(embedding_dim=4, chunk_size=8)
    ids_p = np.arange(len(p)) + 1000
    ids_n = np.arange(len(n)) + 5000
    miner.set_pools(p, pl, n, nl, positive_ids=ids_p, negative_ids=ids_n)
    step = tf.function(miner.mine, jit_compile=True)
    mined = step(a, al)
    pos, neg = (t.numpy() for t in mine_triplets(a, al, p, pl, n, nl))
    np.testing.assert_array_equal(mined.positive_index.numpy(), pos)
    np.testing.assert_array_equal(mined.negative_index.numpy(), neg)
    np.testing.assert_array_equal(mined.positive_id.numpy(), np.where(pos >= 0, ids_p[pos], -1))
    np.testing.assert_array_equal(mined.negative_id.numpy(), np.where(neg >= 0, ids_n[neg], -1))
    np.testing.assert_array_equal(mined.valid.numpy(), (pos >= 0) & (neg >= 0))
    np.testing.assert_array_equal(mined.positive_emb.numpy()[pos >= 0], p[pos[pos >= 0]])

    # Next epoch: a smaller pool with only class-0 positives. Same compiled step, new answer.
    keep = pl == 0
    miner.set_pools(p[keep], pl[keep], n[:5], nl[:5])
    mined = step(a, al)
    assert step.experimental_get_tracing_count() == 1
    pos, neg = (t.numpy() for t in mine_triplets(a, al, p[keep], pl[keep], n[:5], nl[:5]))
    np.testing.assert_array_equal(mined.positive_index.numpy(), pos)
    np.testing.assert_array_equal(mined.negative_id.numpy(), np.where(neg >= 0, neg, -1))
    assert np.all(mined.positive_emb.numpy()[pos < 0] == 0.0)
    assert not np.all(mined.valid.numpy())  # anchors of classes 1-3 have no positive now

    miner.set_pools(np.zeros((0, 4)), np.zeros(0, int), n, nl)  # an empty pool: all invalid
    assert not np.any(step(a, al).valid.numpy())


def test_triplet_miner_rejects_wrong_widths():
    miner = TripletMiner(embedding_dim=4)
    with pytest.raises(ValueError, match=r"positive_emb must be \(M, 4\)"):
        miner.set_pools(np.zeros((3, 5)), [0, 1, 2], np.zeros((3, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match="negative_ids"):
        miner.set_pools(np.zeros((3, 4)), [0, 1, 2], np.zeros((3, 4)), [0, 1, 2],
                        negative_ids=[1, 2])
