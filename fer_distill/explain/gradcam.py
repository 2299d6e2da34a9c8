"""Grad-CAM explanations (Selvaraju et al., ICCV 2017) and the paper's Figure 3.

For a class c and the last convolutional feature map A (K channels, after its ReLU: for VGG-f
`relu5`, for VGG-face `relu5_3`, for `mini` `relu2`; `target_layer`):

    alpha_k^c = mean over (i, j) of d y^c / d A_k[i, j]        (Grad-CAM eq. 1)
    L^c       = ReLU( sum_k alpha_k^c A_k )                      (Grad-CAM eq. 2)

with y^c the fc8 logit, on the image in the network's own view. `gradcam(model, inputs)`;
`fused_gradcam` for the fused SVM; `explain`, `figure` for Figure 3. Heat maps are in [0, 1].
Why (scaling, the fused model's map): docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from fer_distill.atomic import atomic_path
from fer_distill.models import embedding_layer, logits_layer
from fer_distill.serving.preprocess import model_input
from fer_distill.serving.servable import CLASSIFIER


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") == "relu"
    return False


def target_layer(model: keras.Model) -> str:
    """The layer Grad-CAM looks at: the last convolution with a spatial output (more than one
    position), taken after its ReLU when a ReLU layer follows it (or the convolution itself
    when it applies its own ReLU activation)."""
    last = None
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.output.shape)
            if len(shape) == 4 and (shape[1] or 2) * (shape[2] or 2) > 1:
                last = index
    if last is None:
        raise ValueError(f"model {model.name!r} has no convolution with a spatial output for "
                         "Grad-CAM; name the layer explicitly (layer=...)")
    conv = model.layers[last]
    for later in model.layers[last + 1:]:
        if _is_relu(later) and later.input is conv.output:
            return later.name
    return conv.name


@dataclass
class GradCAM:
    """Grad-CAM of a batch.

    heatmap: (N, H, W) float32 in [0, 1] at the network's input size (upsampled, normalised).
    cam: (N, h, w) float32, ReLU(sum_k alpha_k A_k) at the feature map's size, unnormalised.
    weights: per network, (N, K) float32 channel weights alpha_k.
    class_index: (N,) int, the class explained. scores: (N, C) float32, the logits (or, for the
    fused model, the SVM's decision values).
    layers: the feature layer(s) used.
    """

    heatmap: np.ndarray
    cam: np.ndarray
    weights: list
    class_index: np.ndarray
    scores: np.ndarray
    layers: tuple


def _finish(feature_maps, gradients, scores, class_index, input_size, layers) -> GradCAM:
    sizes = {tuple(f.shape[1:3]) for f in feature_maps}
    if len(sizes) != 1:
        raise ValueError(f"Grad-CAM over several networks needs feature maps of one size, got "
                         f"{sorted(sizes)} from layers {layers}")
    weights, weighted = [], 0.0
    for features, gradient in zip(feature_maps, gradients):
        features = tf.cast(features, tf.float32)
        alpha = tf.reduce_mean(tf.cast(gradient, tf.float32), axis=(1, 2))  # Grad-CAM eq. 1
        weights.append(alpha.numpy())
        weighted = weighted + tf.einsum("nhwk,nk->nhw", features, alpha)
    cam = tf.nn.relu(weighted)  # Grad-CAM eq. 2
    upsampled = tf.image.resize(cam[..., None], list(input_size), method="bilinear")[..., 0]
    peak = tf.reduce_max(upsampled, axis=(1, 2), keepdims=True)
    heatmap = tf.math.divide_no_nan(upsampled, peak)
    return GradCAM(heatmap.numpy(), cam.numpy(), weights, np.asarray(class_index),
                   np.asarray(scores), tuple(layers))


def _class_score(scores, class_index):
    scores = tf.cast(scores, tf.float32)
    if class_index is None:
        class_index = tf.argmax(scores, axis=-1, output_type=tf.int32)
    else:
        class_index = tf.broadcast_to(tf.cast(class_index, tf.int32), tf.shape(scores)[:1])
    # Summing the per-example scores gives each example's own gradient: examples do not
    # interact in inference mode.
    return tf.reduce_sum(tf.gather(scores, class_index, batch_dims=1)), class_index


def _check_classes(class_index, width: int):
    if class_index is not None:
        values = np.atleast_1d(np.asarray(class_index))
        if values.size and (values.min() < 0 or values.max() >= width):
            raise ValueError(f"class_index must lie in [0, {width}), got {values.tolist()}")


def gradcam(model: keras.Model, inputs, class_index=None, layer: str | None = None) -> GradCAM:
    """Grad-CAM of `model` for `inputs` (float32 (N, H, W, 3), the network's input: 0-255
    pixels, resized, view applied). `class_index`: an int, (N,) ints, or None for the
    predicted class. `layer`: the feature layer (default `target_layer(model)`)."""
    layer = layer or target_layer(model)
    head = logits_layer(model)
    _check_classes(class_index, int(head.output.shape[-1]))
    branch = keras.Model(model.inputs, [model.get_layer(layer).output, head.output])
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        features, logits = branch(inputs, training=False)
        score, chosen = _class_score(logits, class_index)
    gradients = tape.gradient(score, features)
    return _finish([features], [gradients], tf.cast(logits, tf.float32).numpy(),
                   chosen.numpy(), inputs.shape[1:3], [layer])


def fused_gradcam(kd_model: keras.Model, triplet_model: keras.Model, weights, bias, inputs,
                  class_index=None, layers: Sequence[str | None] = (None, None)) -> GradCAM:
    """Grad-CAM of the fused SVM's decision (docs/DESIGN.md, "Evaluation, report, serving").
    `weights`, `bias`: the SVM's linear map (decision = [E_KD ; E_triplet] @ weights + bias,
    `FusionSVM.linear_map`). `inputs`: one float32 batch both students see, or a pair (one per
    student)."""
    models = (kd_model, triplet_model)
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs, inputs)
    inputs = [tf.convert_to_tensor(x, tf.float32) for x in inputs]
    layers = [name or target_layer(m) for name, m in zip(layers, models)]
    kernel = tf.constant(np.asarray(weights, np.float32))
    offset = tf.constant(np.asarray(bias, np.float32))
    _check_classes(class_index, int(kernel.shape[1]))
    branches = [keras.Model(m.inputs, [m.get_layer(name).output, embedding_layer(m).output])
                for m, name in zip(models, layers)]
    with tf.GradientTape() as tape:
        for x in inputs:
            tape.watch(x)
        outputs = [branch(x, training=False) for branch, x in zip(branches, inputs)]
        embedding = tf.concat([tf.cast(e, tf.float32) for _, e in outputs], axis=-1)
        decision = embedding @ kernel + offset
        score, chosen = _class_score(decision, class_index)
    feature_maps = [f for f, _ in outputs]
    gradients = tape.gradient(score, feature_maps)
    return _finish(feature_maps, gradients, decision.numpy(), chosen.numpy(),
                   inputs[0].shape[1:3], layers)


@dataclass
class Explanation:
    """What Figure 3 shows per example: the full face and the network's view at the input
    size (float32 0-255), and the Grad-CAM."""

    full: np.ndarray
    seen: np.ndarray
    gradcam: GradCAM
    view: str


def explain(servable, images: Sequence[np.ndarray], class_index=None,
            layers: Sequence[str | None] | None = None) -> Explanation:
    """Grad-CAM of a `fer_distill.serving.servable.Servable` (classifier or fusion) on face
    crops (uint8 (H, W, 1|3) each, any sizes), preprocessed as in training and serving."""
    sizes = servable.input_sizes
    if len(set(sizes)) != 1:
        raise ValueError(f"Grad-CAM of a fusion needs students of one input size, got {sizes}")
    size = sizes[0]
    if len(images) == 0:
        raise ValueError("explain: no images given")

    def batch(view):
        return tf.concat([model_input(np.asarray(image)[None], size, view)
                          for image in images], axis=0)

    full, seen = batch("full"), batch(servable.view)
    if servable.kind == CLASSIFIER:
        result = gradcam(servable.models[0], seen, class_index,
                         layer=(layers or (None,))[0])
    else:
        weights, bias = servable.linear_map
        result = fused_gradcam(*servable.models, weights, bias, seen, class_index,
                               layers=layers or (None, None))
    return Explanation(full.numpy(), seen.numpy(), result, str(servable.view))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`heatmap` ([0, 1], jet colours) blended over `image` (0-255); float RGB in [0, 1]."""
    import matplotlib  # why here: seconds to import; only the figures need it

    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3]
    return np.clip((1.0 - alpha) * np.asarray(image, np.float32) / 255.0 + alpha * colours,
                   0.0, 1.0)


