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

from reports import LAYOUTS, SUFFIXES, Baseline, ReportOptions, build_tables, render
from tests.conftest import REPO
from tests.reports.report_store import record, toy_records

GOLDEN = REPO / "tests" / "reports" / "golden"
UPDATE = os.environ.get("MTLBENCH_UPDATE_GOLDEN") == "1"
#: The versus layout's golden files compare every variant with no_coupling.
OPTIONS = {"versus": ReportOptions(versus=Baseline("no_coupling"))}


def _render(layout: str, fmt: str) -> str:
    records = toy_records(histories=layout == "losses")
    return render(build_tables(records, layout, options=OPTIONS.get(layout, ReportOptions())), fmt)


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


LATEX = shutil.which("pdflatex") or shutil.which("tectonic")
NO_LATEX = ("neither pdflatex nor tectonic is installed, so the LaTeX tables are not compiled: .ci/run installs "
            "texlive-latex-base and texlive-latex-recommended (about 35 s and 150 MB) when it runs as root with "
            "apt-get; elsewhere install them (or tectonic) to run this test")


def compile_latex(tables: str, folder) -> None:
    """Compile ``tables`` in a minimal document (booktabs, as the output's first line asks) with pdflatex or tectonic."""
    document = ("\\documentclass{article}\\usepackage{booktabs}\\usepackage[margin=1cm,landscape]{geometry}"
                f"\\begin{{document}}\n{tables}\\end{{document}}\n")
    (folder / "t.tex").write_text(document)
    command = ([LATEX, "-interaction=nonstopmode", "-halt-on-error", "t.tex"] if "pdflatex" in str(LATEX)
               else [str(LATEX), "--keep-logs", "t.tex"])
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert (folder / "t.pdf").stat().st_size > 1000


@pytest.mark.skipif(LATEX is None, reason=NO_LATEX)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_latex_compiles(layout, tmp_path):
    compile_latex(_render(layout, "latex"), tmp_path)


@pytest.mark.skipif(LATEX is None, reason=NO_LATEX)
def test_latex_with_special_characters_in_names_compiles(tmp_path):
    """Names and option values with every character LaTeX treats specially still give a document that compiles."""
    hostile = "a_b%c&d#e$f~g^h\\i{j}k<l>m"
    runs = []
    for seed in (0, 1, 2):
        runs += [record("single_task", seed, {"classes": (.6, .5)}, db="d_b&x", options={"task": "classes"}),
                 record("single_task", seed, {"attributes": (.8, .9)}, db="d_b&x", options={"task": "attributes"}),
                 record("dmsca", seed, {"classes": (.62, .5), "attributes": (.79, .9)}, db="d_b&x",
                        options={"relatedness": hostile})]
    text = "".join(render(build_tables(runs, layout), "latex") for layout in ("negative-transfer", "table5"))
    assert "d\\_b\\&x" in text
    compile_latex(text, tmp_path)
