"""A binary's config from the flags that were SET, never from absl's defaults.

The tests import every binary into one process, where absl keeps one flag per name: a name two
binaries define (--output, --batch_size, --image_size, --split) carries the default of
whichever module was imported last. So each binary keeps its own defaults in its config
dataclass, and only flags given on the command line (or by `flagsaver`) override them
(docs/DESIGN.md, "Binaries"). In a real run, one binary per process, the two agree anyway.
"""
from __future__ import annotations

import dataclasses
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
