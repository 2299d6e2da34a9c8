"""The eager "by_class" triplet miner, kept beside the benchmark that measures it
(experiments/benchmark_lib.py, `measure_mining`) and the tests that compare it with the
package's miner; training never runs it (fer_distill.distill.mining).

For each class k of the anchors, only the pool's class-k positives and its non-k negatives
are multiplied, so every anchor meets every pool image exactly once (N·M·D multiply-adds in
all, what even a careful per-anchor loop must do, half of what the masked search of
`mine_triplets` does). A Python loop over classes and chunks (not anchors) drives it, so it
runs eagerly only. Same arguments, same answer (ties to the lowest pool index, -1 where no
candidate) as `fer_distill.distill.mining.mine_triplets`.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# The package's own argument checks and tie rule, so both miners agree by construction.
from fer_distill.distill.mining import DEFAULT_CHUNK_SIZE, _checked, _masked_arg_extreme


def mine_triplets_by_class(anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels,
                           negative_pool_emb, negative_pool_labels,
                           chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[tf.Tensor, tf.Tensor]:
    """`mine_triplets` computed per anchor class (module docstring); eager only.

    The candidate rows of each pool are gathered once per class; their original indices come
    from `tf.where`, which lists them in increasing order, so "lowest index within the
    candidates" is "lowest pool index", the same tie rule as the masked search.
    """
    if not tf.executing_eagerly():
        raise ValueError("mine_triplets_by_class runs eagerly only (a Python loop over "
                         "classes); use fer_distill.distill.mining.mine_triplets inside "
                         "tf.function")
    (anchors, anchor_labels, pos, pos_labels, pos_sq, neg, neg_labels, neg_sq,
     chunk_size) = _checked(anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels,
                            negative_pool_emb, negative_pool_labels, chunk_size)
    n = int(anchors.shape[0])
    positions, found_pos, found_neg = [], [], []
    for k in np.unique(anchor_labels.numpy()):
        rows = tf.cast(tf.where(anchor_labels == k)[:, 0], tf.int32)
        pos_rows = tf.cast(tf.where(pos_labels == k)[:, 0], tf.int32)  # same class
        neg_rows = tf.cast(tf.where(neg_labels != k)[:, 0], tf.int32)  # any other class
        pos_k, pos_sq_k = tf.gather(pos, pos_rows), tf.gather(pos_sq, pos_rows)
        neg_k, neg_sq_k = tf.gather(neg, neg_rows), tf.gather(neg_sq, neg_rows)
        for start in range(0, int(rows.shape[0]), chunk_size):
            chunk_rows = rows[start : start + chunk_size]
            chunk = tf.gather(anchors, chunk_rows)
            positions.append(chunk_rows)
            found_pos.append(_search_candidates(chunk, pos_k, pos_sq_k, pos_rows, largest=True))
            found_neg.append(_search_candidates(chunk, neg_k, neg_sq_k, neg_rows, largest=False))
    if not positions:
        empty = tf.fill([n], tf.constant(-1, tf.int32))
        return empty, empty
    where = tf.concat(positions, axis=0)[:, tf.newaxis]
    unset = tf.fill([n], tf.constant(-1, tf.int32))
    return (
        tf.tensor_scatter_nd_update(unset, where, tf.concat(found_pos, axis=0)),
        tf.tensor_scatter_nd_update(unset, where, tf.concat(found_neg, axis=0)),
    )


def _search_candidates(chunk, candidates, candidates_sq, candidate_rows, *, largest):
    """Pool row of the farthest (largest) or closest candidate for each anchor of the chunk."""
    if int(candidates.shape[0]) == 0:
        return tf.fill([tf.shape(chunk)[0]], tf.constant(-1, tf.int32))
    scores = candidates_sq[tf.newaxis, :] - 2.0 * tf.matmul(chunk, candidates, transpose_b=True)
    best = _masked_arg_extreme(scores, None, largest=largest)
    return tf.gather(candidate_rows, best)
