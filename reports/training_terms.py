"""What the runs optimised: every logged training term of each method at the first and at the chosen epoch.

The training loop logs, per epoch, each term's mean over the steps that computed it
(``history[e]["train_loss"]``): the addends of the objective as the method's ``losses`` hook returns
them (a coupling term times its lambda; a loss-weighting method's task losses times its weights) and
a gradient-weighting method's task weights (``weight/<task>``; its task losses are logged
unweighted, the weights acting on the gradients). Side by side they show which term dominates the
objective, where a weighting put its weight, and how far each task's loss fell by the epoch the run
was selected at on validation. ``report --layout losses`` prints this table; ``docs/results.md``
holds the compact form (:func:`reports.docpage.loss_terms`).
"""

from __future__ import annotations

from collections.abc import Iterable

from reports.compare import Block, shown_options
from reports.stats import SPREADS, Stat
from reports.table import Cell, ReportOptions, Row, Table
from results import RunRecord

#: The two epochs of each term.
EPOCHS = ("first epoch", "chosen epoch")
EXPLANATION = [
    "Each term as the method adds it to the objective (a loss-weighting method's task losses weighted); "
    "weight/<task>: a gradient-weighting method's task weight, its task losses unweighted.",
    "First epoch: the mean over the first epoch's steps; chosen epoch: over the steps of the epoch the run was "
    "selected at on validation.",
]


def epoch_terms(run: RunRecord) -> tuple[dict[str, float], dict[str, float]] | None:
    """The logged training terms of ``run``'s first epoch and of its chosen epoch; None when its history does not
    hold the chosen epoch (a run imported without history, or one whose best epoch was not logged)."""
    by_epoch = {e.get("epoch"): e.get("train_loss") or {} for e in run.history}
    if not by_epoch or run.best_epoch not in by_epoch:
        return None
    return run.history[0].get("train_loss") or {}, by_epoch[run.best_epoch]


def term_values(runs: Iterable[RunRecord]) -> tuple[dict[str, tuple[list[float], list[float]]], int]:
    """Per term (sorted by name), its values at the first and at the chosen epoch over the runs that logged it at
    both, and how many runs were left out for want of their chosen epoch."""
    values: dict[str, tuple[list[float], list[float]]] = {}
    skipped = 0
    for run in runs:
        terms = epoch_terms(run)
        if terms is None:
            skipped += 1
            continue
        first, chosen = terms
        for term in first.keys() & chosen.keys():
            pair = values.setdefault(term, ([], []))
            pair[0].append(float(first[term]))
            pair[1].append(float(chosen[term]))
    return dict(sorted(values.items())), skipped


def training_terms(block: Block, options: ReportOptions) -> Table:
    """One row per method (variant) and logged term: its mean ± spread over the runs at the first and at the
    chosen epoch; single-task's two runs per seed/fold each log their own task's term."""
    rows, skipped = [], 0
    variants = block.variants()
    for variant in variants:
        values, left_out = term_values(variant.runs)
        skipped += left_out
        shown = variant.options_text(dict.fromkeys(shown_options(variant.method, variants)))
        for term, (first, chosen) in values.items():
            stats = [Stat(term, epoch, values=tuple(v)) for epoch, v in zip(EPOCHS, (first, chosen))]
            rows.append(Row([Cell(variant.method), Cell(shown), Cell(term)] + [Cell(stats=(s,)) for s in stats],
                            section=variant.method, method=variant.method))
    over = "seeds and folds" if block.cross_validated else "seeds"
    legend = [f"Mean ± {SPREADS[options.spread]} over {over} of each run's epoch mean, training split."] + EXPLANATION
    if skipped:
        legend.append(f"{skipped} runs without their chosen epoch in the history are left out.")
    return Table(f"training_terms_{block.db}", f"Training terms on {block.db} ({block.label})",
                 ["method", "options", "term", *EPOCHS], rows, legend=legend, spread=options.spread,
                 alpha=options.alpha)
