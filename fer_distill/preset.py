"""`Preset`: a named set of settings for a whole reproduction (fer_distill.reproduce).

`PRESETS`: "paper" (the paper's hyper-parameters), "demo" (the embedded default of
`python -m experiments.reproduce` without data) and "demo_scarce" (the demo set on which
distillation measurably transfers).
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

from fer_distill.train.config import STAGES


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
    expect: str = ""  # what the known-answer benchmark measured on this preset's data, if any
    extra_stages: tuple = ()  # optional stages (rkd, hint) a run of this preset makes by default

    def __post_init__(self):
        object.__setattr__(self, "train", _frozen(self.train))
        unknown = set(self.train) - set(STAGES) - {"*"}
        if unknown:
            raise ValueError(f"preset {self.name!r}: unknown stages {sorted(unknown)}; expected "
                             f"'*' or some of {STAGES}")

    def settings(self, stage: str) -> dict[str, Any]:
        return {**self.train.get("*", {}), **self.train.get(stage, {})}


PAPER = Preset(
    name="paper",
    description="the paper's hyper-parameters (fer_distill.train.paper_defaults)",
)

# The embedded demo: the protocol of experiments/known_answer.py's "privileged" regime, seed 0,
# so its numbers are that benchmark's first seed (KNOWN_ANSWER.md has all seeds and controls).
# - Data: the "privileged" demo regime (fer_distill.data.demo): faces drawn from real FER+ vote
#   vectors and labelled by FER+'s majority rule; the lower half shows a weak trace of the brows.
#   2,400/400/600 drawn (about 2,100/350/530 kept by the vote rule).
# - `mini` at 32x32, batch 32, deterministic (the same command prints the same numbers on the
#   same machine and versions).
# - A start of its own, as the paper's networks start from one pretrained file: `mini` trained
#   on full faces of a "classic" demo set (seed 1000); teacher, student and eyes fine-tune it
#   with a fresh fc8 for 30 epochs at 0.01 (plateau rule, patience 4, down to 1e-4), so the
#   student baseline [1] has converged before kd and triplet continue from it (a baseline
#   stopped early would credit distillation with plain extra training).
# - kd: 10 epochs at 1e-3 (patience 2, floor 1e-5); triplet: 5 epochs at 1e-5, a hundredth of
#   the kd rate as in the paper. The kd temperature / tau^2 and the triplet's form are the
#   ones the known-answer benchmark chose on VALIDATION (DEMO_CHOICE below).
_BASE = {"epochs": 30, "learning_rate": 0.01, "min_learning_rate": 0.0001, "lr_patience": 4}
_KD = {"epochs": 10, "learning_rate": 0.001, "min_learning_rate": 0.00001, "lr_patience": 2}
# the paper's triplet rate is a hundredth of its kd rate for both networks (1e-6 vs 1e-4,
# 1e-5 vs 1e-3); the same ratio here
_TRIPLET = {"epochs": 5, "learning_rate": 0.00001, "min_learning_rate": 0.00001}
# The demo's schedules, shared with experiments/known_answer.py (its Scale): written once.
DEMO_SCHEDULES = {"base": _BASE, "kd": _KD, "triplet": _TRIPLET}
# The settings experiments.known_answer chose on VALIDATION (its chosen_on_validation: the best
# accuracy, ties within 0.5 points broken by the lower KL to the teacher): KNOWN_ANSWER.md,
# privileged regime: kd `kd_t1`, triplet `triplet_unit`.
DEMO_CHOICE = {"kd": {"temperature": 1.0, "temperature_squared": False},
               "triplet": {"triplet_reduction": "mean", "triplet_normalize": True}}


def choice_text(choice) -> str:
    """The kd and triplet settings of a preset's choice, as its description says them."""
    kd, triplet = choice["kd"], choice["triplet"]
    return (f"kd tau {kd['temperature']:g}"
            f"{' with' if kd['temperature_squared'] else ' without'} tau^2, triplet term "
            f"{triplet['triplet_reduction']} over the batch"
            f"{' on unit-length embeddings' if triplet.get('triplet_normalize') else ''}")


