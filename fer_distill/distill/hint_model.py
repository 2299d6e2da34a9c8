"""A FitNets hint masked by the student's view (`fer_distill.distill.hint`), as a Keras model.
Not in the paper.

`HintModel` wraps the student; `fit` trains the student and a 1x1-conv regressor r with

    L(θ_S, r) = CE(y, N_S) + λ·L_hint(r(F_S(x')), F_T(x))

where F_S(x') is the student's map at the hint layer on the OCCLUDED view and F_T(x) the
frozen teacher's map on the FULL view of the same image. Inputs: {"image": occluded
(B, S, S, 3), "full": full view (B, S, S, 3)}; the teacher runs in the step. r is a weight of
this model, not of the student. Logged terms: `hint_ce` and `hint` (λ·L_hint).
Why (live teacher, r's initialisation): docs/DESIGN.md, "Distillation".
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_distill.distill.hint import masked_hint_loss, visible_positions
from fer_distill.models import logits_layer


def feature_model(model: keras.Model, layer: str) -> keras.Model:
    """Same input → {"features": the map at `layer`, "logits": the classifier's output}."""
    names = [l.name for l in model.layers]
    if layer not in names:
        raise ValueError(f"hint: model {model.name!r} has no layer {layer!r} (its layers: "
                         f"{', '.join(names)})")
    features = model.get_layer(layer).output
    if len(features.shape) != 4:
        raise ValueError(f"hint: layer {layer!r} of {model.name!r} gives "
                         f"{tuple(features.shape)}, expected a feature map (None, H, W, C)")
    return keras.Model(model.input, {"features": features,
                                     "logits": logits_layer(model).output},
                       name=f"{model.name}_hint_{layer}")


class HintModel(keras.Model):
    """Trains `student` with CE + λ·masked hint against a frozen `teacher`, both at `layer`.

    Args:
      student, teacher: the classifier being trained and the frozen teacher (same input size,
        the same spatial map at `layer`).
      layer: the hint layer's name in both networks (`hint.HINT_LAYERS` per architecture).
      view: the student's view (a `fer_distill.data.occlusion` view or Mask), for V.
      lam: λ.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, *, layer: str, view,
                 lam: float, **kwargs):
        super().__init__(**kwargs)
        if not float(lam) >= 0.0:
            raise ValueError(f"HintModel: lam must be >= 0, got {lam!r}")
        self.student = student
        self.teacher = teacher
        teacher.trainable = False  # only θ_S (and the regressor) are updated
        self.student_features = feature_model(student, layer)
        self.teacher_features = feature_model(teacher, layer)
        s_shape = tuple(self.student_features.output["features"].shape[1:])
        t_shape = tuple(self.teacher_features.output["features"].shape[1:])
        if s_shape[:2] != t_shape[:2]:
            raise ValueError(f"HintModel: the student's {layer!r} map is {s_shape[:2]} but the "
                             f"teacher's is {t_shape[:2]}; the hint needs the same positions")
        self.layer = layer
        self.lam = float(lam)
        size = int(student.input_shape[1])
        self.visible = tf.constant(visible_positions(view, size, *s_shape[:2]))
        channels_s, channels_t = int(s_shape[2]), int(t_shape[2])
        initializer = (keras.initializers.Constant(np.eye(channels_s, dtype=np.float32)[
            None, None]) if channels_s == channels_t else "glorot_uniform")
        # why float32: the regressor's output meets the teacher's map in the loss.
        self.regressor = keras.layers.Conv2D(channels_t, 1, kernel_initializer=initializer,
                                             name="hint_regressor", dtype="float32")
        self.regressor.build((None, *s_shape[:2], channels_s))
        self.ce_tracker = keras.metrics.Mean(name="hint_ce")
        self.hint_tracker = keras.metrics.Mean(name="hint")
        self._step_features = None

    def call(self, inputs, training=None):
        out = self.student_features(inputs["image"], training=training)
        # why object.__setattr__: see rkd_model.RKDModel.call.
        object.__setattr__(self, "_step_features", out["features"])
        return out["logits"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del sample_weight
        labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.cast(y_pred, tf.float32)))
        features = self._step_features
        if features is None:
            features = self.student_features(x["image"], training=training)["features"]
        teacher = tf.stop_gradient(
            self.teacher_features(x["full"], training=False)["features"])
        hint = self.lam * masked_hint_loss(self.regressor(tf.cast(features, tf.float32)),
                                           teacher, self.visible)
        self.ce_tracker.update_state(ce)
        self.hint_tracker.update_state(hint)
        loss = ce + hint
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype)
