"""Aggregation over seeds and folds, relative differences, and the paired test against single-task.

Spread: a table shows mean ± spread over the runs of a cell. ``std`` (sample standard deviation,
ddof = 1) is the default for seeds and for the folds of cross-validated dbs; ``sem`` (std / sqrt n)
and ``half_range`` ((max - min) / 2) are the other conventions in use. Kollias et al. (AAAI-24)
report CAD as mean ± spread over folds without a formula we could check, so the choice is an
option (``--spread``) and every caption names it.

Paired test: each multi-task value is paired with the single-task value of the same task, db,
backbone, seed and fold; with at least :data:`MIN_PAIRS` pairs the differences are tested against
zero. The default is the two-sided paired t-test (Student, 1908): with 3 to 5 seeds the exact
two-sided Wilcoxon signed-rank test cannot go below p = 0.25, 0.125 and 0.0625, so it could never
mark a cell at the usual 0.05; the t-test assumes roughly normal seed-to-seed differences, which
is the usual working assumption for run-to-run noise. ``wilcoxon`` is there for many seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import fmean, stdev

from scipy import stats as scipy_stats

SPREADS: dict[str, str] = {"std": "std", "sem": "s.e.m.", "half_range": "half range"}
TESTS: dict[str, str] = {
    "ttest": "two-sided paired t-test (scipy.stats.ttest_rel)",
    "wilcoxon": "two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon)",
}
MIN_PAIRS = 3
#: ``--adjust``: how a table's p-values are corrected for testing many cells at once.
ADJUSTMENTS: dict[str, str] = {
    "none": "not adjusted for the number of tests",
    "holm": "Holm-adjusted (Holm, Scand. J. Statist. 1979) over every tested cell of the table",
}


@dataclass(frozen=True)
class Stat:
    """One metric of one row over its runs (seeds x folds), with paired differences to single-task.

    Args:
        task, metric: the column. higher_is_better: direction. primary: the task's primary metric.
        values: one value per run. deltas: value - single-task value, one per paired run.
        p_value: the paired test's p-value, None when not tested. notes: why something is missing.
        unit: ``"%"`` for relative quantities (Δm). is_reference: a single-task cell.
    """

    task: str
    metric: str
    higher_is_better: bool = True
    primary: bool = False
    values: tuple[float, ...] = ()
    deltas: tuple[float, ...] = ()
    p_value: float | None = None
    notes: tuple[str, ...] = ()
    unit: str = ""
    is_reference: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_pairs(self) -> int:
        return len(self.deltas)

    @property
    def mean(self) -> float | None:
        return fmean(self.values) if self.values else None

    @property
    def delta(self) -> float | None:
        """Mean paired difference to single-task; None without a pair."""
        return fmean(self.deltas) if self.deltas else None

    @property
    def worse(self) -> bool | None:
        """Whether the mean paired difference is worse than single-task; None without a pair."""
        if self.delta is None:
            return None
        return self.delta < 0 if self.higher_is_better else self.delta > 0

    def significant(self, alpha: float) -> bool:
        return self.p_value is not None and self.p_value < alpha

    def spread(self, kind: str = "std") -> float | None:
        return spread(self.values, kind)


def spread(values: tuple[float, ...] | list[float], kind: str = "std") -> float | None:
    """The spread of ``values`` (see the module docstring); None for fewer than two values."""
    if kind not in SPREADS:
        raise ValueError(f"unknown spread {kind!r}; choose one of {list(SPREADS)}")
    if len(values) < 2:
        return None
    if kind == "half_range":
        return (max(values) - min(values)) / 2
    sd = stdev(values)
    return sd / math.sqrt(len(values)) if kind == "sem" else sd


def paired_test(deltas: tuple[float, ...] | list[float], test: str = "ttest",
                against: str = "single-task") -> tuple[float | None, str]:
    """Two-sided p-value that the paired differences have zero mean (median, for Wilcoxon).

    Returns ``(None, why)`` when there are fewer than :data:`MIN_PAIRS` pairs or the test is
    undefined (all differences identical); ``against`` names what the differences are to in ``why``.
    """
    if test not in TESTS:
        raise ValueError(f"unknown paired test {test!r}; choose one of {list(TESTS)}")
    if len(deltas) < MIN_PAIRS:
        return None, ""
    if max(deltas) - min(deltas) <= 1e-12 * max(1.0, max(abs(d) for d in deltas)):
        return None, f"paired test undefined: the differences to {against} are identical in every run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "ttest":  # ttest_rel(a, b) is the one-sample t-test of a - b against 0
            p = scipy_stats.ttest_1samp(list(deltas), 0.0).pvalue
        else:
            p = scipy_stats.wilcoxon(list(deltas)).pvalue
    return (float(p), "") if math.isfinite(p) else (None, "paired test undefined")


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, 1979), in the order given.

    With the m p-values sorted ascending, p_(i) (i = 1..m) becomes max over j <= i of min(1, (m - j + 1) p_(j)):
    rejecting where the adjusted value is below alpha controls the family-wise error rate at alpha, under any
    dependence between the tests.
    """
    if any(not 0.0 <= p <= 1.0 for p in p_values):  # NaN fails both comparisons
        raise ValueError(f"p-values must lie in [0, 1]; got {[p for p in p_values if not 0.0 <= p <= 1.0]}")
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def relative_difference(value: float, reference: float, higher_is_better: bool) -> float | None:
    """Signed relative difference to single-task, positive = better: (-1)^l (value - ref) / ref.

    ``l`` is 1 for lower-is-better metrics, as in the Δm of Maninis, Radosavovic & Kokkinos (CVPR 2019).
    None when the reference is 0.
    """
    if reference == 0:
        return None
    sign = 1.0 if higher_is_better else -1.0
    return sign * (value - reference) / abs(reference)
