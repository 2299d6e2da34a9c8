"""The prepared format: round trip, atomic writing, and the errors a reader gets."""
import json

import numpy as np
import pytest

from fer_distill.data import prepared
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.prepared import PreparedWriter, read_prepared


def _write(out, *, manifest_only=False, fail_at=None, counts=(5, 3, 2)):
    rng = np.random.default_rng(0)
    data = {}
    with PreparedWriter(out, dataset="demo", image_shape=(4, 6, 1), manifest_only=manifest_only,
                        source={"why": "test"}) as writer:
        for split, n in zip(prepared.SPLITS, counts):
            if split == fail_at:
                raise RuntimeError("crash while writing " + split)
            images = rng.integers(0, 256, (n, 4, 6, 1), dtype=np.uint8)
            labels = rng.integers(0, 8, n)
            names = [f"{split}_{i}.png" for i in range(n)]
            if manifest_only:
                writer.add_split(split, labels, names, extra={"code": list(range(n))})
            elif split == "train":  # the large-data path: a memmap filled in place
                target = writer.new_images(split, n)
                target[:] = images
                writer.add_split(split, labels, names, extra={"code": list(range(n))})
            else:
                writer.add_split(split, labels, names, images=images,
                                 extra={"code": list(range(n))})
            data[split] = (images, labels, names)
    return data


def test_round_trip(tmp_path):
    out = tmp_path / "set"
    data = _write(out)
    p = read_prepared(out)
    assert p.class_names == CLASS_NAMES
    assert p.image_shape == (4, 6, 1)
    assert p.dataset == "demo" and not p.manifest_only
    assert p.summary["source"] == {"why": "test"}
    for split, (images, labels, names) in data.items():
        stored = p.images(split)
        assert isinstance(stored, np.memmap) and not stored.flags.writeable
        np.testing.assert_array_equal(stored, images)
        assert p.labels(split).dtype == np.int32
        np.testing.assert_array_equal(p.labels(split), labels)
        manifest = p.manifest(split)
        np.testing.assert_array_equal(manifest["index"], np.arange(len(names)))
        assert list(manifest["name"]) == names
        np.testing.assert_array_equal(manifest["label"], labels)
        assert list(manifest["code"]) == [str(i) for i in range(len(names))]
        counts = p.summary["splits"][split]
        assert counts["count"] == len(labels)
        assert counts["per_class"] == {c: int((labels == k).sum())
                                       for k, c in enumerate(CLASS_NAMES)}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["set"]  # no temporaries left


def test_crash_leaves_no_directory(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(RuntimeError, match="crash"):
        _write(out, fail_at="test")
    assert list(tmp_path.iterdir()) == []


def test_crash_keeps_previous_complete_directory(tmp_path):
    out = tmp_path / "set"
    first = _write(out)
    with pytest.raises(RuntimeError, match="crash"):
        _write(out, fail_at="validation", counts=(7, 7, 7))
    np.testing.assert_array_equal(read_prepared(out).images("train"), first["train"][0])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["set"]


def test_rerun_replaces_complete_directory(tmp_path):
    out = tmp_path / "set"
    _write(out)
    _write(out, counts=(2, 2, 2))
    assert read_prepared(out).count("train") == 2


def test_missing_split_is_an_error_and_writes_nothing(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(ValueError, match=r"splits \['test'\] were never added"):
        with PreparedWriter(out, dataset="demo", image_shape=(2, 2, 1)) as writer:
            for split in ("train", "validation"):
                writer.add_split(split, [0], ["a"], images=np.zeros((1, 2, 2, 1), np.uint8))
    assert not out.exists()


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a prepared data set"):
        _write(out)
    assert (out / "precious.txt").read_text() == "keep me"


def test_bad_split_content(tmp_path):
    with PreparedWriter(tmp_path / "set", dataset="demo", image_shape=(2, 2, 1)) as writer:
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 8\)"):
            writer.add_split("train", [8], ["a"], images=np.zeros((1, 2, 2, 1), np.uint8))
        with pytest.raises(ValueError, match="images must be uint8"):
            writer.add_split("train", [0], ["a"], images=np.zeros((1, 2, 2, 3), np.uint8))
        with pytest.raises(ValueError, match="2 names for 1 labels"):
            writer.add_split("train", [0], ["a", "b"], images=np.zeros((1, 2, 2, 1), np.uint8))
        with pytest.raises(ValueError, match="unknown split"):
            writer.add_split("dev", [0], ["a"], images=np.zeros((1, 2, 2, 1), np.uint8))
        for split in prepared.SPLITS:
            writer.add_split(split, [0], ["a"], images=np.zeros((1, 2, 2, 1), np.uint8))


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prepared(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        read_prepared(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "summary.json").write_text(json.dumps({"format": "tfds/4"}))
    with pytest.raises(ValueError, match="format 'tfds/4', expected 'fer_distill.prepared/1'"):
        read_prepared(foreign)


def test_manifest_only_reads_labels_but_not_images(tmp_path):
    out = tmp_path / "set"
    data = _write(out, manifest_only=True)
    p = read_prepared(out)
    assert p.manifest_only
    np.testing.assert_array_equal(p.labels("train"), data["train"][1])
    assert list(p.manifest("test")["name"]) == data["test"][2]
    assert not (out / "train" / "images.npy").exists()
    with pytest.raises(ValueError, match="--manifest_only"):
        p.images("train")


def test_reader_checks_image_file_against_summary(tmp_path):
    out = tmp_path / "set"
    _write(out)
    np.save(out / "test" / "images.npy", np.zeros((9, 4, 6, 1), np.uint8))
    with pytest.raises(ValueError, match=r"summary.json promises uint8 \(2, 4, 6, 1\)"):
        read_prepared(out).images("test")
