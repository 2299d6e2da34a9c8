"""The exported SavedModel computes what the Keras model computes on the pipeline's inputs.

Reference numbers come from the training pipeline itself (`make_dataset` on a prepared data set
holding the same images) fed to the Keras model, so serving is checked against training, not
against a second copy of the serving code.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from fer_distill.data.pipeline import make_dataset
from fer_distill.data.prepared import PreparedWriter, read_prepared
from fer_distill.models import embedding_model
from fer_distill.serving import export as export_lib
from fer_distill.serving.export import export_savedmodel, read_metadata
from fer_distill.serving.servable import Servable, load_servable

from .conftest import write_run

SHAPES = [(48, 48, 1), (27, 41, 3), (32, 32, 3)]  # FER+-like grey, odd RGB, the model's size


def _images(shape, n=5, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish content (a gradient plus noise), so resizing matters but is not all noise
    h, w, c = shape
    base = np.linspace(0, 255, h * w * c).reshape(h, w, c)
    return np.clip(base[None] * rng.uniform(0.3, 1.0, (n, 1, 1, 1))
                   + rng.normal(0, 40, (n, h, w, c)), 0, 255).astype(np.uint8)


def _pipeline_inputs(tmp_path, images, view, image_size=32):
    """The tensors training feeds the model for `images`, from `make_dataset` itself."""
    n = len(images)
    prepared = tmp_path / f"prepared_{view}_{image_size}"
    with PreparedWriter(prepared, dataset="demo",
                        image_shape=images.shape[1:]) as writer:
        for split in ("train", "validation", "test"):
            writer.add_split(split, np.zeros(n, np.int32), [f"{i}.png" for i in range(n)],
                             images=images)
    key = "full" if view == "full" else "occluded"
    dataset = make_dataset(read_prepared(prepared), "test", image_size=image_size,
                           batch_size=n, training=False, views=(key,), occlusion=view)
    return next(iter(dataset))[key]


def _rgb(images):
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _png(image):
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory):
    run, model = student
    path = export_savedmodel(load_servable(run), tmp_path_factory.mktemp("export") / "1")
    return path, tf.saved_model.load(str(path)), model


def _assert_matches_keras(outputs, model, inputs):
    want = embedding_model(model)(inputs)
    logits, embedding = want["logits"].numpy(), want["embedding"].numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs["embedding"].numpy(), embedding, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs["probabilities"].numpy(),
                               tf.nn.softmax(logits).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(outputs["class_id"].numpy(), np.argmax(logits, axis=1))
    assert outputs["probabilities"].shape == (len(inputs), 8)
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["class_id"].dtype == tf.int64
    # the logits spread over several units: a wrong preprocessing would not pass unnoticed
    assert np.ptp(logits, axis=1).min() > 1.0


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_both_signatures_match_keras_on_the_pipelines_inputs(exported, tmp_path, shape):
    path, loaded, model = exported
    images = _images(shape)
    inputs = _pipeline_inputs(tmp_path, images, "lower_half_visible")
    by_array = loaded.signatures["predict_images"](images=tf.constant(_rgb(images)))
    _assert_matches_keras(by_array, model, inputs)
    # grey sources are encoded as 1-channel PNGs, as FER+ ships them
    by_png = loaded.signatures["serving_default"](
        image_bytes=tf.constant([_png(image) for image in images]))
    _assert_matches_keras(by_png, model, inputs)
    names = [n.decode() for n in by_png["class_name"].numpy()]
    from fer_distill.data.classes import CLASS_NAMES
    assert names == [CLASS_NAMES[i] for i in by_png["class_id"].numpy()]


def test_jpeg_input_matches_decoding_by_hand(exported):
    _, loaded, model = exported
    images = _images((40, 36, 3), n=3, seed=1)
    jpegs = [tf.io.encode_jpeg(image, quality=80).numpy() for image in images]
    decoded = np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])
    assert not np.array_equal(decoded, images)  # lossy: the served pixels are the decoded ones
    got = loaded.signatures["serving_default"](image_bytes=tf.constant(jpegs))
    want = loaded.signatures["predict_images"](images=tf.constant(decoded))
    for key in ("logits", "probabilities", "embedding"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-5, atol=1e-5)


def test_one_request_may_mix_sizes_and_formats(exported):
    _, loaded, _ = exported
    crops = [_images((20, 30, 3), 1, 2)[0], _images((64, 45, 3), 1, 3)[0],
             _images((32, 32, 1), 1, 4)[0]]
    encoded = [_png(crops[0]), tf.io.encode_jpeg(crops[1]).numpy(), _png(crops[2])]
    together = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    for i, item in enumerate(encoded):
        alone = loaded.signatures["serving_default"](image_bytes=tf.constant([item]))
        np.testing.assert_allclose(together["logits"].numpy()[i], alone["logits"].numpy()[0],
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        together["logits"].numpy()[0],
        loaded.signatures["predict_images"](images=tf.constant(crops[0][None]))["logits"]
        .numpy()[0], rtol=1e-5, atol=1e-5)


def test_an_empty_request_gets_empty_outputs(exported):
    _, loaded, _ = exported
    for out in (loaded.signatures["serving_default"](image_bytes=tf.constant([], tf.string)),
                loaded.signatures["predict_images"](images=tf.zeros([0, 9, 9, 3], tf.uint8))):
        assert out["probabilities"].shape == (0, 8) and out["embedding"].shape == (0, 64)
        assert out["class_name"].shape == (0,) and out["class_id"].dtype == tf.int64


def test_bytes_that_are_not_an_image_fail_naming_the_item(exported):
    _, loaded, _ = exported
    good = _png(_images((10, 10, 3), 1)[0])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not encoded images(.|\n)*\[1 2\](.|\n)*hello"):
        loaded.signatures["serving_default"](
            image_bytes=tf.constant([good, b"hello, not an image", b""]))
    with pytest.raises(tf.errors.InvalidArgumentError):  # a PNG header, then nothing
        loaded.signatures["serving_default"](image_bytes=tf.constant([good[:40]]))


def test_binary_non_image_bytes_give_a_readable_invalid_argument(exported):
    """A TIFF (not accepted) is binary: its bytes in the message once made the Python client
    raise UnicodeDecodeError instead of InvalidArgumentError."""
    _, loaded, _ = exported
    good = _png(_images((10, 10, 3), 1)[0])
    tiff = b"II*\x00\x08\x00\x00\x00\xff\xfe\x80\x81\x00\x01"
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not encoded images(.|\n)*\[1\](.|\n)*II\*"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([good, tiff]))


def test_a_corrupt_image_names_its_position_in_the_batch(exported):
    _, loaded, _ = exported
    crops = _images((30, 20, 3), 4, seed=3)
    jpeg = tf.io.encode_jpeg(crops[1]).numpy()
    batch = [_png(crops[0]), jpeg[: len(jpeg) // 3], _png(crops[2]), _png(crops[3])[:70]]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"could not be decoded \(corrupt or truncated(.|\n)*\[1 3\]"):
        loaded.signatures["serving_default"](image_bytes=tf.constant(batch))


def test_the_view_is_applied_and_recorded(exported, tmp_path):
    path, loaded, model = exported
    metadata = read_metadata(path)
    assert metadata["view"] == "lower_half_visible"
    assert metadata["class_names"][0] == "neutral" and len(metadata["class_names"]) == 8
    assert metadata["input_sizes"] == [[32, 32]] and metadata["embedding_size"] == 64
    assert loaded.metadata()["view"].numpy() == b"lower_half_visible"
    assert json.loads(loaded.metadata()["json"].numpy()) == metadata
    # the same network exported as a teacher (view "full") answers differently on the same
    # faces, and exactly like Keras on the full view
    teacher = export_savedmodel(load_servable(write_run(tmp_path / "teacher", model,
                                                        view="full")), tmp_path / "t" / "1")
    images = _images((48, 48, 1))
    full = tf.saved_model.load(str(teacher)).signatures["predict_images"](
        images=tf.constant(_rgb(images)))
    _assert_matches_keras(full, model, _pipeline_inputs(tmp_path, images, "full"))
    half = loaded.signatures["predict_images"](images=tf.constant(_rgb(images)))
    assert np.abs(full["logits"].numpy() - half["logits"].numpy()).max() > 0.1


def test_loads_and_runs_without_this_package(exported, tmp_path):
    """TF Serving knows nothing of fer_distill: the graph must use stock ops only."""
    path, loaded, _ = exported
    script = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        image = tf.io.encode_png(tf.zeros([40, 30, 3], tf.uint8))
        out = loaded.signatures["serving_default"](image_bytes=tf.stack([image, image]))
        assert out["probabilities"].shape == (2, 8), out["probabilities"].shape
        assert not any(m.startswith("fer_distill") for m in sys.modules)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    ops = set()
    for name in export_lib.SIGNATURES:
        graph_def = loaded.signatures[name].graph.as_graph_def()
        ops |= {node.op for node in graph_def.node}
        ops |= {node.op for f in graph_def.library.function for node in f.node_def}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert "DecodeImage" in ops or "DecodePng" in ops


def test_fused_export_matches_the_svm(fuse_run, tmp_path):
    fuse, kd, triplet, svm = fuse_run
    path = export_savedmodel(load_servable(fuse), tmp_path / "fused" / "1")
    metadata = read_metadata(path)
    assert metadata["kind"] == "fusion" and metadata["embedding_size"] == 128
    assert "NOT calibrated" in metadata["outputs"]["probabilities"]
    images = _images((48, 48, 1), n=6, seed=5)
    inputs = _pipeline_inputs(tmp_path, images, "lower_half_visible")
    emb_kd = embedding_model(kd)(inputs)["embedding"].numpy()
    emb_tr = embedding_model(triplet)(inputs)["embedding"].numpy()
    want = svm.decision_function(emb_kd, emb_tr)
    loaded = tf.saved_model.load(str(path))
    for out in (loaded.signatures["predict_images"](images=tf.constant(_rgb(images))),
                loaded.signatures["serving_default"](
                    image_bytes=tf.constant([_png(i) for i in images]))):
        np.testing.assert_allclose(out["decision"].numpy(), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["embedding"].numpy(),
                                   np.concatenate([emb_kd, emb_tr], axis=1),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(out["class_id"].numpy(), svm.predict(emb_kd, emb_tr))
        np.testing.assert_allclose(out["probabilities"].numpy(),
                                   tf.nn.softmax(want).numpy(), rtol=1e-4, atol=1e-5)
    assert np.ptp(want, axis=1).min() > 0.1


def test_export_is_atomic_and_refuses_to_clobber(student, tmp_path, monkeypatch):
    run, _ = student
    servable = load_servable(run)
    target = tmp_path / "models" / "1"

    def broken(path, module):
        raise RuntimeError("verification failed on purpose")

    monkeypatch.setattr(export_lib, "verify_export", broken)
    with pytest.raises(RuntimeError, match="on purpose"):
        export_savedmodel(servable, target)
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []
    monkeypatch.undo()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a SavedModel"):
        export_savedmodel(servable, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    export_savedmodel(servable, target)
    export_savedmodel(servable, target)  # replacing a previous export is fine
    assert (target / "saved_model.pb").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["1"]


def test_full_size_vgg_f_export_matches_keras(tmp_path):
    """The one full-size check: VGG-f's full 224x224 mean image and 13x13 maps in the graph."""
    from fer_distill.models import vgg_f

    model = vgg_f()
    servable = Servable("classifier", (model,), "lower_half_visible")  # no .keras round trip
    path = export_savedmodel(servable, tmp_path / "vgg_f" / "1", verify=False)
    images = _images((48, 48, 1), n=2)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["predict_images"](images=tf.constant(_rgb(images)))
    assert out["embedding"].shape == (2, 4096)
    want = embedding_model(model)(
        _pipeline_inputs(tmp_path, images, "lower_half_visible", image_size=224))
    np.testing.assert_allclose(out["logits"].numpy(), want["logits"].numpy(),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["embedding"].numpy(), want["embedding"].numpy(),
                               rtol=1e-4, atol=1e-4)

