"""Hard triplet mining for the triplet-loss distillation (paper section III-B).

For each anchor (the student's embedding of an occluded image of class k), the positive is the
pool image of class k whose TEACHER embedding (full view) is FARTHEST from it, and the
negative the pool image of another class whose STUDENT embedding (occluded view) is CLOSEST.

    positive_index, negative_index = mine_triplets(anchor_emb, anchor_labels,
        positive_pool_emb, positive_pool_labels, negative_pool_emb, negative_pool_labels)

`TripletMiner` holds an epoch's pools and runs the search inside a train step. Chunked
matrix distances, no per-anchor loop; -1 where an anchor has no candidate; ties go to the
lowest pool index.
How it is fast: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

# 1024 anchor rows × a 2,505-image pool is a 10 MB float32 block per search: small enough for
# any machine, large enough that the matmul (1024 × 4096 × 2505) runs at full rate.
DEFAULT_CHUNK_SIZE = 1024


def pairwise_squared_distances(a, b) -> tf.Tensor:
    """All squared Euclidean distances between the rows of a (N, D) and b (M, D): (N, M) float32.

    ‖a_i‖² − 2 a_i·b_j + ‖b_j‖², one matmul instead of an (N, M, D) difference tensor; rounding
    can push an exact 0 slightly negative, so the result is clipped at 0 (a later sqrt would
    otherwise give NaN).

    Worked example (checked in tests): a = [(0, 0), (1, 1)], b = [(3, 4), (1, 0)]:
    [[25, 1], [13, 1]].
    """
    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    _check_matrix("a", a)
    _check_matrix("b", b)
    _check_same_dim("a", a, "b", b)
    a_sq = tf.reduce_sum(tf.square(a), axis=1, keepdims=True)
    b_sq = tf.reduce_sum(tf.square(b), axis=1)
    d2 = a_sq - 2.0 * tf.matmul(a, b, transpose_b=True) + b_sq[tf.newaxis, :]
    return tf.maximum(d2, 0.0)


def mine_triplets(
    anchor_emb,
    anchor_labels,
    positive_pool_emb,
    positive_pool_labels,
    negative_pool_emb,
    negative_pool_labels,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[tf.Tensor, tf.Tensor]:
    """For every anchor: the farthest same-class positive and the closest other-class negative.

    Args:
      anchor_emb: (N, D) student embeddings E_S(a') of the anchors (occluded views).
      anchor_labels: (N,) integer classes of the anchors.
      positive_pool_emb: (M_p, D) teacher embeddings E_T(p) of the pool's full views.
      positive_pool_labels: (M_p,) their classes.
      negative_pool_emb: (M_n, D) student embeddings E_S(n') of the pool's occluded views.
      negative_pool_labels: (M_n,) their classes.
      chunk_size: anchors per matmul; memory is about 3 × chunk_size × max(M_p, M_n) floats.
      Tensors or NumPy arrays, any float dtype (distances are computed in float32).

    Returns:
      (positive_index, negative_index): int32 (N,) rows of the positive and negative pools;
      -1 where the anchor has no candidate. Ties go to the lowest pool index.

    To use the result in eq. 3, gather with `tf.maximum(index, 0)` and pass
    `mask=(positive_index >= 0) & (negative_index >= 0)` to `triplet_loss`.

    Worked example (checked in tests), D = 1: anchors a = [0 (class 0), 10 (class 1)];
    positive pool [1 (c0), 5 (c0), -5 (c0), 12 (c1)]; negative pool [2 (c1), 9 (c0), -1 (c1)].
    Anchor 0: class-0 positives at distances 1, 5, 5 → farthest 5, tie between rows 1 and 2 →
    row 1; other-class negatives rows 0 (distance 2) and 2 (distance 1) → row 2.
    Anchor 1: its only class-1 positive is row 3; negatives of class ≠ 1: row 1 only → row 1.
    Result: positive_index = [1, 3], negative_index = [2, 1].
    """
    (anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels, positive_sq,
     negative_pool_emb, negative_pool_labels, negative_sq, chunk_size) = _checked(
        anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels,
        negative_pool_emb, negative_pool_labels, chunk_size)

    def search(rows, row_labels):
        pos_scores = positive_sq[tf.newaxis, :] - 2.0 * tf.matmul(
            rows, positive_pool_emb, transpose_b=True
        )
        same_class = row_labels[:, tf.newaxis] == positive_pool_labels[tf.newaxis, :]
        neg_scores = negative_sq[tf.newaxis, :] - 2.0 * tf.matmul(
            rows, negative_pool_emb, transpose_b=True
        )
        other_class = row_labels[:, tf.newaxis] != negative_pool_labels[tf.newaxis, :]
        return (
            _masked_arg_extreme(pos_scores, same_class, largest=True),  # farthest positive
            _masked_arg_extreme(neg_scores, other_class, largest=False),  # closest negative
        )

    return _over_chunks(search, anchor_emb, anchor_labels, chunk_size)


class MinedTriplets(NamedTuple):
    """What `TripletMiner.mine` returns for a batch of B anchors.

    positive_index / negative_index: int32 (B,) rows of the pools, -1 for "none".
    positive_id / negative_id: int64 (B,) the pools' example ids (e.g. the pipeline's
      `"index"`, the row in the split) for those rows, -1 for "none"; the trainer feeds the
      negative's occluded image through the student again, so the gradient reaches E_S(n').
    positive_emb: float32 (B, D) the teacher's pool embedding of the positive (row 0 where
      none: masked out by `valid`).
    valid: bool (B,), True where both a positive and a negative were found; pass it as
      `triplet_loss(..., mask=valid)`.
    """

    positive_index: tf.Tensor
    negative_index: tf.Tensor
    positive_id: tf.Tensor
    negative_id: tf.Tensor
    positive_emb: tf.Tensor
    valid: tf.Tensor


class TripletMiner(tf.Module):
    """Mining pools held for an epoch and searched inside a train step.

    The pools (teacher embeddings of the tenth's full views with their labels and example ids;
    student embeddings of its occluded views, likewise) live in non-trainable `tf.Variable`s
    whose first dimension may change, so `set_pools` at the start of an epoch updates what a
    compiled train step sees without retracing it (a captured tensor would be frozen into the
    graph). Create the miner under the distribution strategy's scope when there is one. The
    pools are not saved with the model: they are a pure function of the epoch's draw and the
    current weights, so a resumed run recomputes them.
    """

    def __init__(self, embedding_dim: int, chunk_size: int = DEFAULT_CHUNK_SIZE, name=None):
        super().__init__(name=name)
        if int(embedding_dim) < 1:
            raise ValueError(f"TripletMiner: embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = int(embedding_dim)
        self.chunk_size = int(chunk_size)

        def var(shape, dtype):
            return tf.Variable(
                tf.zeros([0] + shape[1:], dtype), shape=tf.TensorShape(shape), trainable=False
            )

        d = self.embedding_dim
        self.positive_emb = var([None, d], tf.float32)
        self.positive_labels = var([None], tf.int32)
        self.positive_ids = var([None], tf.int64)
        self.negative_emb = var([None, d], tf.float32)
        self.negative_labels = var([None], tf.int32)
        self.negative_ids = var([None], tf.int64)

    def set_pools(
        self,
        positive_emb,
        positive_labels,
        negative_emb,
        negative_labels,
        positive_ids=None,
        negative_ids=None,
    ) -> None:
        """Replaces the pools (once per epoch). ids default to 0..M-1 (pool rows)."""
        d = self.embedding_dim
        values = {}
        for kind, emb, labels, ids in (
            ("positive", positive_emb, positive_labels, positive_ids),
            ("negative", negative_emb, negative_labels, negative_ids),
        ):
            emb = tf.cast(emb, tf.float32)
            if emb.shape.rank != 2 or emb.shape[1] != d:
                raise ValueError(
                    f"TripletMiner.set_pools: {kind}_emb must be (M, {d}), got {emb.shape}"
                )
            labels = _labels(f"{kind}_labels", labels, emb)
            if ids is None:
                ids = tf.range(tf.shape(emb)[0], dtype=tf.int64)
            ids = tf.cast(ids, tf.int64)
            if ids.shape.rank != 1 or ids.shape[0] != emb.shape[0]:
                raise ValueError(
                    f"TripletMiner.set_pools: {kind}_ids must be ({emb.shape[0]},), got "
                    f"{ids.shape}"
                )
            values[kind] = (emb, labels, ids)
        for kind, (emb, labels, ids) in values.items():
            getattr(self, f"{kind}_emb").assign(emb)
            getattr(self, f"{kind}_labels").assign(labels)
            getattr(self, f"{kind}_ids").assign(ids)

    def mine(self, anchor_emb, anchor_labels) -> MinedTriplets:
        """Mines positives and negatives for a batch of anchors against the current pools."""
        positive_index, negative_index = mine_triplets(
            anchor_emb,
            anchor_labels,
            self.positive_emb,
            self.positive_labels,
            self.negative_emb,
            self.negative_labels,
            chunk_size=self.chunk_size,
        )
        has_positive = positive_index >= 0
        has_negative = negative_index >= 0
        safe_positive = tf.maximum(positive_index, 0)
        safe_negative = tf.maximum(negative_index, 0)
        none = tf.constant(-1, tf.int64)
        positive_id = tf.where(has_positive, tf.gather(self.positive_ids, safe_positive), none)
        negative_id = tf.where(has_negative, tf.gather(self.negative_ids, safe_negative), none)
        # An empty pool has no row 0 to stand in; gather from a zero row appended at the end.
        padded = tf.concat([self.positive_emb, tf.zeros([1, self.embedding_dim])], axis=0)
        stand_in = tf.where(has_positive, positive_index, tf.shape(self.positive_emb)[0])
        positive_emb = tf.gather(padded, stand_in)
        return MinedTriplets(
            positive_index=positive_index,
            negative_index=negative_index,
            positive_id=positive_id,
            negative_id=negative_id,
            positive_emb=positive_emb,
            valid=has_positive & has_negative,
        )


def _checked(anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels,
             negative_pool_emb, negative_pool_labels, chunk_size):
    """mine_triplets' arguments as float32 / int32 tensors after the checks, with the pools'
    squared norms (computed once, not once per chunk)."""
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"mine_triplets: chunk_size must be >= 1, got {chunk_size}")
    anchor_emb = tf.cast(anchor_emb, tf.float32)
    positive_pool_emb = tf.cast(positive_pool_emb, tf.float32)
    negative_pool_emb = tf.cast(negative_pool_emb, tf.float32)
    anchor_labels = _labels("anchor_labels", anchor_labels, anchor_emb)
    positive_pool_labels = _labels("positive_pool_labels", positive_pool_labels, positive_pool_emb)
    negative_pool_labels = _labels("negative_pool_labels", negative_pool_labels, negative_pool_emb)
    _check_matrix("anchor_emb", anchor_emb)
    _check_matrix("positive_pool_emb", positive_pool_emb)
    _check_matrix("negative_pool_emb", negative_pool_emb)
    _check_same_dim("anchor_emb", anchor_emb, "positive_pool_emb", positive_pool_emb)
    _check_same_dim("anchor_emb", anchor_emb, "negative_pool_emb", negative_pool_emb)
    positive_sq = tf.reduce_sum(tf.square(positive_pool_emb), axis=1)
    negative_sq = tf.reduce_sum(tf.square(negative_pool_emb), axis=1)
    return (anchor_emb, anchor_labels, positive_pool_emb, positive_pool_labels, positive_sq,
            negative_pool_emb, negative_pool_labels, negative_sq, chunk_size)


def _masked_arg_extreme(scores, mask, *, largest: bool) -> tf.Tensor:
    """Per row, the lowest column index holding the max (min) of `scores` where `mask`; -1 if
    the row's mask is empty (or the pool is). `mask=None`: every column is a candidate.

    A NaN score is never "the best" (NaN == NaN is false), so a row with NaN candidates may
    get -1; NaN embeddings are the business of the trainer's NaN check, not of mining.
    """
    m = tf.shape(scores)[1]
    fill = tf.constant(float("-inf") if largest else float("inf"), tf.float32)
    masked = scores if mask is None else tf.where(mask, scores, fill)
    if largest:
        best = tf.reduce_max(masked, axis=1, keepdims=True)
    else:
        best = tf.reduce_min(masked, axis=1, keepdims=True)
    columns = tf.range(m, dtype=tf.int32)[tf.newaxis, :]
    is_best = masked == best if mask is None else mask & (masked == best)
    # why explicit: tf.argmax/argmin leave the tie order unspecified; this takes the lowest.
    winner = tf.reduce_min(tf.where(is_best, columns, m), axis=1)
    return tf.where(tf.reduce_any(is_best, axis=1), winner, -1)


def _over_chunks(search, rows, labels, chunk_size: int):
    """Runs `search(rows_chunk, labels_chunk) -> (idx_p, idx_n)` over fixed-size chunks.

    Every chunk has the same size c = min(chunk_size, N), which XLA needs; the last chunk is
    moved back to end at row N (overlapping its predecessor, whose rows it recomputes) instead
    of being padded, so no padded copy of the anchors is ever made. Answers are scattered into
    an (N,) buffer, which also makes N = 0 (no chunk at all) an ordinary case.
    """
    n = tf.shape(rows)[0]
    c = tf.minimum(chunk_size, n)
    num_chunks = (n + chunk_size - 1) // chunk_size
    dim = tf.shape(rows)[1]

    def body(i, out_p, out_n):
        start = tf.minimum(i * c, n - c)
        chunk = tf.slice(rows, [start, 0], [c, dim])
        chunk_labels = tf.slice(labels, [start], [c])
        idx_p, idx_n = search(chunk, chunk_labels)
        where = (start + tf.range(c))[:, tf.newaxis]  # size c is static for XLA
        return (
            i + 1,
            tf.tensor_scatter_nd_update(out_p, where, idx_p),
            tf.tensor_scatter_nd_update(out_n, where, idx_n),
        )

    empty = tf.fill([n], tf.constant(-1, tf.int32))
    _, out_p, out_n = tf.while_loop(
        lambda i, *_: i < num_chunks,
        body,
        (tf.constant(0), empty, empty),
        parallel_iterations=1,  # one chunk at a time: that is what bounds the memory
    )
    return out_p, out_n


def _labels(name, labels, emb):
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"mine_triplets: {name} must be integer classes, got {labels.dtype.name}")
    if labels.shape.rank != 1:
        raise ValueError(f"mine_triplets: {name} must be (N,), got {labels.shape}")
    if (
        labels.shape[0] is not None
        and emb.shape.rank is not None
        and emb.shape[0] is not None
        and labels.shape[0] != emb.shape[0]
    ):
        raise ValueError(
            f"mine_triplets: {name} has {labels.shape[0]} entries for {emb.shape[0]} embeddings"
        )
    return tf.cast(labels, tf.int32)


def _check_matrix(name, t):
    if t.shape.rank != 2:
        raise ValueError(f"mine_triplets: {name} must be (N, D), got shape {t.shape}")


def _check_same_dim(name_a, a, name_b, b):
    if a.shape[1] is not None and b.shape[1] is not None and a.shape[1] != b.shape[1]:
        raise ValueError(
            f"mine_triplets: {name_a} has dimension {a.shape[1]} but {name_b} has {b.shape[1]}"
        )
