"""The teacher's cached outputs: computed once, reused while they match, recomputed when not."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_distill.data.prepared import read_prepared
from fer_distill.models import embedding_model, mini
from fer_distill.train.teacher_cache import TeacherOutputs, teacher_outputs


def test_cache_is_reused_while_it_matches(demo_data, tmp_path):
    prepared = read_prepared(demo_data)
    keras.utils.set_random_seed(0)
    teacher = mini(8, 32)
    path = tmp_path / "teacher.keras"
    teacher.save(path)
    rows = np.array([5, 1, 9, 30])

    def outputs(**changes):
        args = dict(image_size=32, batch_size=3, cache_dir=tmp_path / "cache",
                    teacher_path=path, policy="float32", embeddings=True, verbose=0)
        return teacher_outputs(teacher, prepared, "train", rows, **{**args, **changes})

    first = outputs()
    np.testing.assert_array_equal(first.index, np.sort(rows))
    from fer_distill.data.pipeline import make_dataset

    batch = next(iter(make_dataset(prepared, "train", image_size=32, batch_size=4,
                                   training=False, views=("full",), indices=np.sort(rows))))
    expected = embedding_model(teacher)(batch["full"])
    np.testing.assert_allclose(first.logits, expected["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(first.embeddings_of([30, 1]),
                               expected["embedding"].numpy()[[3, 0]], atol=1e-5)
    table = first.logits_table(prepared.count("train"))
    np.testing.assert_array_equal(table[9], first.logits[2])
    assert not table[0].any()

    stamp = (tmp_path / "cache" / "teacher-train" / "logits.npy").stat().st_mtime_ns
    again = outputs(embeddings=False)  # a cache with embeddings serves logits too
    assert (tmp_path / "cache" / "teacher-train" / "logits.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.logits, first.logits)

    keras.utils.set_random_seed(1)
    mini(8, 32).save(path)  # another teacher in the same file: recomputed
    outputs()
    assert (tmp_path / "cache" / "teacher-train" / "logits.npy").stat().st_mtime_ns != stamp


def test_rows_outside_the_cache_are_refused():
    cache = TeacherOutputs(np.array([2, 4]), np.zeros((2, 8), np.float32),
                           np.zeros((2, 3), np.float32))
    with pytest.raises(KeyError, match=r"\[3\]"):
        cache.embeddings_of([4, 3])
