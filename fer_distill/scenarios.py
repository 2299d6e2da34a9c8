"""Occlusion scenarios: which view each Table I stage sees, the paper's and ours.

    paper    students ◐ lower_half_visible   other view ◑ upper_half_visible  (Table I)
    headset  students headset                other view under_headset          (ours)
    mask     students surgical_mask          other view under_surgical_mask    (ours)

Students: student baseline, kd, triplet, fuse; the other view is the second baseline's (the
paper's eyes baseline [2]); the teacher always sees full faces. `SCENARIOS[name].view(stage)`.
Why the other view is the complement: docs/DESIGN.md, "Views".
"""
from __future__ import annotations

import dataclasses

PAPER = "paper"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """name: as in `--scenarios`; student_view: the students' view; other_view: the second
    baseline's (stage "eyes"); title: how the report heads its table."""

    name: str
    title: str
    student_view: str
    other_view: str

    @property
    def ours(self) -> bool:
        """True for a scenario the paper does not have."""
        return self.name != PAPER

    def view(self, stage: str) -> str:
        """The view `stage` is trained and tested on in this scenario."""
        if stage == "teacher":
            return "full"
        return self.other_view if stage == "eyes" else self.student_view


SCENARIOS = {
    PAPER: Scenario(PAPER, "Table I (the paper's occlusion: halves)",
                    "lower_half_visible", "upper_half_visible"),
    "headset": Scenario("headset", "headset silhouette", "headset", "under_headset"),
    "mask": Scenario("mask", "surgical mask", "surgical_mask", "under_surgical_mask"),
}


def scenario(name: str) -> Scenario:
    """SCENARIOS[name], or a ValueError naming the value and the choices."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {sorted(SCENARIOS)}")
    return SCENARIOS[name]
