"""FER+ preparation: the majority rule, the paper's counts on the real vote files, both raw
layouts giving the same prepared set, the duplicated names, and bad input."""
import csv
import shutil

import cv2
import numpy as np
import pytest

from fer_distill.data import ferplus
from fer_distill.data.classes import CLASS_NAMES
from fer_distill.data.prepared import SPLITS, read_prepared

# The shared README's table (FERPlus majority over the real label.csv files).
EXPECTED = {
    "train": (25045, [8733, 7284, 3136, 3022, 2098, 116, 536, 120]),
    "validation": (3191, [1180, 862, 411, 348, 289, 25, 60, 16]),
    "test": (3137, [1083, 892, 394, 382, 269, 16, 86, 15]),
}


def _majority_slow(votes):
    """FERPlus's rule spelled out for one image: drop single votes, strict majority, not
    unknown/NF."""
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    best = max(range(10), key=lambda k: (kept[k], -k))
    if total == 0 or kept[best] * 2 <= total or best >= 8:
        return -1
    return best


def test_majority_rule_by_hand():
    # 4 neutral, 1 sadness (dropped), 3 anger, 2 disgust: 4 of 9 is no majority
    assert ferplus.majority_labels([[4, 0, 0, 1, 3, 2, 0, 0, 0, 0]]).tolist() == [-1]
    # 6 neutral, 1 surprise, 1 sadness (both dropped), 2 unknown: 6 of 8 -> neutral
    assert ferplus.majority_labels([[6, 0, 1, 1, 0, 0, 0, 0, 2, 0]]).tolist() == [0]
    # 5 of 10 is not strictly more than half
    assert ferplus.majority_labels([[5, 0, 0, 5, 0, 0, 0, 0, 0, 0]]).tolist() == [-1]
    # 9 contempt, 1 neutral -> contempt (column 7)
    assert ferplus.majority_labels([[1, 0, 0, 0, 0, 0, 0, 9, 0, 0]]).tolist() == [7]
    # a majority of NF or unknown drops the image
    assert ferplus.majority_labels([[0, 0, 0, 0, 0, 0, 0, 0, 3, 7]]).tolist() == [-1]
    assert ferplus.majority_labels([[2, 0, 0, 0, 0, 0, 0, 0, 8, 0]]).tolist() == [-1]
    # only single votes: nothing left
    assert ferplus.majority_labels([[1] * 10]).tolist() == [-1]


def test_majority_rule_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    votes = np.stack([rng.multinomial(10, rng.dirichlet(np.full(10, 0.3))) for _ in range(3000)])
    expected = [_majority_slow(v.tolist()) for v in votes]
    assert ferplus.majority_labels(votes).tolist() == expected
    assert 0.2 < np.mean(np.array(expected) == -1) < 0.8  # both outcomes exercised


def test_real_label_files_give_the_papers_counts_by_the_rule_alone(ferplus_votes_dir):
    for split, (count, per_class) in EXPECTED.items():
        _, votes = ferplus.read_label_csv(ferplus_votes_dir / ferplus.FOLDERS[split] / "label.csv")
        labels = ferplus.majority_labels(votes)
        assert (labels >= 0).sum() == count
        assert np.bincount(labels[labels >= 0], minlength=8).tolist() == per_class


def _fake_fer2013(path, new_rows):
    """A fer2013.csv with the real row count and format; each row's first two pixels spell its
    row number, so the test can tell which row an image came from."""
    tail = " 0" * (48 * 48 - 2)
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for row, (usage, _) in enumerate(new_rows):
            f.write(f"{row % 7},{row // 256} {row % 256}{tail},{usage}\n")


def _row_of(images):
    return images[:, 0, 0, 0].astype(np.int64) * 256 + images[:, 0, 1, 0]