DEMO = Preset(
    name="demo",
    description=("synthetic smoke-scale: the FER+-shaped demo faces (regime 'privileged'), the "
                 "small `mini` network at 32x32 from its own pretrained start, deterministic; "
                 f"{choice_text(DEMO_CHOICE)} (chosen on validation by "
                 "experiments.known_answer); shows the pipeline, not the paper's numbers"),
    train={
        "*": {"image_size": 32, "batch_size": 32, "seed": 0, "deterministic": True},
        "teacher": _BASE,
        "student": _BASE,
        "eyes": _BASE,
        "kd": {**_KD, **DEMO_CHOICE["kd"]},
        # ours, optional (--stages=rkd,hint,evaluate,report): kd's schedule, as in the
        # known-answer benchmark
        "rkd": _KD,
        "hint": _KD,
        "triplet": {**_TRIPLET, **DEMO_CHOICE["triplet"]},
    },
    demo_sizes={"train": 2400, "validation": 400, "test": 600},
    demo_regime="privileged",
    demo_pretrain={"seed": 1000, "train": {"image_size": 32, "batch_size": 32,
                                           "deterministic": True, **_BASE}},
    smoke_scale=True,
    expect=("on this data the known-answer benchmark (KNOWN_ANSWER.md, 3 seeds) measured NO "
            "significant gain in accuracy from distillation: kd (tau 1) +0.37 points (McNemar "
            "p = 0.38) with a KL to the teacher 0.021 nats lower (p = 0.08), the triplet term "
            "+0.18 points with the KL unchanged; read the report's Transfer section for whether "
            "each student moved toward its teacher, and run --preset=demo_scarce for the set "
            "where kd does gain (KNOWN_ANSWER_SCARCE.md)"),
)


# The demo where distillation measurably transfers: the known-answer benchmark's scarce scale
# (800 training faces, KNOWN_ANSWER_SCARCE.md) in its "control" regime (the lower half shows
# no trace of the brows, so the student's labels are the noisiest from its own view), seed 0;
# otherwise DEMO's protocol, with the settings that benchmark chose on VALIDATION there (the
# same rule as DEMO_CHOICE): kd `kd_t4_sq`, triplet `triplet_unit`.
SCARCE_CHOICE = {"kd": {"temperature": 4.0, "temperature_squared": True},
                 "triplet": {"triplet_reduction": "mean", "triplet_normalize": True}}
DEMO_SCARCE = dataclasses.replace(
    DEMO, name="demo_scarce",
    description=("synthetic smoke-scale: the FER+-shaped demo faces (regime 'control': the lower "
                 "half shows no trace of the brows), 800 training faces, the small `mini` "
                 f"network at 32x32 from its own pretrained start, deterministic; "
                 f"{choice_text(SCARCE_CHOICE)} (chosen on validation by "
                 "experiments.known_answer --scale=scarce); shows the pipeline, not the paper's "
                 "numbers"),
    train={**DEMO.train, "kd": {**DEMO.train["kd"], **SCARCE_CHOICE["kd"]},
           "triplet": {**DEMO.train["triplet"], **SCARCE_CHOICE["triplet"]}},
    demo_sizes={"train": 800, "validation": 400, "test": 600},
    demo_regime="control",
    expect=("on this data the known-answer benchmark (KNOWN_ANSWER_SCARCE.md, 3 seeds) measured "
            "kd (tau 4 with tau^2) above the student baseline: +6.66 points on average, McNemar "
            "p = 7.2e-16 on the pooled test images, and +4.86 points over the same epochs "
            "without a teacher (lambda = 0; McNemar p = 2.5e-9), with a higher KL to the teacher "
            "(+0.06 nats); rkd (ours, run here too) +7.81 points with a lower KL (-0.18 nats); "
            "the triplet term changed nothing (-0.25 points)"),
    extra_stages=("rkd",),
)

PRESETS = {"paper": PAPER, "demo": DEMO, "demo_scarce": DEMO_SCARCE}
