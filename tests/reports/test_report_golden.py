"""Golden files: the Markdown and LaTeX of every layout on the hand-made store, byte for byte.

After a deliberate change to the tables, look at the diff, then rewrite the files with
``MTLBENCH_UPDATE_GOLDEN=1 python -m pytest tests/reports/test_report_golden.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from reports import LAYOUTS, SUFFIXES, build_tables, render
from tests.conftest import REPO
from tests.reports.report_store import toy_records

GOLDEN = REPO / "tests" / "reports" / "golden"
UPDATE = os.environ.get("MTLBENCH_UPDATE_GOLDEN") == "1"


def _render(layout: str, fmt: str) -> str:
    return render(build_tables(toy_records(), layout), fmt)


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_matches_its_golden_file(layout, fmt):
    text = _render(layout, fmt)
    path = GOLDEN / f"{layout}.{SUFFIXES[fmt]}"
    if UPDATE:
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; write it with MTLBENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{layout} {fmt} differs from {path}; if the change is meant, update it"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_latex_rows_have_as_many_cells_as_the_header(layout):
    text = _render(layout, "latex")
    for block in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", text, flags=re.S):
        align, body = block
        rows = [line for line in body.splitlines() if line.endswith("\\\\") and "\\multicolumn" not in line]
        assert rows and all(line.count(" & ") == len(align) - 1 for line in rows), (align, rows[:2])
        assert body.count("\\toprule") == 1 and body.count("\\bottomrule") == 1
    assert text.count("\\begin{table}") == text.count("\\end{table}") >= 1


def test_markers_appear_where_values_are_worse_or_significant():
    md = _render("table2", "markdown")
    nc_row = next(line for line in md.splitlines() if line.startswith("| NC MT"))
    assert nc_row.count("▼") == 2 and "▼*" in nc_row  # cvtoy attributes and toy classes; toy classes p < .05
    tex = _render("table2", "latex")
    assert "$\\downarrow$$^{*}$" in tex and "paired t-test" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_latex_compiles(layout, tmp_path):
    document = ("\\documentclass{article}\\usepackage{booktabs}\\usepackage[margin=1cm,landscape]{geometry}"
                f"\\begin{{document}}\n{_render(layout, 'latex')}\\end{{document}}\n")
    (tmp_path / "t.tex").write_text(document)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