def test_real_vote_files_with_a_generated_fer2013_csv(ferplus_votes_dir, tmp_path):
    new_rows = ferplus.read_fer2013new(ferplus_votes_dir / "fer2013new.csv")
    assert len(new_rows) == 35887
    _fake_fer2013(tmp_path / "fer2013.csv", new_rows)
    summary = ferplus.prepare_ferplus(ferplus_votes_dir, tmp_path / "out",
                                      fer2013_csv=tmp_path / "fer2013.csv", progress=False)
    prepared = read_prepared(tmp_path / "out")
    assert summary["source"]["layout"] == "csv"
    for split, (count, per_class) in EXPECTED.items():
        assert summary["splits"][split]["count"] == count
        assert summary["splits"][split]["per_class"] == dict(zip(CLASS_NAMES, per_class))
        images = prepared.images(split)
        assert images.shape == (count, 48, 48, 1)
        # every image is the fer2013.csv row that fer2013new.csv names (the later one if twice)
        names = prepared.manifest(split)["name"]
        rows = _row_of(images)
        assert all(new_rows[r][1] == n for r, n in zip(rows, names))
        assert all(ferplus.USAGES[new_rows[r][0]] == split for r in rows)
    duplicates = summary["source"]["duplicate_names"]
    assert sorted(duplicates) == ["fer0006953.png", "fer0008403.png", "fer0011785.png",
                                  "fer0033120.png"]
    test_names = list(prepared.manifest("test")["name"])
    position = test_names.index("fer0033120.png")  # kept: label.csv's votes say 5 neutral
    assert prepared.labels("test")[position] == 0
    assert _row_of(prepared.images("test")[position:position + 1])[0] == 34334  # the later row
    assert duplicates["fer0033120.png"] == {"rows": [33200, 34334], "used_row": 34334}


def _write_raw(raw):
    """A tiny raw FER+ release in the csv layout, with an unnamed row and a duplicated name
    whose two rows hold different pixels."""
    rng = np.random.default_rng(3)
    usages = ["Training"] * 7 + ["PublicTest"] * 3 + ["PrivateTest"] * 4
    names = [f"fer{i:07d}.png" for i in range(len(usages))]
    names[4] = ""  # unnamed, skipped
    names[6] = names[1]  # listed twice: the later row's pixels must win
    pixels = rng.integers(0, 256, (len(usages), 48, 48), dtype=np.uint8)
    votes = {n: [0] * 10 for n in names if n}
    for i, n in enumerate(sorted(votes)):
        votes[n][i % 8] = 8  # a clear majority of class i % 8
        votes[n][8] = 2
    votes["fer0000002.png"] = [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]  # no majority: dropped
    raw.mkdir()
    with open(raw / "fer2013.csv", "w") as f:
        f.write("emotion,pixels,Usage\n")
        for usage, image in zip(usages, pixels):
            f.write(f"0,{' '.join(map(str, image.ravel()))},{usage}\n")
    with open(raw / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *ferplus.VOTE_COLUMNS])
        for usage, name in zip(usages, names):
            w.writerow([usage, name, *(votes[name] if name else [0] * 9 + [10])])
    for usage, folder in [("Training", "FER2013Train"), ("PublicTest", "FER2013Valid"),
                          ("PrivateTest", "FER2013Test")]:
        (raw / folder).mkdir()
        in_split = sorted({n for u, n in zip(usages, names) if u == usage and n})
        with open(raw / folder / "label.csv", "w", newline="") as f:
            for name in in_split:
                csv.writer(f).writerow([name, "(0, 0, 48, 48)", *votes[name]])
    return usages, names, pixels


def _to_png_layout(raw, png, usages, names, pixels):
    """What FERPlus's generate_training_data.py leaves behind: one PNG per named row, written in
    row order (so a repeated name ends up with the later row's pixels), beside label.csv."""
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid",
               "PrivateTest": "FER2013Test"}
    for folder in folders.values():
        (png / folder).mkdir(parents=True)
        (png / folder / "label.csv").write_bytes((raw / folder / "label.csv").read_bytes())
    for usage, name, image in zip(usages, names, pixels):
        if name:
            cv2.imwrite(str(png / folders[usage] / name), image)


