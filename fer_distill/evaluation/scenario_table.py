"""The report's tables for our occlusion scenarios (`fer_distill.scenarios`), beside Table I.

For every scenario of ours with runs under the report's root, and every (data set, network) it
was run on, a table with Table I's rows in that scenario's views: the teacher on full faces,
on the students' view and on the other view; the student baseline and the other-view baseline;
kd, triplet and fuse on the students' view. A run belongs to a scenario by the view it records
(config.json["view"]), never by where it lies. Each cell is built like Table I's (the same
`cell` function of the report: transfer to the teacher, McNemar's test) with the scenario's
own student baseline as the † reference. These tables are ours: the paper has no such
numbers, and the rendering says so.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

from fer_distill.scenarios import SCENARIOS, Scenario

ROWS = (  # (stage, which view, label)
    ("teacher", "full", "Teacher"),
    ("teacher", "student", "Teacher"),
    ("teacher", "other", "Teacher"),
    ("student", "student", "student baseline (cf. [1])"),
    ("eyes", "other", "other-view baseline (cf. [2])"),
    ("kd", "student", "standard T-S"),
    ("triplet", "student", "triplet loss T-S"),
    ("fuse", "student", "T-S fusion"),
)


@dataclasses.dataclass(frozen=True)
class ScenarioRow:
    """What the report's cell function reads of a row (a Table I row has the same fields)."""

    stage: str
    view: str
    arch: str
    kind: str = "reproduced"


def _view(scenario: Scenario, which: str) -> str:
    return {"full": "full", "student": scenario.student_view,
            "other": scenario.other_view}[which]


def symbol(view: str) -> str:
    """How a row's test faces are shown: ○ for full faces, else the view's name."""
    return "○" if view == "full" else view


def belongs(scenario: Scenario, stage: str | None, view: str | None) -> bool:
    """Whether a run of `stage` that records `view` is one of `scenario`'s."""
    return stage is not None and view == scenario.view(stage)


def scenario_tables(runs: Iterable[Any], chosen: Mapping[tuple, Any], cell: Callable,
                    arch_names: Mapping[str, str], dataset_names: Mapping[str, str],
                    synthetic: Iterable[str]) -> list[dict[str, Any]]:
    """The scenario tables for the report's JSON.

    runs: the report's Run records; chosen: its measurement per (dataset, arch, stage, view);
    cell(row, dataset, arch, finished, incomplete, baseline_view): the report's cell builder.
    """
    runs = list(runs)
    tables = []
    for scenario in SCENARIOS.values():
        if not scenario.ours:
            continue
        mine = [r for r in runs if r.stage != "teacher" and belongs(scenario, r.stage, r.view)]
        for dataset, arch in sorted({(r.dataset, r.arch) for r in mine}):
            own = [r for r in runs if (r.dataset, r.arch) == (dataset, arch)
                   and belongs(scenario, r.stage, r.view)]
            finished = {(r.dataset, r.arch, r.stage): r.path
                        for r in sorted(own, key=lambda r: r.finished_at) if r.finished}
            incomplete = {(r.dataset, r.arch, r.stage): r.path for r in own
                          if not r.finished and (r.dataset, r.arch, r.stage) not in finished}
            rows = []
            for stage, which, text in ROWS:
                view = _view(scenario, which)
                row = ScenarioRow(stage, view, arch)
                where = "" if stage != "teacher" else f" on {view}"
                label = f"{arch_names.get(arch, arch)} {text}{where} [{scenario.name}]"
                rows.append({
                    "key": f"{scenario.name}/{arch}/{stage}/{view}", "paper_key": None,
                    "label": label, "paper_label": None, "kind": row.kind, "view": view,
                    "view_symbol": symbol(view),
                    "cells": {dataset: cell(row, dataset, arch, finished, incomplete,
                                            scenario.student_view)}})
            tables.append({
                "id": f"scenario/{scenario.name}/{dataset}/{arch}", "scenario": scenario.name,
                "title": (f"Scenario {scenario.name!r} ({scenario.title}): "
                          f"{dataset_names.get(dataset, dataset)}, "
                          f"{arch_names.get(arch, arch)}"),
                "student_view": scenario.student_view, "other_view": scenario.other_view,
                "datasets": [dataset], "synthetic": dataset in set(synthetic),
                "stand_in": None, "rows": rows})
    return tables


def render(table: Mapping[str, Any], ours: Callable[[dict], str]) -> list[str]:
    """Markdown lines of one scenario table; `ours` formats a cell's accuracy (and †)."""
    lines = [f"## {table['title']} (OURS, not in the paper)", "",
             f"Our own scenario: the students see `{table['student_view']}`, the other-view "
             f"baseline `{table['other_view']}` (what the occluder hides), the teacher full "
             "faces. The paper has no such numbers; † is McNemar's test against this "
             "scenario's student baseline.", ""]
    if table["synthetic"]:
        lines += ["Synthetic smoke-scale demo.", ""]
    lines += ["| Model | Test faces | ours |", "|---|---|---:|"]
    for row in table["rows"]:
        for cell in row["cells"].values():
            lines.append(f"| {row['label']} | {row['view_symbol']} | {ours(cell)} |")
    return lines + [""]