def figure(explanation: Explanation, output: str | os.PathLike,
           class_names: Sequence[str], labels: Sequence[int] | None = None, *,
           title: str | None = None, alpha: float = 0.5, dpi: int = 100) -> Path:
    """Writes the paper's Figure 3 for `explanation` as one PNG (atomically).

    One column per example; rows: the full face, the face as the network sees it (its view:
    lower-half-visible for the students), the Grad-CAM map, and the map over the seen face.
    Under each column: the predicted label, and the true one when `labels` are given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why here: as in `overlay`
    from matplotlib.figure import Figure  # why here: as in `overlay`

    result = explanation.gradcam
    count = len(result.heatmap)
    rows = ("full face", f"seen ({explanation.view})", "Grad-CAM", "overlay")
    cell = 1.6
    fig = Figure(figsize=(cell * count + 0.5, cell * len(rows) + 0.9 + (0.3 if title else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), count, squeeze=False)
    predicted = np.argmax(result.scores, axis=-1)
    for j in range(count):
        pictures = (explanation.full[j] / 255.0, explanation.seen[j] / 255.0,
                    result.heatmap[j], overlay(explanation.seen[j], result.heatmap[j], alpha))
        for i, picture in enumerate(pictures):
            ax = axes[i][j]
            if i == 2:
                ax.imshow(picture, cmap="jet", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(np.clip(picture, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(rows[i], fontsize=8)
        caption = f"pred: {class_names[int(predicted[j])]}"
        if int(result.class_index[j]) != int(predicted[j]):
            caption += f"\nexplains: {class_names[int(result.class_index[j])]}"
        if labels is not None:
            caption += f"\ntrue: {class_names[int(labels[j])]}"
        axes[-1][j].set_xlabel(caption, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    output = Path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return output
