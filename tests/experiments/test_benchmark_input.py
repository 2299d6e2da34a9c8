"""experiments/benchmark_input.py end to end on a tiny demo set, through its flags."""
import re

import pytest
from absl.testing import flagsaver

from experiments import benchmark_input
from fer_distill.data import demo



def test_prints_paired_images_per_second(tmp_path, capsys):
    demo.prepare_demo(tmp_path / "demo", sizes={"train": 40, "validation": 8, "test": 8})
    with flagsaver.flagsaver(data=str(tmp_path / "demo"), split="train", batch_size=8,
                             image_size=32, steps=3, warmup=1, occlusion="upper_half_visible"):
        benchmark_input.main(["benchmark_input"])
    printed = capsys.readouterr().out
    match = re.search(r"(\d+) paired 32x32 images/s \(24 pairs in", printed)
    assert match and int(match.group(1)) > 0, printed


def test_missing_data_is_named(tmp_path):
    with flagsaver.flagsaver(data=str(tmp_path / "none")):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            benchmark_input.main(["benchmark_input"])
