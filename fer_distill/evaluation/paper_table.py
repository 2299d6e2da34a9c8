"""The paper's Table I as data: `paper_table.json`, and a loader that refuses a broken copy.

    table = load_paper_table(); table.accuracy(dataset, arch, stage, view)

Row key "{arch}/{stage}/{view}" (e.g. "vgg_face/triplet/lower_half_visible"; arch in `ARCHS`,
stage in `STAGES`, view the EVALUATED view), cell key "{dataset}/{row key}"; literature rows
are "literature/<name>". `PaperTable.find(arch, stage, view)` maps a run to its row.
Transcribed from the paper's Table I, checked against the paper's text; the [2] rows are the
`eyes` stage on upper_half_visible. Why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

FORMAT = "fer_distill.paper_table/1"
DEFAULT_PATH = Path(__file__).with_name("paper_table.json")

DATASETS = ("affectnet", "ferplus")  # the paper's column order
ARCHS = ("vgg_f", "vgg_face")
STAGES = ("teacher", "student", "eyes", "kd", "triplet", "fuse")
VIEW_SYMBOLS = {"full": "○", "lower_half_visible": "◐", "upper_half_visible": "◑"}
KINDS = ("literature", "reproduced")
DISTILLED_STAGES = ("kd", "triplet", "fuse")  # the rows a † can mark

_ROW_FIELDS = (
    "key", "label", "reference", "citation", "kind", "arch", "stage", "view", "view_symbol",
    "accuracy", "dagger", "significance_baseline", "note",
)


def row_key(arch: str, stage: str, view: str) -> str:
    """The key of the Table I row a run of `stage` on `arch`, evaluated on `view`, belongs to."""
    return f"{arch}/{stage}/{view}"


def cell_key(dataset: str, arch: str, stage: str, view: str) -> str:
    """The key of one accuracy cell: the row key prefixed by the data set."""
    return f"{dataset}/{row_key(arch, stage, view)}"


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """One row of Table I; accuracy in percent (None where the paper prints '-')."""

    key: str
    label: str
    reference: str | None
    citation: str | None
    kind: str
    arch: str | None
    stage: str | None
    view: str
    view_symbol: str
    accuracy: Mapping[str, float | None]
    dagger: Mapping[str, bool]
    significance_baseline: str | None
    note: str | None

    def cell_key(self, dataset: str) -> str:
        return f"{dataset}/{self.key}"


@dataclasses.dataclass(frozen=True)
class PaperTable:
    rows: tuple[PaperRow, ...]
    datasets: tuple[str, ...]
    source: str
    path: Path

    def row(self, key: str) -> PaperRow:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"Table I has no row {key!r} (rows: {[r.key for r in self.rows]})")

    def find(self, arch: str, stage: str, view: str) -> PaperRow | None:
        """The row for a run, or None when the paper has no such row (e.g. a student on the
        full view): the report then lists the run outside the paper's table."""
        key = row_key(arch, stage, view)
        return next((r for r in self.rows if r.key == key), None)

    def accuracy(self, dataset: str, arch: str, stage: str, view: str) -> float | None:
        if dataset not in self.datasets:
            raise ValueError(f"unknown data set {dataset!r}; Table I has {self.datasets}")
        r = self.find(arch, stage, view)
        return None if r is None else r.accuracy[dataset]


