"""The report as CSV (`fer_distill.evaluation.report`): one line per cell, every table."""
from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping

CSV_COLUMNS = ("table", "row_key", "paper_row_key", "label", "view", "view_symbol", "dataset",
               "arch", "stage", "paper_dataset", "paper_accuracy", "paper_dagger", "status", "accuracy",
               "difference", "dagger", "mcnemar_b", "mcnemar_c", "mcnemar_statistic",
               "mcnemar_pvalue", "mcnemar_method", "transfer_kl", "transfer_agreement",
               "count", "run_dir", "flagfile",
               "run_flagfile", "predictions", "source", "note")


def render_csv(report: Mapping[str, Any]) -> str:
    """One line per cell (table, row, data set), in the paper's row order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for table in report["tables"]:
        for row in table["rows"]:
            for cell in row["cells"].values():
                test = cell["mcnemar"] or {}
                writer.writerow({
                    "table": table["id"], "row_key": row["key"], "paper_row_key": row["paper_key"],
                    "label": row["label"],
                    "view": row["view"], "view_symbol": row["view_symbol"],
                    **{k: _csv(cell[k]) for k in ("dataset", "arch", "stage", "paper_dataset",
                                                   "paper_accuracy", "paper_dagger", "status",
                                                   "accuracy", "difference", "dagger", "count",
                                                   "run_dir", "flagfile", "run_flagfile",
                                                   "predictions", "source", "note")},
                    "mcnemar_b": _csv(test.get("b")), "mcnemar_c": _csv(test.get("c")),
                    "mcnemar_statistic": _csv(test.get("statistic")),
                    "mcnemar_pvalue": _csv(test.get("pvalue")),
                    "mcnemar_method": _csv(test.get("method")),
                    "transfer_kl": _csv((cell["transfer"] or {}).get("kl")),
                    "transfer_agreement": _csv((cell["transfer"] or {}).get("agreement"))})
    return buffer.getvalue()


def _csv(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)