def test_both_layouts_give_the_same_prepared_set(tmp_path):
    usages, names, pixels = _write_raw(tmp_path / "raw")
    _to_png_layout(tmp_path / "raw", tmp_path / "png", usages, names, pixels)
    assert ferplus.detect_layout(tmp_path / "raw").kind == "csv"
    assert ferplus.detect_layout(tmp_path / "png").kind == "png"
    ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "from_csv", progress=False)
    ferplus.prepare_ferplus(tmp_path / "png", tmp_path / "from_png", progress=False)
    a, b = read_prepared(tmp_path / "from_csv"), read_prepared(tmp_path / "from_png")
    for split in SPLITS:
        np.testing.assert_array_equal(a.images(split), b.images(split))
        np.testing.assert_array_equal(a.labels(split), b.labels(split))
        assert (a.path / split / "manifest.csv").read_bytes() == \
            (b.path / split / "manifest.csv").read_bytes()
    train_names = list(a.manifest("train")["name"])
    assert train_names == ["fer0000000.png", "fer0000001.png", "fer0000003.png",
                           "fer0000005.png"]  # 2 dropped by the majority rule, 4 and 6 unnamed
    np.testing.assert_array_equal(a.images("train")[1, :, :, 0], pixels[6])  # the later row
    assert a.summary["source"]["duplicate_names"] == {"fer0000001.png": {"rows": [1, 6],
                                                                         "used_row": 6}}


def test_missing_pngs_are_counted_and_limited(tmp_path):
    usages, names, pixels = _write_raw(tmp_path / "raw")
    _to_png_layout(tmp_path / "raw", tmp_path / "png", usages, names, pixels)
    (tmp_path / "png" / "FER2013Test" / "fer0000011.png").unlink()
    (tmp_path / "png" / "FER2013Valid" / "fer0000008.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"2 FER\+ images are missing or unreadable .*"
                                         r"fer0000008.png.*fer0000011.png"):
        ferplus.prepare_ferplus(tmp_path / "png", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    summary = ferplus.prepare_ferplus(tmp_path / "png", tmp_path / "out", max_missing=2,
                                      progress=False)
    assert summary["source"]["missing_images"]["test"] == ["fer0000011.png"]
    assert "fer0000011.png" not in read_prepared(tmp_path / "out").manifest("test")["name"]


def test_layout_errors_name_the_known_layouts(tmp_path, ferplus_votes_dir):
    with pytest.raises(FileNotFoundError, match=r"Known layouts: \(png\).*\(csv\)"):
        ferplus.detect_layout(tmp_path)
    # the shared vote files alone: label.csv and fer2013new.csv, no fer2013.csv, no PNGs
    with pytest.raises(FileNotFoundError, match="'fer2013.csv': None"):
        ferplus.detect_layout(ferplus_votes_dir)
    with pytest.raises(ValueError, match="unknown FER\\+ layout 'zip'"):
        ferplus.detect_layout(tmp_path, layout="zip")


def _corrupt(raw, line, edit):
    path = raw / "fer2013.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("".join(lines))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace(" ", " 1 ", 1), r"fer2013.csv, line 3: 2305 pixel values, expected 2304"),
    (lambda s: s.replace(" ", " x ", 1), r"fer2013.csv, line 3: pixels are not space-separated"),
    (lambda s: s.split(",")[0] + ",300" + s[s.index(" "):],
     r"line 3: pixel values must lie in 0..255"),
    (lambda s: s.replace("Training", "PublicTest"), r"line 3: Usage 'PublicTest' but"),
    (lambda s: s.rstrip("\n") + ",extra\n", r"line 3: 4 fields, expected 3"),
])
def test_bad_fer2013_rows_are_named(tmp_path, edit, message):
    _write_raw(tmp_path / "raw")
    _corrupt(tmp_path / "raw", 3, edit)
    with pytest.raises(ValueError, match=message):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_fer2013_row_count_must_match(tmp_path):
    _write_raw(tmp_path / "raw")
    path = tmp_path / "raw" / "fer2013.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="13 rows, but .*fer2013new.csv has 14"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


