"""The negative-transfer verdict on a tie (issue 18): equal to single-task is not "worse".

Kollias et al. (AAAI-24, Sec. 1): negative transfer is being *worse* than the single-task model on
at least one task; a multi-task model that exactly matches it shows none.
"""

from __future__ import annotations

import pytest

from reports import ReportOptions, build_blocks, column_stat, verdict
from reports.negative_transfer import negative_transfer
from reports.stats import Stat
from tests.reports.report_store import record, single_tasks

SINGLE = {0: ((.60, .50), (.80, .90)), 1: ((.62, .52), (.80, .91)), 2: ((.64, .54), (.83, .92))}


def _tied_block():
    """db ``tie``: a no_coupling run per seed with exactly its single-task values on every metric."""
    runs = []
    for seed, (classes, attributes) in SINGLE.items():
        runs += single_tasks(seed, classes, attributes, db="tie")
        runs.append(record("no_coupling", seed, {"classes": classes, "attributes": attributes}, db="tie"))
    (block,) = build_blocks(runs, ["tie"])
    return block


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_a_zero_mean_difference_is_not_worse(higher_is_better: bool) -> None:
    """``Stat.worse`` is strict in both directions."""
    tie = Stat("classes", "accuracy", higher_is_better, True, values=(.6, .6), deltas=(0.0, 0.0))
    assert tie.delta == 0.0 and tie.worse is False
    assert verdict([tie]) == (False, "")
    lower = -1e-9 if higher_is_better else 1e-9  # a step the wrong way, however small, is worse
    slightly = Stat("classes", "accuracy", higher_is_better, True, values=(.6,), deltas=(lower,))
    assert slightly.worse is True and verdict([slightly]) == (True, "")


def test_a_method_tied_with_single_task_shows_no_negative_transfer() -> None:
    """Through the report: every cell's difference is 0, no cell is flagged, the NT column says ``no``."""
    block = _tied_block()
    (variant,) = [v for v in block.variants() if v.method == "no_coupling"]
    stats = [column_stat(block, variant, c) for c in block.columns]
    assert stats and all(s.deltas == (0.0, 0.0, 0.0) and s.worse is False for s in stats)
    assert verdict(stats) == (False, "")
    table = negative_transfer(block, ReportOptions())
    (row,) = [r for r in table.rows if r.cells[0].text == "no_coupling"]
    assert row.cells[table.columns.index("NT")].text == "no"
