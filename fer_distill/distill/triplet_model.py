"""Teacher-student training with the triplet loss (paper section III-B, eqs. 3-4).

    L_KD''(θ_S) = CE(y, N_S) + λ·Σ_i [Δ(E_S(a'_i), E_T(p_i)) − Δ(E_S(a'_i), E_S(n'_i)) + α]_+   (4)

The sum is eq. 3. E is the relu7 embedding, a' the anchor and n' the negative (views the
student sees), p the positive (the full view, seen by the frozen teacher), Δ the Euclidean
distance, α the margin (paper: 0.1) and λ the weight (paper: 0.5).

    trainer = TripletModel(student, source_shape=prepared.image_shape, image_size=S,
                           lam=0.5, margin=0.1, reduction="sum")
    trainer.compile(optimizer=...)            # no loss: compute_loss is eq. 4
    pools = MiningPools(trainer, prepared, rows=rows, positive_embeddings=teacher_cache, seed=0)
    trainer.fit(occluded_images_and_labels, callbacks=[pools], ...)

`fer_distill.train.distillers` builds both. The step, pools, replicas: docs/DESIGN.md.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from fer_distill.data.pipeline import to_view
from fer_distill.distill.mining import DEFAULT_CHUNK_SIZE, TripletMiner
from fer_distill.distill.triplet import triplet_loss
from fer_distill.models import embedding_model
from fer_distill.models.outputs import split_outputs

# A stream of random numbers of its own, so the mining subset never shares draws with the
# pipeline's epoch permutation, which is seeded with (seed, epoch).
MINING_STREAM = 0x7E1


def mining_subset(rows, fraction: float, seed: int, epoch: int) -> np.ndarray:
    """The epoch's random subset of `rows` (a tenth by default), sorted; pure in (seed, epoch)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"mining fraction must be in (0, 1], got {fraction}")
    size = max(1, int(round(len(rows) * fraction)))
    rng = np.random.default_rng([int(seed), int(epoch), MINING_STREAM])
    return np.sort(rng.choice(rows, size=size, replace=False))


