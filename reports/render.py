"""Rendering: one list of string rows to Markdown (tabulate), CSV or JSON; reports never train."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from tabulate import tabulate

from reports.negative_transfer import NegativeTransferTable

FORMATS = ("markdown", "csv", "json")
WORSE, NO_VALUE = "▼", "–"


@dataclass
class Table:
    """A rendered-agnostic table: title, headers, string cells and footnotes."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def format_value(value: float | None, digits: int = 3) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def negative_transfer_table(table: NegativeTransferTable, digits: int = 3) -> Table:
    """Cells read ``value (Δ vs single-task)`` with ▼ where worse; NT says yes/no per row."""
    headers = ["method", "options", "backbone", "seed"] + [f"{t}: {m}" for t, m in table.columns] + ["NT"]
    rows, notes = [], []
    for row in table.rows:
        cells = []
        for cell in row.cells:
            text = format_value(cell.value, digits)
            if cell.delta is not None:
                text += f" ({cell.delta:+.{digits}f}){' ' + WORSE if cell.worse else ''}"
            elif cell.note and not row.is_reference and cell.value is not None:
                text += " (?)"
            if cell.note and cell.note not in notes:
                notes.append(cell.note)
            cells.append(text)
        verdict = {True: "yes", False: "no", None: "" if row.is_reference else "?"}[row.negative_transfer]
        seed = str(row.seed) + (f"/f{row.fold}" if row.fold is not None else "")
        rows.append([row.method, row.options, row.backbone, seed] + cells + [verdict])
    legend = (f"{WORSE}: worse than the single-task run with the same protocol. NT (negative transfer): worse "
              f"on the primary metric of at least one task.")
    notes = [legend] + [f"{NO_VALUE} or ?: {n}" for n in notes]
    return Table(f"Negative transfer on {table.db} (test split)", headers, rows, notes)


def render(table: Table, fmt: str) -> str:
    """``table`` as Markdown, CSV or JSON text."""
    if fmt == "markdown":
        body = tabulate(table.rows, headers=table.headers, tablefmt="github", disable_numparse=True)
        return "\n".join([f"### {table.title}", "", body, ""] + [f"{n}" for n in table.notes]) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(table.headers)
        writer.writerows(table.rows)
        return out.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(table.headers, r)) for r in table.rows], indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
