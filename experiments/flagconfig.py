"""A binary's config from the flags that were SET, never from absl's defaults.

The tests import every binary into one process, where absl keeps one flag per name: a name two
binaries define (--output, --batch_size, --image_size, --split) carries the default of
whichever module was imported last. So each binary keeps its own defaults in its config
dataclass, and only flags given on the command line (or by `flagsaver`) override them
(docs/DESIGN.md, "Binaries"). In a real run, one binary per process, the two agree anyway.

`define_config_flags` makes a binary's flags from its config dataclass (one flag per field, its
help and choices from the field's metadata), so each default is written once, in the config;
`parse_field` types one STAGE.FIELD=VALUE override with the same flag parsers.
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any, Iterable

from absl import flags


def given_flags(names: Iterable[str]) -> dict[str, Any]:
    """{name: value} for each flag in `names` that was given a value."""
    values = flags.FLAGS
    return {name: values[name].value for name in names if not values[name].using_default_value}


def given_fields(config_class) -> dict[str, Any]:
    """`given_flags` over the fields of a config dataclass that have a flag of the same name."""
    names = [field.name for field in dataclasses.fields(config_class)]
    return given_flags(name for name in names if name in flags.FLAGS)


def _kind(hint) -> tuple[type, bool]:
    """(the value type, whether None is allowed) of a field's type hint."""
    args = typing.get_args(hint)
    if type(None) in args:
        kinds = [k for k in args if k is not type(None)]
        return (kinds[0] if len(kinds) == 1 else str), True
    return hint, False


def make_flag(field: dataclasses.Field, hint) -> flags.Flag:
    """The absl flag of one config field: its help and choices from the field's metadata
    (fer_distill.train.config.setting), its type from the field's hint, its default the
    field's own (None when the field has none)."""
    kind, _ = _kind(hint)
    help_text = field.metadata.get("help") or f"The config's {field.name!r} setting."
    choices = field.metadata.get("choices")
    default = None if field.default is dataclasses.MISSING else field.default
    args = dict(allow_override=True)
    if choices:
        return flags.EnumFlag(field.name, default, help_text, list(choices), **args)
    if kind is bool:
        return flags.BooleanFlag(field.name, default, help_text, **args)
    parser = {int: flags.IntegerParser, float: flags.FloatParser}.get(kind, flags.ArgumentParser)
    return flags.Flag(parser(), flags.ArgumentSerializer(), field.name, default, help_text,
                      **args)


def define_config_flags(config_class, *, exclude: Iterable[str] = (),
                        flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Defines one flag per field of `config_class` (same name; allow_override, see the module
    docstring), owned by the calling binary so its --help lists them; returns the names."""
    caller = sys._getframe(1).f_globals.get("__name__", "")
    module = sys.argv[0] if caller == "__main__" else caller  # as absl names the main module
    hints = typing.get_type_hints(config_class)
    names = []
    for field in dataclasses.fields(config_class):
        if field.name in exclude or not field.init:
            continue
        flags.DEFINE_flag(make_flag(field, hints[field.name]), flag_values,
                          module_name=module)
        names.append(field.name)
    return names


NONE_WORDS = ("none", "null")


def parse_field(config_class, name: str, text: str) -> Any:
    """`text` typed as field `name` of `config_class`, by the parser of that field's flag
    ("none"/"null" for a field that may be None). ValueError names what was expected."""
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    if name not in fields:
        raise ValueError(f"{name!r} is not a {config_class.__name__} setting; expected one of "
                         f"{sorted(fields)}")
    hint = typing.get_type_hints(config_class)[name]
    kind, optional = _kind(hint)
    if optional and text.strip().lower() in NONE_WORDS:
        return None
    flag = make_flag(fields[name], hint)
    try:
        return flag.parser.parse(text)
    except ValueError as error:
        expected = ("one of " + ", ".join(flag.parser.enum_values)
                    if isinstance(flag, flags.EnumFlag) else
                    {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text"))
        raise ValueError(f"{name}: expected {expected}{' or none' if optional else ''}, got "
                         f"{text!r} ({error})") from None
