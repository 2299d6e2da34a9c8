"""The standard teacher-student model (paper section III-A, eqs. 1-2) as a Keras model.

`KDModel` wraps the student; `fit` trains it with

    L_KD'(θ_S) = (1 − λ)·CE(y, softmax(A_S)) + λ·CE(softmax(A_T/τ), softmax(A_S/τ))   (eq. 1)

where A_S is the student's fc8 on the LOWER-HALF view of an image and A_T the teacher's fc8 on
the FULL view of the SAME image. Input, a dict per batch:

    {"image": occluded view (B, S, S, 3), "index": row of the image in its split (B,),
     "full": full view (B, S, S, 3), only in live mode}

A_T comes from a cached table gathered by "index", or from the live teacher; only
`compute_loss` is overridden. Why: docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import keras
import tensorflow as tf

from fer_distill.distill import teacher_table
from fer_distill.distill.kd import kd_loss


class KDModel(keras.Model):
    """Trains `student` with eq. 1 against a frozen `teacher`'s logits (cached or live).

    The mode is fixed at construction (`self.mode`):
      "cached" (`train_logits` given): a training step gathers A_T from the table by the
        batch's `"index"`; evaluation gathers from `eval_logits` when given, else runs
        `teacher` (if given) on `x["full"]`.
      "live" (no tables; `teacher` required): every step runs the teacher on `x["full"]`.

    Args:
      student: a classifier (images -> logits A_S); its weights are what `fit` changes.
      teacher: the frozen teacher (images -> logits A_T); needed in live mode, optional when
        logit tables are given.
      lam, temperature, temperature_squared: λ, τ, and Hinton's τ² factor (off: eq. 1); the
        defaults are TrainConfig's (fer_distill/train/config.py), so λ and τ are required here.
      train_logits / eval_logits: (N, K) teacher logits of the training split and of the split
        used for validation, row i = the image with `"index"` i; `set_logits` replaces them.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model | None = None, *,
                 lam: float, temperature: float, temperature_squared: bool,
                 train_logits=None, eval_logits=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.mode = "cached" if train_logits is not None else "live"
        if self.mode == "live" and (teacher is None or eval_logits is not None):
            raise ValueError(
                "KDModel: give the teacher's logits (train_logits, and eval_logits to "
                "evaluate without the teacher: cached mode) or the teacher itself (live mode)")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False  # only θ_S is updated (paper III-A)
        self.lam = float(lam)
        self.temperature = float(temperature)
        self.temperature_squared = bool(temperature_squared)
        self.num_classes = int(student.output_shape[-1])
        # A phase has a table from construction on, or never: the step's choice between
        # table and teacher is fixed when it is traced.
        self.train_logits = teacher_table.table(self.num_classes, train_logits)
        self.eval_logits = teacher_table.table(self.num_classes, eval_logits)
        self.set_logits(train=train_logits, eval=eval_logits)
        # The two terms' shares of eq. 1, (1 − λ)·hard and λ·soft, logged beside the loss
        # (history, TensorBoard): whether the teacher's term acts at all is read from these.
        self.hard_tracker = keras.metrics.Mean(name="kd_hard")
        self.soft_tracker = keras.metrics.Mean(name="kd_soft")

    def set_logits(self, *, train=None, eval=None) -> None:
        """Replaces the cached teacher logits for training and/or evaluation, (N, K) each;
        only a phase that was given a table at construction has one."""
        teacher_table.assign("KDModel", "logits", self.num_classes,
                             (("train", train, self.train_logits),
                              ("eval", eval, self.eval_logits)))

    def call(self, inputs, training=None):
        return self.student(inputs["image"], training=training)

    def teacher_logits(self, inputs, training: bool):
        """A_T for the batch: gathered from the phase's table, or the live teacher."""
        live = None if self.teacher is None else lambda full: self.teacher(full, training=False)
        return teacher_table.rows("KDModel", "logits",
                                  self.train_logits if training else self.eval_logits,
                                  inputs, live)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del sample_weight  # eq. 1 weighs every image alike
        teacher_logits = self.teacher_logits(x, training)
        terms = [kd_loss(y, y_pred, teacher_logits, lam=lam, temperature=self.temperature,
                         temperature_squared=self.temperature_squared)
                 for lam in (0.0, 1.0)]  # the hard and the soft term of eq. 1, batch means
        hard, soft = (1.0 - self.lam) * terms[0], self.lam * terms[1]
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        loss = hard + soft  # eq. 1
        for extra in self.losses:  # regularisers a user may add to the student
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        # Keras' convention: each replica returns its mean / replicas; gradients are summed.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype)
