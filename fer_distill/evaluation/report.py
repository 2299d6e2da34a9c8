"""Table I from our own runs, beside the paper's: Markdown, CSV and JSON.

    report, markdown = make_report(ReportConfig(runs=WORKDIR))

`build_report` walks a tree of run directories and evaluation outputs and fills the paper's
Table I (`paper_table.json`): per data set the paper's accuracy, ours, the difference, the
paper's † and our own † (McNemar against the student baseline [1], `evaluation.mcnemar`), and
each cell's run directory and flagfile; `render_markdown` and `write_report` give the files.
Runs the paper does not have (demo, `mini`, our scenarios) get tables of their own.
Where each number comes from, and why: docs/DESIGN.md, "Evaluation, report, serving".
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
from pathlib import Path
from typing import Any, Mapping

from fer_distill.atomic import write_json, write_text
from fer_distill.data.occlusion import VIEWS
from fer_distill.evaluation import evaluate as evaluation
from fer_distill.evaluation import figures
from fer_distill.evaluation import paper_table as pt
from fer_distill.evaluation.mcnemar import CHI2, EXACT, mcnemar_from_predictions
from fer_distill.evaluation.predictions import load_predictions
from fer_distill.evaluation.report_csv import CSV_COLUMNS, render_csv  # noqa: F401
from fer_distill.evaluation.report_scan import (PROVENANCE_FILE, PROVENANCE_FORMAT,  # noqa: F401
                                                Measurement, Run, choose, flagfiles_in, scan)
from fer_distill.evaluation.scenario_table import render as render_scenario
from fer_distill.evaluation.scenario_table import scenario_tables
from fer_distill.evaluation.transfer import transfer_of_predictions

FORMAT = "fer_distill.report/1"
MARKDOWN_FILE = "table_i.md"
CSV_FILE = "table_i.csv"
JSON_FILE = "table_i.json"
# A file the reproduction writes at the top of its work directory: which flagfile produced
# which run or evaluation (the runs it starts through the library have no flagfile in argv).

DATASET_NAMES = {"affectnet": "AffectNet", "ferplus": "FER+", "demo": "synthetic demo"}
ARCH_NAMES = {"vgg_f": "VGG-f", "vgg_face": "VGG-face", "mini": "mini"}
# Non-paper data sets and networks, and the paper's column / rows they are shown beside.
STAND_IN_DATASETS = {"demo": "ferplus"}
STAND_IN_ARCHS = {"mini": "vgg_f"}
SYNTHETIC_DATASETS = ("demo",)

# Statuses of a cell.
OK = "ok"
NOT_RUN = "not run"
INCOMPLETE = "incomplete"
NOT_EVALUATED = "not evaluated"
LITERATURE = "literature"

# "pretrained": a demo reproduction's stand-in for a pretrained file (fer_distill.reproduce).
# Rows whose model is a student of the teacher row: the transfer section compares them with it.
TRANSFER_STAGES = ("student", "eyes", "kd", "triplet", "fuse", "rkd", "hint")
# Distillers beyond the paper (ours, fer_distill.train.distillers): extra rows after each
# network's fusion row, shown only where a run exists, with † (McNemar against the same
# baseline) and transfer like the paper's distilled rows, and no paper number.
EXTRA_ROWS = {"rkd": "relational KD, Park et al. 2019; ours, not in the paper",
              "hint": "view-masked FitNets hint; ours, not in the paper"}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """runs: the directory tree to read (a reproduction's work directory, or any parent of run
    directories); output: where to write table_i.{md,csv,json} (None: build only);
    exact: McNemar's exact binomial test (True) or chi-square with continuity correction;
    alpha: the significance level of †; split: the split Table I reports (test);
    paper_table: another copy of paper_table.json (default: the packaged one)."""

    runs: str
    output: str | None = None
    exact: bool = True
    alpha: float = 0.05
    split: str = "test"
    paper_table: str | None = None

    def check(self) -> None:
        if not self.runs:
            raise ValueError("report: the runs directory is required")
        if not Path(self.runs).is_dir():
            raise FileNotFoundError(f"report: runs directory {self.runs} not found")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"report: alpha must be in (0, 1), got {self.alpha!r}")
        if self.split not in evaluation.SPLITS:
            raise ValueError(f"report: split must be one of {evaluation.SPLITS}, got "
                             f"{self.split!r}")


def _display_label(label: str, paper_arch: str, arch: str) -> str:
    if arch == paper_arch:
        return label
    pattern = r"VGG-face" if paper_arch == "vgg_face" else r"VGG-f(?![a-z])"
    return re.sub(pattern, ARCH_NAMES.get(arch, arch), label)


def _percent(fraction: float) -> float:
    return round(100.0 * fraction, 2)


def _cell(paper_row: pt.PaperRow, paper_dataset: str | None, dataset: str, arch: str,
          chosen: Mapping[tuple, Measurement], incomplete: Mapping[tuple, Path],
          finished: Mapping[tuple, Path], config: ReportConfig,
          baseline_view: str = "lower_half_visible") -> dict[str, Any]:
    paper_accuracy = paper_row.accuracy[paper_dataset] if paper_dataset else None
    cell: dict[str, Any] = {
        "dataset": dataset, "arch": arch, "stage": paper_row.stage, "view": paper_row.view,
        "paper_dataset": paper_dataset, "paper_arch": paper_row.arch,
        "paper_accuracy": paper_accuracy,
        "paper_dagger": bool(paper_row.dagger[paper_dataset]) if paper_dataset else False,
        "status": NOT_RUN, "accuracy": None, "difference": None, "dagger": None,
        "count": None, "mcnemar": None, "transfer": None, "run_dir": None, "flagfile": None,
        "run_flagfile": None, "predictions": None, "source": None, "note": None,
    }
    if paper_row.kind == "literature":
        cell["status"] = LITERATURE
        return cell
    key = (dataset, arch, paper_row.stage, paper_row.view)
    m = chosen.get(key)
    if m is None:
        if (dataset, arch, paper_row.stage) in finished:
            cell["status"] = NOT_EVALUATED
            cell["run_dir"] = str(finished[(dataset, arch, paper_row.stage)])
            cell["note"] = (f"the {paper_row.stage} run finished but was not evaluated on "
                            f"{paper_row.view} (python -m experiments.evaluate --views="
                            f"{paper_row.view})")
        elif (dataset, arch, paper_row.stage) in incomplete:
            cell["status"] = INCOMPLETE
            cell["run_dir"] = str(incomplete[(dataset, arch, paper_row.stage)])
        return cell
    accuracy = _percent(m.accuracy)
    cell.update(status=OK, accuracy=accuracy, count=m.count,
                difference=None if paper_accuracy is None else round(accuracy - paper_accuracy, 2),
                run_dir=None if m.run is None else str(m.run), flagfile=m.flagfile,
                run_flagfile=m.run_flagfile,
                predictions=None if m.predictions is None else str(m.predictions),
                source=m.source)
    teacher = chosen.get((dataset, arch, "teacher", "full"))
    if (paper_row.stage in TRANSFER_STAGES and teacher is not None
            and teacher.predictions is not None and m.predictions is not None):
        try:
            cell["transfer"] = transfer_of_predictions(
                load_predictions(teacher.predictions), load_predictions(m.predictions),
                where=f"{teacher.predictions} vs {m.predictions}")
        except ValueError as error:
            cell["note"] = f"no transfer diagnostics: {error}"
    if paper_row.stage in pt.DISTILLED_STAGES + tuple(EXTRA_ROWS):
        baseline = chosen.get((dataset, arch, "student", baseline_view))
        if baseline is None:
            cell["note"] = "no † test: the student baseline [1] has no result"
        elif m.predictions is None or baseline.predictions is None:
            cell["note"] = "no † test: per-image predictions missing"
        else:
            try:
                result = mcnemar_from_predictions(baseline.predictions, m.predictions,
                                                  exact=config.exact, alpha=config.alpha)
            except ValueError as error:  # unpaired files: say so in the cell, never guess
                cell["note"] = f"no † test: {error}"
                return cell
            cell["dagger"] = result.b_significantly_better
            cell["mcnemar"] = {**result.to_dict(), "baseline_run": str(baseline.run),
                               "baseline_predictions": str(baseline.predictions)}
    return cell


def _with_extra_rows(paper: pt.PaperTable) -> list[pt.PaperRow]:
    """The paper's rows with ours (EXTRA_ROWS) after each network's fusion row."""
    rows = []
    for row in paper.rows:
        rows.append(row)
        if row.stage == "fuse":
            base = row.label.split(" (")[0]
            rows += [dataclasses.replace(
                row, key=pt.row_key(row.arch, stage, row.view), label=f"{base} ({what})",
                stage=stage, accuracy={d: None for d in paper.datasets},
                dagger={d: False for d in paper.datasets}, note="ours, not in the paper")
                for stage, what in EXTRA_ROWS.items()]
    return rows


def _shown(row: pt.PaperRow, cells: Mapping[str, dict]) -> bool:
    """Our extra rows appear only where something was run for them."""
    return row.stage not in EXTRA_ROWS or any(c["status"] != NOT_RUN for c in cells.values())


def _tables(paper: pt.PaperTable, chosen, incomplete, finished, config) -> list[dict]:
    groups = sorted({(d, a) for d, a, _ in set(finished) | set(incomplete)}
                    | {(k[0], k[1]) for k in chosen})
    paper_groups = [g for g in groups if g[0] in pt.DATASETS and g[1] in pt.ARCHS]
    other_groups = [g for g in groups if g not in paper_groups]
    tables = []
    if paper_groups or not other_groups:
        rows = []
        for row in _with_extra_rows(paper):
            cells = {ds: _cell(row, ds, ds, row.arch, chosen, incomplete, finished, config)
                     for ds in paper.datasets}
            if _shown(row, cells):
                rows.append(_row(row, row.label, cells))
        tables.append({"id": "paper", "title": "Table I", "datasets": list(paper.datasets),
                       "synthetic": False, "stand_in": None, "rows": rows})
    for dataset, arch in other_groups:
        paper_arch = arch if arch in pt.ARCHS else STAND_IN_ARCHS.get(arch, "vgg_f")
        paper_dataset = dataset if dataset in pt.DATASETS else STAND_IN_DATASETS.get(dataset)
        rows = []
        for row in _with_extra_rows(paper):
            if row.kind == "literature" or row.arch != paper_arch:
                continue
            cell = _cell(row, paper_dataset, dataset, arch, chosen, incomplete, finished, config)
            if not _shown(row, {dataset: cell}):
                continue
            rows.append(_row(row, _display_label(row.label, paper_arch, arch), {dataset: cell},
                             key=pt.row_key(arch, row.stage, row.view)))
        tables.append({
            "id": f"{dataset}/{arch}",
            "title": f"{DATASET_NAMES.get(dataset, dataset)}, {ARCH_NAMES.get(arch, arch)}",
            "datasets": [dataset], "synthetic": dataset in SYNTHETIC_DATASETS,
            "stand_in": {"dataset": paper_dataset, "arch": paper_arch}, "rows": rows})
    return tables


def _row(row: pt.PaperRow, label: str, cells: dict, key: str | None = None) -> dict:
    """One row; `key` is the row's own key (arch/stage/view), `paper_key` the paper row's."""
    return {"key": key or row.key, "paper_key": row.key, "label": label,
            "paper_label": row.label, "kind": row.kind, "view": row.view,
            "view_symbol": row.view_symbol, "cells": cells}


def build_report(config: ReportConfig) -> dict[str, Any]:
    """Reads the runs under `config.runs` and returns the report (the JSON written)."""
    config.check()
    paper = pt.load_paper_table(config.paper_table)
    runs, measurements, warnings = scan(config.runs, split=config.split)
    chosen = choose(measurements, warnings)
    halves = [r for r in runs if r.view in (None, *VIEWS)]  # our scenarios' runs: below
    finished = {(r.dataset, r.arch, r.stage): r.path
                for r in sorted(halves, key=lambda r: r.finished_at) if r.finished}
    incomplete = {(r.dataset, r.arch, r.stage): r.path for r in halves if not r.finished
                  and (r.dataset, r.arch, r.stage) not in finished}
    tables = _tables(paper, chosen, incomplete, finished, config) + scenario_tables(
        runs, chosen, lambda row, ds, arch, fin, inc, view: _cell(
            row, None, ds, arch, chosen, inc, fin, config, baseline_view=view),
        ARCH_NAMES, DATASET_NAMES, SYNTHETIC_DATASETS)
    placed = {(c["dataset"], c["arch"], c["stage"], c["view"])
              for t in tables for r in t["rows"] for c in r["cells"].values()}
    unplaced = [{"dataset": m.dataset, "arch": m.arch, "stage": m.stage, "view": m.view,
                 "accuracy": _percent(m.accuracy), "run_dir": str(m.run), "source": m.source}
                for key, m in sorted(chosen.items()) if key not in placed]
    datasets = {d for d, _, _ in set(finished) | set(incomplete)} | {k[0] for k in chosen}
    synthetic = sorted(datasets & set(SYNTHETIC_DATASETS))
    return {
        "format": FORMAT,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": str(config.runs),
        "split": config.split,
        "synthetic": bool(synthetic),
        "notice": _notice(synthetic),
        "mcnemar": {"method": EXACT if config.exact else CHI2, "alpha": config.alpha,
                    "dagger": "p < alpha and the distilled student is right on more of the "
                              "discordant test images than the student baseline [1]"},
        "paper": {"source": paper.source, "file": str(paper.path)},
        "tables": tables,
        "unplaced": unplaced,
        "runs_found": [{"path": str(r.path), "stage": r.stage, "arch": r.arch,
                        "dataset": r.dataset, "finished": r.finished} for r in runs],
        "warnings": warnings,
        "figures": figures.find([(f"{r.dataset} {r.arch} {r.stage}", r.path) for r in runs
                                 if r.finished], config.output),
    }


def _notice(synthetic: list[str]) -> str | None:
    if not synthetic:
        return None
    return ("SYNTHETIC DEMO DATA, SMOKE SCALE: these numbers come from generated faces (the "
            "package's demo set) and a small stand-in network, trained for minutes on a CPU. "
            "They show that every stage runs and how the pieces fit together; they are NOT the "
            "paper's numbers and are not comparable with them. The paper column beside them "
            "is a stand-in (named in the table's heading), shown only as the shape to expect.")


# ------------------------------------------------------------------------------------------
# rendering and writing
# ------------------------------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _ours(cell: dict) -> str:
    if cell["status"] == LITERATURE:
        return ""
    if cell["status"] != OK:
        return cell["status"]
    return f"{cell['accuracy']:.2f}" + (" †" if cell["dagger"] else "")


def _paper(cell: dict) -> str:
    return _number(cell["paper_accuracy"]) + (" †" if cell["paper_dagger"] else "")


def _baseline_transfer(table: Mapping[str, Any], cell: Mapping[str, Any]):
    """The transfer numbers of the student baseline [1] in `table` for `cell`'s data set and
    network, or None."""
    for row in table["rows"]:
        for other in row["cells"].values():
            if (other.get("stage") == "student" and other["transfer"]
                    and other["dataset"] == cell["dataset"] and other["arch"] == cell["arch"]):
                return other["transfer"]
    return None


def _closer(cell: Mapping[str, Any], baseline) -> str:
    """The Transfer table's verdict: is this student's KL to the teacher below [1]'s?"""
    if cell.get("stage") in ("student", "eyes") or baseline is None:
        return "-"
    change = cell["transfer"]["kl"] - baseline["kl"]
    return f"{change:+.3f}: " + ("closer" if change < 0 else "NOT closer")


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (what the binaries print)."""
    lines = ["# Table I, reproduced", ""]
    if report["notice"]:
        lines += [f"> **{report['notice']}**", ""]
    method = report["mcnemar"]["method"]
    lines += [f"Accuracy (%) on the {report['split']} split. Δ = ours − paper. "
              f"○ full face, ◐ lower half visible (upper half black: the VR headset), "
              f"◑ upper half visible. Our † : significantly better than the student baseline "
              f"[1] of the same network and data set, McNemar's paired test ({method}), "
              f"p < {report['mcnemar']['alpha']}, from our own per-image predictions; the "
              f"paper's † is the paper's. Runs read from `{report['runs']}`.", ""]
    for table in report["tables"]:
        if table.get("scenario"):
            lines += render_scenario(table, _ours)
            continue
        if table["id"] == "paper":
            lines += [f"## {table['title']} (the paper's rows, in its order)", ""]
            header = ["Model", "Test faces"]
            for ds in table["datasets"]:
                name = DATASET_NAMES.get(ds, ds)
                header += [f"{name} paper", f"{name} ours", "Δ"]
        else:
            stand_in = table["stand_in"]
            reference = (f"{DATASET_NAMES.get(stand_in['dataset'], stand_in['dataset'])}, "
                         f"{ARCH_NAMES.get(stand_in['arch'], stand_in['arch'])}"
                         if stand_in["dataset"] else "none")
            lines += [f"## {table['title']} (not the paper's data or network)", ""]
            if table["synthetic"]:
                lines += ["Synthetic smoke-scale demo: not comparable with the paper. The paper "
                          f"column is the paper's {reference} for orientation only.", ""]
            header = ["Model", "Test faces", f"paper ({reference})", "ours", "Δ"]
        lines += ["| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        for row in table["rows"]:
            fields = [row["label"], row["view_symbol"]]
            for ds in table["datasets"]:
                cell = row["cells"][ds]
                fields += [_paper(cell), _ours(cell), _signed(cell["difference"])]
            lines.append("| " + " | ".join(fields) + " |")
        lines += ["", figures.DELTA_PAPER if table["id"] == "paper" else figures.DELTA_STAND_IN,
                  ""]

    moved = [(t, r, c) for t in report["tables"] for r in t["rows"]
             for c in r["cells"].values() if c["transfer"]]
    lines += ["## Transfer: how close each student is to its teacher", "",
              "KL(teacher ‖ model) in nats, the teacher on full faces and the model on its own "
              "view, averaged over the test images, and the share of images on which both "
              "pick the same class. Distillation is meant to lower the first and raise the "
              "second against the student baseline [1], which never saw the teacher; the last "
              "column says whether it did.", ""]
    if moved:
        lines += ["| Data set | Model | Test faces | accuracy | KL(teacher ‖ model) | "
                  "agreement with the teacher | KL against [1] |",
                  "|---|---|---|---:|---:|---:|---|"]
        for table, row, cell in moved:
            lines.append(f"| {DATASET_NAMES.get(cell['dataset'], cell['dataset'])} | "
                         f"{row['label']} | {row['view_symbol']} | {_ours(cell)} | "
                         f"{cell['transfer']['kl']:.3f} | "
                         f"{100 * cell['transfer']['agreement']:.1f}% | "
                         f"{_closer(cell, _baseline_transfer(table, cell))} |")
    else:
        lines.append("No student with a finished teacher of the same network yet.")
    lines.append("")

    tests = [(t, r, c) for t in report["tables"] for r in t["rows"]
             for c in r["cells"].values() if c["mcnemar"]]
    lines += [f"## McNemar's test against the student baseline [1] ({method})", "",
              "Rows marked [scenario] are tested against that scenario's student baseline.", ""]
    if tests:
        chi2 = method == CHI2  # the exact test's statistic is min(b, c): no column of its own
        lines += ["| Data set | Model | b (baseline right only) | c (distilled right only) | "
                  + ("χ² | " if chi2 else "") + "p | † |",
                  "|---|---|---:|---:|" + ("---:|" if chi2 else "") + "---:|---|"]
        for table, row, cell in tests:
            t = cell["mcnemar"]
            lines.append(f"| {DATASET_NAMES.get(cell['dataset'], cell['dataset'])} | "
                         f"{row['label']} | {t['b']} | {t['c']} | "
                         + (f"{t['statistic']:.4g} | " if chi2 else "")
                         + f"{t['pvalue']:.4g} | {'†' if cell['dagger'] else ''} |")
        lines += ["", figures.MCNEMAR_COLUMNS.format(alpha=report["mcnemar"]["alpha"])]
    else:
        lines.append("No distilled student with a finished baseline yet.")
    lines.append("")

    lines += figures.markdown(report.get("figures"))
    lines += ["## Where each number comes from", "",
              "| Data set | Model | Test faces | Status | Run directory | Flagfile |",
              "|---|---|---|---|---|---|"]
    for table in report["tables"]:
        for row in table["rows"]:
            for ds, cell in row["cells"].items():
                if cell["status"] in (LITERATURE, NOT_RUN):
                    continue
                lines.append(
                    f"| {DATASET_NAMES.get(ds, ds)} | {row['label']} | {row['view_symbol']} | "
                    f"{cell['status']} | {_code(cell['run_dir'])} | "
                    f"{_code(cell['flagfile'])} |")
    lines.append("")
    notes = [(row, ds, cell) for table in report["tables"] for row in table["rows"]
             for ds, cell in row["cells"].items() if cell["note"]]
    if notes:
        lines += ["## Notes", ""] + [
            f"- {DATASET_NAMES.get(ds, ds)}, {row['label']} {row['view_symbol']}: {cell['note']}"
            for row, ds, cell in notes] + [""]
    if report["unplaced"]:
        lines += ["## Finished results with no row in Table I", ""]
        for u in report["unplaced"]:
            lines.append(f"- {u['dataset']} {u['arch']} {u['stage']} on {u['view']}: "
                         f"{u['accuracy']:.2f}% ({u['run_dir']})")
        lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    return "\n".join(lines)


def _code(text: str | None) -> str:
    return f"`{text}`" if text else "-"


def write_report(report: Mapping[str, Any], output: str | os.PathLike) -> dict[str, Path]:
    """Writes table_i.md, table_i.csv and table_i.json into `output`, each atomically (the
    JSON last: a reader that finds it finds the other two of the same report)."""
    output = Path(output)
    paths = {"markdown": output / MARKDOWN_FILE, "csv": output / CSV_FILE,
             "json": output / JSON_FILE}
    write_text(paths["markdown"], render_markdown(report))
    write_text(paths["csv"], render_csv(report))
    write_json(paths["json"], report)
    return paths


def make_report(config: ReportConfig) -> tuple[dict[str, Any], str]:
    """Builds the report, writes it when `config.output` is set; returns (report, Markdown)."""
    report = build_report(config)
    if config.output:
        write_report(report, config.output)
    return report, render_markdown(report)
