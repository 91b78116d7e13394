"""The negative-transfer table of one db under one protocol: every method against single-task.

Kollias, Sharmanska & Zafeiriou (AAAI-24, Sec. 1): a multi-task model shows negative transfer when
it is worse than the single-task model on at least one task; here "worse" is the mean paired
difference on each task's primary metric, and every cell is flagged on its own. Δm is given in the
two conventions the literature uses: over every metric (Navon et al., ICML 2022) and over one
primary metric per task (Maninis, Radosavovic & Kokkinos, CVPR 2019).
"""

from __future__ import annotations

from reports.compare import Block, Variant, column_stat, delta_m, shown_options, verdict, where
from reports.table import Cell, ReportOptions, Row, Table, legend

VERDICTS = {True: "yes", False: "no", None: "?"}
EXPLANATION = [
    "NT (negative transfer, Kollias et al., AAAI-24): worse than single-task on the primary metric of at least "
    "one task.",
    "Δm (metrics): mean signed relative difference to single-task over every metric, in % (Navon et al., ICML "
    "2022); Δm (tasks): the same over one primary metric per task (Maninis et al., CVPR 2019); positive is "
    "better; computed per paired run, then averaged.",
]


def negative_transfer(block: Block, options: ReportOptions) -> Table:
    """One row per method (or per run with ``options.per_run``): test metrics, NT verdict, Δm twice.

    The options column shows :data:`reports.spec.SHOWN_OPTIONS` and whatever tells two rows of one
    method apart; every hyperparameter of a run is in the store (``python -m benchmark results``).
    """
    headers = ["method", "options"] + [f"{c.task}: {c.metric}" for c in block.columns]
    headers += ["NT", "Δm (metrics)", "Δm (tasks)"]
    parts = block.split_by_run() if options.per_run else [block]
    rows = []
    for part in parts:
        run = [Cell(where(part.runs[0]))] if options.per_run else []
        variants = part.variants()
        for variant in variants:
            cells = _cells(part, variant, options, shown_options(variant.method, variants))
            rows.append(Row(cells[:2] + run + cells[2:], section=run[0].text if run else "", method=variant.method))
    if options.per_run:
        headers.insert(2, "run")
    return Table(f"negative_transfer_{block.db}", f"Negative transfer on {block.db} ({block.label})", headers,
                 rows, legend=legend(block.cross_validated, options, delta=True) + EXPLANATION, show_delta=True,
                 spread=options.spread, alpha=options.alpha)


def _cells(block: Block, variant: Variant, options: ReportOptions, shown: list[str]) -> list[Cell]:
    stats = [column_stat(block, variant, c, options.test) for c in block.columns]
    cells = [Cell(variant.method), Cell(variant.options_text(dict.fromkeys(shown)))] + [Cell(stats=(s,)) for s in stats]
    if variant.is_reference:
        return cells + [Cell(), Cell(), Cell()]
    nt, why = verdict(stats)
    cells.append(Cell(VERDICTS[nt], notes=(why,) if why else ()))
    return cells + [Cell(stats=(delta_m(block, variant, primary_only=p),)) for p in (False, True)]
