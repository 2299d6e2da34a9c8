"""A SavedModel that TF Serving loads as is: preprocessing, view and model in one graph.

    export_savedmodel(load_servable(RUN), "DIR/1")

Signatures: `serving_default` (`image_bytes`, tf.string (N,): encoded crops of any sizes) and
`predict_images` (`images`, uint8 (N, H, W, 3) RGB crops of one size); both return
`probabilities`, `class_id`, `class_name`, `embedding`, and `logits` (classifier) or
`decision` (fused SVM; its probabilities are a softmax of decisions, not calibrated). The
view and provenance ride in `assets/metadata.json` (`read_metadata`); the version directory
appears only complete. Why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import fer_distill
from fer_distill.atomic import atomic_path
from fer_distill.data.occlusion import occlude, resolve_view
from fer_distill.models import embedding_layer, embedding_model
from fer_distill.serving import preprocess
from fer_distill.serving.servable import CLASSIFIER, Servable

log = logging.getLogger(__name__)

FORMAT = "fer_distill.savedmodel/1"
METADATA_FILE = "metadata.json"
SIGNATURES = ("serving_default", "predict_images")

PROBABILITIES_MEANING = {
    CLASSIFIER: "softmax of the network's fc8 logits",
    "fusion": ("softmax of the linear SVM's one-vs-rest decision values: NOT calibrated "
               "probabilities (LinearSVC has none); same argmax as `decision`, sums to 1"),
}


@dataclasses.dataclass(frozen=True)
class _Static:
    sizes: tuple
    distinct_sizes: tuple
    view: object
    view_name: str
    class_names: tuple
    metadata: dict
    metadata_json: str


class ServingModule(tf.Module):
    """The servable networks plus preprocessing, as `tf.function`s with fixed signatures.

    Used in memory by `fer_distill.serving.predict` (same code path as the export) and saved by
    `export_savedmodel`.
    """

    def __init__(self, servable: Servable, metadata: dict | None = None):
        super().__init__(name="fer_distill_serving")

        self.kind = servable.kind
        self.networks = [embedding_model(model) for model in servable.models]
        if servable.linear_map is not None:
            weights, bias = servable.linear_map
            # The SVM's linear map as a layer: decision = [E_KD ; E_triplet] @ W + b.
            self.fusion_svm = keras.layers.Dense(weights.shape[1], dtype="float32",
                                                 name="fusion_svm")
            self.fusion_svm.build((None, weights.shape[0]))
            self.fusion_svm.set_weights([np.asarray(weights, np.float32),
                                         np.asarray(bias, np.float32)])
        metadata = dict(metadata or describe(servable))
        # why a plain object: tf.Module would wrap lists, tuples and dicts for tracking.
        self._static = _Static(
            sizes=servable.input_sizes,
            distinct_sizes=tuple(dict.fromkeys(servable.input_sizes)),
            view=resolve_view(servable.view),  # a mask file is read once, here
            view_name=str(servable.view),
            class_names=tuple(servable.class_names),
            metadata=metadata,
            metadata_json=json.dumps(metadata, indent=2, default=str),
        )

    @property
    def metadata_dict(self) -> dict:
        return dict(self._static.metadata)

    @property
    def metadata_json(self) -> str:
        return self._static.metadata_json

    @property
    def input_sizes(self) -> tuple[tuple[int, int], ...]:
        return self._static.sizes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._static.class_names

    # -- the graph ------------------------------------------------------------------------

    def _forward(self, resized: dict):
        """{(h, w): float32 (N, h, w, 3) 0-255} → the output dict; an empty request gives
        empty outputs (some layers, e.g. the LRN's matmul, reject a batch of zero)."""
        count = tf.shape(next(iter(resized.values())))[0]
        return tf.cond(count > 0, lambda: self.outputs(resized), self._empty)

    def _empty(self):
        width = len(self._static.class_names)
        embedding = int(self._static.metadata["embedding_size"])
        scores = tf.zeros([0, width], tf.float32)
        return {"logits" if self.kind == CLASSIFIER else "decision": scores,
                "probabilities": scores,
                "class_id": tf.zeros([0], tf.int64),
                "class_name": tf.zeros([0], tf.string),
                "embedding": tf.zeros([0, embedding], tf.float32)}

    def outputs(self, resized: dict):
        """{(h, w): float32 (N, h, w, 3) 0-255} → the output dict, for N >= 1: the model's view,
        the network(s), and the fused SVM's linear map. The signatures wrap it for empty
        requests; other exporters (TFLite) that cannot carry that cond call it directly."""
        static = self._static
        outputs = []
        for network, size in zip(self.networks, static.sizes):
            seen = occlude(resized[size], static.view)
            outputs.append(network(seen, training=False))
        if self.kind == CLASSIFIER:
            embedding = outputs[0]["embedding"]
            scores = tf.cast(outputs[0]["logits"], tf.float32)
            result = {"logits": scores}
        else:
            embedding = tf.concat([o["embedding"] for o in outputs], axis=-1)  # [E_KD ; E_tri]
            scores = self.fusion_svm(embedding)
            result = {"decision": scores}
        class_id = tf.argmax(scores, axis=-1, output_type=tf.int64)
        result.update(
            probabilities=tf.nn.softmax(scores, axis=-1),
            class_id=class_id,
            class_name=tf.gather(tf.constant(static.class_names), class_id),
            embedding=tf.cast(embedding, tf.float32),
        )
        return result

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_encoded(self, image_bytes):
        """Encoded image files (any sizes) → outputs; the `serving_default` signature."""
        sizes = self._static.distinct_sizes
        resized = preprocess.decode_and_resize(image_bytes, sizes)
        return self._forward(dict(zip(sizes, resized)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name="images")])
    def predict_images(self, images):
        """uint8 RGB crops (N, H, W, 3) → outputs; the `predict_images` signature."""
        return self._forward({size: preprocess.resize(images, size)
                              for size in self._static.distinct_sizes})

    @tf.function(input_signature=[])
    def metadata(self):
        """The export's metadata: {"json", "view", "kind", "class_names"} (not a signature:
        TF Serving does not need it; clients of the SavedModel in Python do)."""
        static = self._static
        return {"json": tf.constant(static.metadata_json),
                "view": tf.constant(static.view_name),
                "kind": tf.constant(self.kind),
                "class_names": tf.constant(static.class_names)}


