"""`Preset`: a named set of settings for a whole reproduction (fer_distill.reproduce).

The presets themselves (PAPER, DEMO) live in `fer_distill.reproduce`, beside the pipeline they
configure; this module holds the type and its checks.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

def _frozen(mapping: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in (mapping or {}).items()})


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of settings for a whole reproduction, in one place.

    train: `fer_distill.train.TrainConfig` fields per stage; the key "*" applies to every
      training stage, a stage's own key after it. Unset fields keep the paper's values.
    demo_sizes / demo_seed / demo_regime: the synthetic demo set drawn when the data set is
      "demo" (`fer_distill.data.demo` regimes: classic, privileged, control).
    smoke_scale: True for a preset whose numbers must not be read as the paper's (said at the
      start of the output and in the report).
    """

    name: str
    description: str
    train: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    demo_sizes: Mapping[str, int] | None = None
    demo_seed: int = 0
    demo_regime: str = "classic"
    # When set (and no --pretrained is given), the prepare stage makes the network the demo's
    # teacher, student and eyes baseline fine-tune, as the paper's start from one pretrained
    # file: `mini` trained on full faces of a "classic" demo set drawn with `seed`, with
    # `train` TrainConfig fields. {"seed": int, "train": {...}}
    demo_pretrain: Mapping[str, Any] | None = None
    smoke_scale: bool = False

    def __post_init__(self):
        object.__setattr__(self, "train", _frozen(self.train))
        from fer_distill.train.config import STAGES

        unknown = set(self.train) - set(STAGES) - {"*"}
        if unknown:
            raise ValueError(f"preset {self.name!r}: unknown stages {sorted(unknown)}; expected "
                             f"'*' or some of {STAGES}")

    def settings(self, stage: str) -> dict[str, Any]:
        return {**self.train.get("*", {}), **self.train.get(stage, {})}
