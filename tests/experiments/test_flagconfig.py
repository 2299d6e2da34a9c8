"""experiments/flagconfig.py: a config dataclass's fields become flags (help, choices, type and
default from the field, so each default is written once), and overrides parse like flags."""
from __future__ import annotations

import dataclasses

import pytest
from absl import flags

from experiments.flagconfig import define_config_flags, parse_field
from fer_distill.train.config import STAGES, TrainConfig, setting


def _flags(config_class):
    values = flags.FlagValues()
    names = define_config_flags(config_class, flag_values=values)
    return values, names


def test_every_train_config_field_is_a_flag_with_the_fields_help_and_default():
    values, names = _flags(TrainConfig)
    fields = dataclasses.fields(TrainConfig)
    assert names == [f.name for f in fields]
    for field in fields:
        assert field.metadata.get("help"), f"TrainConfig.{field.name} has no help text"
        flag = values[field.name]
        assert flag.help.endswith(field.metadata["help"])  # an enum flag lists its choices first
        expected = None if field.default is dataclasses.MISSING else field.default
        assert flag.default == expected, field.name
    assert values["stage"].parser.enum_values == list(STAGES)
    values(["train", "--temperature=4", "--nodeterministic", "--epochs=3", "--stage=kd",
            "--init=a.keras"])
    assert (values.temperature, values.deterministic, values.epochs, values.stage,
            values.init) == (4.0, False, 3, "kd", "a.keras")
    with pytest.raises(flags.IllegalFlagValueError):
        values(["train", "--stage=distil"])


def test_a_new_field_gets_its_flag_without_other_code():
    @dataclasses.dataclass(frozen=True)
    class Config:
        name: str = setting(help="required text")
        rate: float | None = setting(default=None, help="optional number")
        mode: str = setting(default="a", help="a choice", choices=("a", "b"))
        on: bool = setting(default=True, help="a switch")
        count: int = 2  # a plain field: still a flag

    values, names = _flags(Config)
    assert names == ["name", "rate", "mode", "on", "count"]
    values(["x", "--name=n", "--rate=1e-3", "--mode=b", "--noon", "--count=5"])
    assert (values.name, values.rate, values.mode, values.on, values.count) == (
        "n", 1e-3, "b", False, 5)
    assert values["count"].help  # a generated help text, not none


@pytest.mark.parametrize("name, text, expected", [
    ("epochs", "10", 10), ("learning_rate", "1e-4", 1e-4), ("steps_per_epoch", "None", None),
    ("temperature_squared", "true", True), ("teacher_mode", "live", "live"),
    ("init", "runs/x/model.keras", "runs/x/model.keras"),
])
def test_overrides_parse_like_flags(name, text, expected):
    assert parse_field(TrainConfig, name, text) == expected


@pytest.mark.parametrize("name, text, message", [
    ("epoch", "3", "not a TrainConfig setting"), ("epochs", "three", "expected an integer"),
    ("momentum", "none", "expected a number"), ("jit_compile", "maybe", "true or false"),
    ("strategy", "tpu", "one of default, mirrored, multi_worker"),
])
def test_bad_overrides_name_what_was_expected(name, text, message):
    with pytest.raises(ValueError, match=message):
        parse_field(TrainConfig, name, text)