def describe(servable: Servable) -> dict:
    """The metadata recorded in an export (and in `ServingModule.metadata`)."""
    outputs = {
        "probabilities": PROBABILITIES_MEANING[servable.kind],
        "class_id": "argmax of the scores, index into class_names",
        "class_name": "class_names[class_id]",
        "embedding": ("relu7 (the paper's E)" if servable.kind == CLASSIFIER
                      else "[E_KD ; E_triplet], the two students' relu7 concatenated"),
    }
    if servable.kind == CLASSIFIER:
        outputs["logits"] = "fc8 (the paper's A)"
    else:
        outputs["decision"] = "the linear SVM's raw one-vs-rest decision values"
    return {
        "format": FORMAT,
        "kind": servable.kind,
        "view": str(servable.view),
        "class_names": list(servable.class_names),
        "input_sizes": [list(size) for size in servable.input_sizes],
        "embedding_size": int(sum(
            int(_embedding_width(m)) for m in servable.models)),
        "preprocessing": ("decode to RGB; bilinear tf.image.resize to the input size; view "
                          f"{servable.view!r} (hidden pixels set to 0); the network subtracts "
                          "its mean image"),
        "signatures": {
            "serving_default": "image_bytes: string (N,) encoded JPEG/PNG/GIF/BMP/WebP crops",
            "predict_images": "images: uint8 (N, H, W, 3) RGB crops",
        },
        "outputs": outputs,
        "source": servable.source,
        "fer_distill_version": fer_distill.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }


def _embedding_width(model) -> int:
    return embedding_layer(model).output.shape[-1]


def _check_output_dir(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"export output {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not (output / "saved_model.pb").is_file():
        raise ValueError(f"export output {output} is a non-empty directory that is not a "
                         "SavedModel; refusing to replace it")
    if not output.name.isdigit():
        log.warning("TF Serving loads numbered versions (MODEL_DIR/1, /2, ...); %s is not one",
                    output)


def export_savedmodel(servable: Servable, output: str | os.PathLike, *,
                      verify: bool = True) -> Path:
    """Writes `servable` as a SavedModel at `output` (atomically) and returns the path.

    With `verify`, the written model is loaded back before it is moved into place and its two
    signatures are run on a probe batch; their outputs must equal the in-memory module's
    (within float tolerance), so a model that does not reload never reaches `output`.
    """
    output = Path(output)
    _check_output_dir(output)
    module = ServingModule(servable)
    signatures = {"serving_default": module.serve_encoded.get_concrete_function(),
                  "predict_images": module.predict_images.get_concrete_function()}
    with tempfile.TemporaryDirectory(prefix="fer_distill_export_") as scratch:
        metadata_path = Path(scratch) / METADATA_FILE
        metadata_path.write_text(module.metadata_json + "\n", encoding="utf-8")
        module.metadata_file = tf.saved_model.Asset(str(metadata_path))
        with atomic_path(output, directory=True) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=signatures)
            if verify:
                verify_export(tmp, module)
    log.info("exported %s model (view %s) to %s", servable.kind, servable.view, output)
    return output


def _probe_images(sizes) -> tuple[np.ndarray, list[bytes]]:
    """A deterministic batch: smooth random colour crops of two sizes, and their PNG files."""
    rng = np.random.default_rng(0)
    height, width = sizes[0]
    batch = rng.integers(0, 256, (2, height + 3, width + 5, 3), dtype=np.uint8)
    encoded = [tf.io.encode_png(batch[0]).numpy(),
               tf.io.encode_png(batch[1, : height // 2 + 1, : width // 2 + 1]).numpy()]
    return batch, encoded


def verify_export(path: str | os.PathLike, module: ServingModule) -> None:
    """Reloads the SavedModel at `path` and checks both signatures against `module`."""
    loaded = tf.saved_model.load(str(path))
    missing = [name for name in SIGNATURES if name not in loaded.signatures]
    if missing:
        raise RuntimeError(f"export {path}: signatures {missing} are missing")
    images, encoded = _probe_images(module.input_sizes)
    checks = (
        ("predict_images", loaded.signatures["predict_images"](images=tf.constant(images)),
         module.predict_images(tf.constant(images))),
        ("serving_default", loaded.signatures["serving_default"](
            image_bytes=tf.constant(encoded)), module.serve_encoded(tf.constant(encoded))),
    )
    for name, got, want in checks:
        for key, value in want.items():
            a, b = got[key].numpy(), value.numpy()
            same = (np.array_equal(a, b) if a.dtype.kind in "iOSU"
                    else np.allclose(a, b, rtol=1e-4, atol=1e-5))
            if not same:
                raise RuntimeError(f"export {path}: signature {name!r} output {key!r} differs "
                                   "from the in-memory model after reloading")


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata.json of an exported SavedModel directory (without loading the graph)."""
    file = Path(path) / "assets" / METADATA_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no assets/{METADATA_FILE}; not a SavedModel written "
                                "by fer_distill.serving.export")
    return json.loads(file.read_text(encoding="utf-8"))
