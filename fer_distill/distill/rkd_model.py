"""Relational knowledge distillation between a full-view teacher and an occluded-view student
(Park et al., CVPR 2019; `fer_distill.distill.rkd`), as a Keras model. Not in the paper.

`RKDModel` wraps the student; `fit` trains it with

    L(θ_S) = CE(y, N_S) + λ·(w_d·L_dist(S, T) + w_a·L_angle(S, T))

where S are the student's embeddings E_S (relu7; ResNet-50's pool5) of the batch's OCCLUDED
views and T the frozen teacher's embeddings E_T of the FULL views of the same images, from a
table gathered by "index" (`fer_distill.train.teacher_cache`) or from the live teacher. Inputs
as for `KDModel`. Logged: `rkd_ce`, `rkd_dist`, `rkd_angle` (λ·w_d·L_dist, λ·w_a·L_angle).
Why: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import keras
import tensorflow as tf

from fer_distill.distill import teacher_table
from fer_distill.distill.rkd import ANGLE_WEIGHT, DISTANCE_WEIGHT, rkd_terms
from fer_distill.models import embedding_model


class RKDModel(keras.Model):
    """Trains `student` with CE + λ·RKD against a frozen `teacher`'s embeddings.

    Args:
      student: the classifier being trained.
      teacher: the frozen teacher; needed in live mode, optional when tables are given.
      lam, distance_weight, angle_weight: λ, w_d, w_a.
      train_embeddings / eval_embeddings: (N, D_T) teacher embeddings of the training split
        and of the validation split, row i = the image with "index" i.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model | None = None, *,
                 lam: float, distance_weight: float = DISTANCE_WEIGHT,
                 angle_weight: float = ANGLE_WEIGHT, train_embeddings=None,
                 eval_embeddings=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("lam", lam), ("distance_weight", distance_weight),
                            ("angle_weight", angle_weight)):
            if not float(value) >= 0.0:
                raise ValueError(f"RKDModel: {name} must be >= 0, got {value!r}")
        self.student = student
        self.embedder = embedding_model(student)
        self.teacher = teacher
        self.teacher_embedder = None
        if teacher is not None:
            teacher.trainable = False  # only θ_S is updated
            self.teacher_embedder = embedding_model(teacher)
        self.lam = float(lam)
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)
        dim = (int(self.teacher_embedder.output["embedding"].shape[-1]) if teacher is not None
               else None)
        given = train_embeddings if train_embeddings is not None else eval_embeddings
        if given is not None:
            dim = int(tf.convert_to_tensor(given).shape[-1])
        self.teacher_dim = dim if dim is not None else int(
            self.embedder.output["embedding"].shape[-1])
        # The mode is fixed here, as KDModel's: a phase has a table from construction on, or
        # never, so the traced step's choice between table and teacher cannot go stale.
        self.train_embeddings = teacher_table.table(self.teacher_dim, train_embeddings)
        self.eval_embeddings = teacher_table.table(self.teacher_dim, eval_embeddings)
        self.set_embeddings(train=train_embeddings, eval=eval_embeddings)
        self.ce_tracker = keras.metrics.Mean(name="rkd_ce")
        self.dist_tracker = keras.metrics.Mean(name="rkd_dist")
        self.angle_tracker = keras.metrics.Mean(name="rkd_angle")
        self._step_embedding = None

    def set_embeddings(self, *, train=None, eval=None) -> None:
        """Replaces the cached teacher embeddings for training and/or evaluation, (N, D_T)
        each; only a phase that was given a table at construction has one."""
        teacher_table.assign("RKDModel", "embeddings", self.teacher_dim,
                             (("train", train, self.train_embeddings),
                              ("eval", eval, self.eval_embeddings)))

    def call(self, inputs, training=None):
        out = self.embedder(inputs["image"], training=training)
        # why object.__setattr__: a per-trace tensor handed to compute_loss in the same step,
        # not state Keras should track.
        object.__setattr__(self, "_step_embedding", out["embedding"])
        return out["logits"]

    def teacher_embeddings(self, inputs, training: bool):
        """E_T for the batch: gathered from the phase's table, or the live teacher."""
        live = None if self.teacher_embedder is None else (
            lambda full: self.teacher_embedder(full, training=False)["embedding"])
        return teacher_table.rows("RKDModel", "embeddings",
                                  self.train_embeddings if training else self.eval_embeddings,
                                  inputs, live)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del sample_weight  # every image weighs alike
        labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.cast(y_pred, tf.float32)))
        student = self._step_embedding
        if student is None:  # compute_loss called without a forward pass of this model
            student = self.embedder(x["image"], training=training)["embedding"]
        dist, angle = rkd_terms(student, self.teacher_embeddings(x, training))
        dist = self.lam * self.distance_weight * dist
        angle = self.lam * self.angle_weight * angle
        self.ce_tracker.update_state(ce)
        self.dist_tracker.update_state(dist)
        self.angle_tracker.update_state(angle)
        loss = ce + dist + angle
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        # Keras' convention: each replica returns its mean / replicas; gradients are summed.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype)