class TripletModel(keras.Model):
    """Trains `student` with eq. 4; inputs: occluded images (B, S, S, 3), targets: labels (B,).

    Args:
      student: the classifier being trained (relu7 = E, fc8 = A).
      source_shape: (H, W, C) of the prepared set's uint8 images (the pool's images).
      image_size: the student's input size S.
      occlusion: the student's view ("lower_half_visible").
      lam, margin, reduction: λ, α and eq. 3's reduction ("sum" as in the paper, or "mean").
      normalize: ours, not the paper: eq. 3 and the mining on unit-length embeddings (anchors,
        negatives and both pools L2-normalised; the classifier still reads the raw embedding).
      chunk_size: anchors per distance matmul in the miner.
    """

    def __init__(self, student: keras.Model, *, source_shape, image_size: int,
                 occlusion="lower_half_visible", lam: float, margin: float,
                 reduction: str, normalize: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 **kwargs):
        # why autocast off: the images reach the student as the pipeline made them (float32);
        # the student's own layers cast under a mixed policy, as they would on their own.
        super().__init__(autocast=False, **kwargs)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"TripletModel: reduction must be 'sum' or 'mean', got "
                             f"{reduction!r}")
        self.student = student
        self.embedder = embedding_model(student)
        self.embedding_dim = int(self.embedder.output["embedding"].shape[-1])
        self.miner = TripletMiner(self.embedding_dim, chunk_size=chunk_size)
        self.source_shape = tuple(int(d) for d in source_shape)
        # why int32 words and not uint8: tf.distribute cannot create (broadcast) a uint8
        # variable under MultiWorkerMirroredStrategy; 4 pixels a word keep the memory.
        self._pixels = int(np.prod(self.source_shape))
        self._pool_words = tf.Variable(
            tf.zeros([0, -(-self._pixels // 4)], tf.int32), trainable=False,
            shape=tf.TensorShape([None, -(-self._pixels // 4)]))
        self.image_size = int(image_size)
        self.occlusion = occlusion
        self.lam = float(lam)
        self.margin = float(margin)
        self.reduction = reduction
        self.normalize = bool(normalize)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.triplet_tracker = keras.metrics.Mean(name="triplet")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.ce_tracker, self.triplet_tracker, self.accuracy_tracker]

    def set_pools(self, *, positive_emb, positive_labels, negative_emb, negative_labels,
                  images, ids=None) -> None:
        """Installs the epoch's pools: teacher embeddings of the subset's full views, student
        embeddings of its occluded views, and its uint8 source images (row i of `images` is
        row i of the negative pool)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.source_shape:
            raise ValueError(f"TripletModel: pool images must be uint8 (M, "
                             f"{', '.join(map(str, self.source_shape))}), got {images.dtype} "
                             f"{images.shape}")
        if len(images) != len(negative_emb) or len(images) == 0:
            raise ValueError(f"TripletModel: {len(images)} pool images for "
                             f"{len(negative_emb)} negative embeddings (need the same, >= 1)")
        self.miner.set_pools(self._unit(positive_emb), positive_labels,
                             self._unit(negative_emb), negative_labels,
                             positive_ids=ids, negative_ids=ids)
        self._pool_words.assign(self._pack(images))

    @property
    def pool_images(self) -> tf.Tensor:
        """The pool's uint8 source images (M, H, W, C), row i = row i of the negative pool."""
        return self._unpack(self._pool_words)

    def _pack(self, images: np.ndarray) -> tf.Tensor:
        flat = images.reshape(len(images), -1)
        flat = np.pad(flat, [(0, 0), (0, -self._pixels % 4)])
        return tf.bitcast(tf.constant(flat.reshape(len(images), -1, 4)), tf.int32)

    def _unpack(self, words) -> tf.Tensor:
        flat = tf.reshape(tf.bitcast(words, tf.uint8), [tf.shape(words)[0], -1])
        return tf.reshape(flat[:, :self._pixels], [-1, *self.source_shape])

    def call(self, inputs, training=None):
        """{"embedding": E, "logits": A} of the student: eq. 4 needs both from one pass."""
        return self.embedder(inputs, training=training)

    def _unit(self, embedding):
        """`embedding` for eq. 3 and the mining (step and pools): unit length (float32) with
        `normalize`, else as it is."""
        if not self.normalize:
            return embedding
        return tf.math.l2_normalize(tf.cast(embedding, tf.float32), axis=-1)

    def objective(self, images, labels, training: bool = True) -> dict:
        """Eq. 4 for one batch against the current pools (docs/DESIGN.md: the triplet step).

        Returns this replica's `loss` (scaled for summation over replicas, see `compute_loss`),
        `ce` (batch mean), `triplet` (eq. 3 over this replica's anchors), the anchors' `logits`
        and the mined triplets.
        """
        return self._eq4(self(images, training=training), labels, training)

    def _eq4(self, out, labels, training: bool) -> dict:
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        anchor = self._unit(out["embedding"])
        logits = tf.cast(out["logits"], tf.float32)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        # Choosing triplets is not differentiated (arg-max/min); the distances are.
        mined = self.miner.mine(tf.stop_gradient(anchor), labels)
        raw = self._unpack(tf.gather(self._pool_words, tf.maximum(mined.negative_index, 0)))
        negative = self._unit(self.embedder(to_view(raw, self.image_size, self.occlusion),
                                            training=training)["embedding"])
        triplet = triplet_loss(anchor, mined.positive_emb, negative, margin=self.margin,
                               reduction=self.reduction, mask=mined.valid)  # eq. 3
        if self.reduction == "sum":
            loss = ce / replicas + self.lam * triplet  # eq. 4: the sum is not divided
        else:
            loss = (ce + self.lam * triplet) / replicas
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), tf.float32) / replicas
        return {"loss": loss, "ce": ce, "triplet": triplet, "logits": logits, "mined": mined}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Eq. 4 of the batch for Keras' own train and test steps (validation: the validation
        anchors mined against the epoch's training pools, so `val_loss` reads like `loss`).

        Returns this replica's share, which Keras' step differentiates as it is (it divides
        only compiled losses by the replica count, never this value): the replicas' gradients
        are summed, so the CE mean and the weight decay enter divided by R, the eq. 3 sum of
        this replica's anchors undivided (eq. 3 sums over the global batch; with
        `reduction="mean"` it is divided by R too). The metrics (`self.metrics`, which replace
        Keras' loss tracker) are the global batch's eq. 4, CE, eq. 3 and accuracy.
        """
        del x, sample_weight  # eq. 4 weighs every anchor alike
        result = self._eq4(y_pred, y, training)
        # Metrics average over replicas, and the per-replica sums of eq. 3 add up to the
        # global one, hence the factor R on the reported eq. 3.
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        triplet = result["triplet"] * (replicas if self.reduction == "sum" else 1.0)
        self.loss_tracker.update_state(result["ce"] + self.lam * triplet)
        self.ce_tracker.update_state(result["ce"])
        self.triplet_tracker.update_state(triplet)
        self.accuracy_tracker.update_state(tf.reshape(y, [-1]), result["logits"])
        return result["loss"]


def embed(embedder: keras.Model, prepared, split: str, rows, *, image_size: int, view,
          batch_size: int, verbose: int = 0) -> np.ndarray:
    """relu7 embeddings (float32, (len(rows), D)) of `rows` of a split in one view."""
    return split_outputs(embedder, prepared, split, view, batch_size=batch_size,
                         image_size=image_size, indices=rows, verbose=verbose)["embedding"]


class MiningPools(keras.callbacks.Callback):
    """Refreshes a TripletModel's pools at the start of every epoch (docs/DESIGN.md).

    Args:
      trainer: the TripletModel.
      prepared: the prepared data set; pools come from its "train" split.
      rows: the training rows in use (all, or a `max_train_examples` subset), sorted.
      positive_embeddings: subset rows -> the teacher's full-view embeddings of those rows.
      seed, fraction: the subset draw (`mining_subset`).
      batch_size: for embedding the subset with the student.
    """

    def __init__(self, trainer: TripletModel, prepared, *, rows,
                 positive_embeddings: Callable[[np.ndarray], np.ndarray], seed: int,
                 fraction: float = 0.1, batch_size: int = 64, verbose: int = 0):
        super().__init__()
        self.trainer = trainer
        self.prepared = prepared
        self.rows = np.asarray(rows, dtype=np.int64)
        self.positive_embeddings = positive_embeddings
        self.seed = int(seed)
        self.fraction = float(fraction)
        self.batch_size = int(batch_size)
        self.verbose = verbose
        self.subset = None

    def on_epoch_begin(self, epoch, logs=None):
        subset = mining_subset(self.rows, self.fraction, self.seed, epoch)
        labels = np.asarray(self.prepared.labels("train"))[subset]
        negative = embed(self.trainer.embedder, self.prepared, "train", subset,
                         image_size=self.trainer.image_size, view=self.trainer.occlusion,
                         batch_size=self.batch_size)
        self.trainer.set_pools(
            positive_emb=np.asarray(self.positive_embeddings(subset), dtype=np.float32),
            positive_labels=labels, negative_emb=negative, negative_labels=labels,
            images=np.asarray(self.prepared.images("train")[subset]), ids=subset)
        self.subset = subset