def test_bad_label_file_is_named(tmp_path):
    _write_raw(tmp_path / "raw")
    (tmp_path / "raw" / "FER2013Valid" / "label.csv").write_text("fer0000007.png,1,2\n")
    with pytest.raises(ValueError, match=r"FER2013Valid/label.csv, line 1: 3 fields"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------
# damaged raw files, as issue 10's bad-input probe made them
# ------------------------------------------------------------------------------------------

def _lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_an_empty_label_csv_is_an_error(tmp_path):
    _write_raw(tmp_path / "raw")
    (tmp_path / "raw" / "FER2013Train" / "label.csv").write_text("")
    with pytest.raises(ValueError, match=r"FER2013Train/label.csv lists no images"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


def test_a_label_csv_cut_at_a_line_boundary_is_an_error_in_both_layouts(tmp_path):
    usages, names, pixels = _write_raw(tmp_path / "raw")
    _to_png_layout(tmp_path / "raw", tmp_path / "png", usages, names, pixels)
    for raw in (tmp_path / "raw", tmp_path / "png"):
        label = raw / "FER2013Train" / "label.csv"
        label.write_bytes(b"".join(_lines(label)[:3]))  # 3 of the 5 named training images
        with pytest.raises(ValueError, match=r"FER2013Train/label.csv lists 3 images, but .* 2 "
                                             r"more FER2013Train images .*fer0000005.png.*"
                                             r"truncated"):
            ferplus.prepare_ferplus(raw, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()


def test_a_latin1_byte_in_label_csv_names_the_file(tmp_path):
    _write_raw(tmp_path / "raw")
    label = tmp_path / "raw" / "FER2013Test" / "label.csv"
    lines = _lines(label)
    lines[1] = lines[1].replace(b".png", b"\xe9.png", 1)
    label.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"FER2013Test/label.csv, line \d+: not UTF-8 text "
                                         r"\(byte 0xe9\)"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


def test_a_utf8_bom_is_accepted(tmp_path):
    _write_raw(tmp_path / "raw")
    ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "plain", progress=False)
    for name in ("FER2013Train/label.csv", "fer2013new.csv", "fer2013.csv"):
        path = tmp_path / "raw" / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves it
    ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "bom", progress=False)
    for split in SPLITS:
        assert (tmp_path / "bom" / split / "manifest.csv").read_bytes() == \
            (tmp_path / "plain" / split / "manifest.csv").read_bytes()


def test_a_row_with_nine_votes_says_so(tmp_path):
    _write_raw(tmp_path / "raw")
    label = tmp_path / "raw" / "FER2013Train" / "label.csv"
    lines = _lines(label)
    lines[1] = lines[1].rstrip(b"\r\n").rsplit(b",", 1)[0] + b"\r\n"
    label.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"label.csv, line 2: 11 fields \(9 vote counts after "
                                         r"the name and face box\); expected .* 10 vote counts"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


def test_a_missing_split_folder_is_named(tmp_path):
    _write_raw(tmp_path / "raw")
    shutil.rmtree(tmp_path / "raw" / "FER2013Valid")
    with pytest.raises(FileNotFoundError, match=r"raw: FER2013Valid/label.csv missing"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)


def test_a_truncated_fer2013new_csv_says_so_with_counts(tmp_path):
    _write_raw(tmp_path / "raw")
    new = tmp_path / "raw" / "fer2013new.csv"
    new.write_bytes(b"".join(_lines(new)[:9]))  # header + 8 of 14 rows
    with pytest.raises(ValueError, match=r"fer2013new.csv is short: 8 rows, but .*fer2013.csv "
                                         r"has 14 .*truncated"):
        ferplus.prepare_ferplus(tmp_path / "raw", tmp_path / "out", progress=False)