def load_paper_table(path: str | os.PathLike | None = None) -> PaperTable:
    """Reads and validates Table I (the packaged file by default).

    Raises FileNotFoundError if the file is missing and ValueError naming the file, the row
    (index and key) and the field for anything that does not fit the format.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise FileNotFoundError(f"paper table {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None

    def fail(msg):
        raise ValueError(f"{path}: {msg}")

    if not isinstance(data, dict):
        fail("expected a JSON object at the top level")
    if data.get("format") != FORMAT:
        fail(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("datasets") != list(DATASETS):
        fail(f"datasets is {data.get('datasets')!r}, expected {list(DATASETS)}")
    if data.get("views") != VIEW_SYMBOLS:
        fail(f"views is {data.get('views')!r}, expected {VIEW_SYMBOLS}")
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        fail("'rows' must be a non-empty list")

    rows: list[PaperRow] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rows):
        where = f"row {i} ({raw.get('key')!r})" if isinstance(raw, dict) else f"row {i}"

        def bad(msg, where=where):
            fail(f"{where}: {msg}")

        if not isinstance(raw, dict):
            bad("expected an object")
        if set(raw) != set(_ROW_FIELDS):
            missing = sorted(set(_ROW_FIELDS) - set(raw))
            extra = sorted(set(raw) - set(_ROW_FIELDS))
            bad(f"fields differ from the format: missing {missing}, unexpected {extra}")
        key = raw["key"]
        if not isinstance(key, str) or key in seen:
            bad("key must be a string, unique in the table")
        seen.add(key)
        if not isinstance(raw["label"], str) or not raw["label"]:
            bad("label must be a non-empty string")
        if raw["kind"] not in KINDS:
            bad(f"kind is {raw['kind']!r}, expected one of {KINDS}")
        view = raw["view"]
        if view not in VIEW_SYMBOLS:
            bad(f"view is {view!r}, expected one of {tuple(VIEW_SYMBOLS)}")
        if raw["view_symbol"] != VIEW_SYMBOLS[view]:
            bad(f"view_symbol {raw['view_symbol']!r} does not match view {view!r}")
        if raw["kind"] == "literature":
            if raw["arch"] is not None or raw["stage"] is not None:
                bad("a literature row has no arch or stage")
            if not key.startswith("literature/"):
                bad("a literature row's key must start with 'literature/'")
        else:
            if raw["arch"] not in ARCHS:
                bad(f"arch is {raw['arch']!r}, expected one of {ARCHS}")
            if raw["stage"] not in STAGES:
                bad(f"stage is {raw['stage']!r}, expected one of {STAGES}")
            expected_key = row_key(raw["arch"], raw["stage"], view)
            if key != expected_key:
                bad(f"key must be {expected_key!r} (arch/stage/view)")
        accuracy = raw["accuracy"]
        if not isinstance(accuracy, dict) or list(accuracy) != list(DATASETS):
            bad(f"accuracy must map exactly {list(DATASETS)}, in that order")
        for ds, value in accuracy.items():
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0.0 <= value <= 100.0
            ):
                bad(f"accuracy[{ds!r}] is {value!r}, expected a percentage in [0, 100] or null")
        dagger = raw["dagger"]
        if not isinstance(dagger, dict) or list(dagger) != list(DATASETS):
            bad(f"dagger must map exactly {list(DATASETS)}, in that order")
        for ds, flag in dagger.items():
            if not isinstance(flag, bool):
                bad(f"dagger[{ds!r}] is {flag!r}, expected true or false")
            if flag and accuracy[ds] is None:
                bad(f"dagger[{ds!r}] is set on a cell without an accuracy")
        baseline = raw["significance_baseline"]
        if raw["kind"] == "reproduced" and raw["stage"] in DISTILLED_STAGES:
            expected = row_key(raw["arch"], "student", "lower_half_visible")
            if baseline != expected:
                bad(f"significance_baseline must be {expected!r} (the student baseline [1])")
        elif baseline is not None:
            bad("only distilled rows (kd, triplet, fuse) have a significance_baseline")
        if any(dagger.values()) and baseline is None:
            bad("a † needs a significance_baseline")
        rows.append(
            PaperRow(
                key=key,
                label=raw["label"],
                reference=raw["reference"],
                citation=raw["citation"],
                kind=raw["kind"],
                arch=raw["arch"],
                stage=raw["stage"],
                view=view,
                view_symbol=raw["view_symbol"],
                accuracy=MappingProxyType(
                    {ds: (None if v is None else float(v)) for ds, v in accuracy.items()}
                ),
                dagger=MappingProxyType(dict(dagger)),
                significance_baseline=baseline,
                note=raw["note"],
            )
        )
    for r in rows:  # references must point at rows that exist (checked once all are read)
        if r.significance_baseline is not None and r.significance_baseline not in seen:
            fail(f"row {r.key!r}: significance_baseline {r.significance_baseline!r} is not a row")
    return PaperTable(
        rows=tuple(rows), datasets=DATASETS, source=str(data.get("source", "")), path=path
    )
