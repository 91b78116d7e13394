"""The figures of ``python -m benchmark report`` (its command is :mod:`benchmark.cli.report`); it never trains.

Tables and figures are built by :mod:`reports` from stored runs alone. The relatedness heat maps
also need the db (its class and attribute names, its priors, or its training split for the
counted ``db`` source), so they are resolved here, where the db registry may be imported.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmark.tasks import Problem
from results import RunRecord

if TYPE_CHECKING:
    from reports import Block

log = logging.getLogger(__name__)


def draw_figures(records: list[RunRecord], dbs: list[str], folder: Path, args: argparse.Namespace) -> list[Path]:
    """Per block: relative differences to single-task and training curves; per db: relatedness heat maps."""
    from reports import build_blocks
    from reports.compare import where
    from reports.figures import relative_difference_figure, training_curves_figure

    blocks = build_blocks(records, dbs, args.backbone)
    paths: list[Path] = []
    for i, block in enumerate(blocks):
        name = block.db + (f"_{i + 1}" if [b.db for b in blocks].count(block.db) > 1 else "")
        paths += relative_difference_figure(block, folder / f"relative_difference_{name}", args.spread)
        if not args.curves:
            paths += _default_curves(block, folder / f"training_curves_{name}")
    if args.curves:
        runs = pick_runs(records, args.curves)
        labels = [f"{r.method} {r.run_id[:8]} ({where(r)})" for r in runs]
        paths += training_curves_figure(runs, folder / "training_curves", labels, "training curves of the chosen runs")
    for db in dbs:
        paths += relatedness_figures([r for r in records if r.db == db], folder, args.data_root)
    return paths


def _default_curves(block: Block, stem: Path) -> list[Path]:
    """Training curves of the first seed/fold of every method in ``block``."""
    from reports.compare import variant_label, where
    from reports.figures import training_curves_figure

    variants = block.variants()
    chosen = []
    for v in variants:  # single_task: one run per task
        groups: dict[str, list[RunRecord]] = {}
        for r in v.runs:
            groups.setdefault(str(r.method_options.get("task")) if v.is_reference else "", []).append(r)
        chosen += [(v, min(rs, key=lambda r: (r.fold if r.fold is not None else -1, r.seed)))
                   for rs in groups.values()]
    chosen = [(v, r) for v, r in chosen if r.history]
    if not chosen:
        return []
    labels = [f"{variant_label(v, variants)}{' ' + r.method_options['task'] if v.is_reference else ''} ({where(r)})"
              for v, r in chosen]
    return training_curves_figure([r for _, r in chosen], stem, labels, f"{block.db} ({block.label}): training curves")


def pick_runs(records: list[RunRecord], prefixes: list[str]) -> list[RunRecord]:
    """The runs whose ids start with each of ``prefixes``; an unknown or ambiguous prefix is an error."""
    chosen = []
    for prefix in prefixes:
        found = [r for r in records if r.run_id.startswith(prefix)]
        if len(found) != 1:
            listing = ", ".join(f"{r.run_id[:10]} ({r.method}, {r.db}, seed {r.seed})" for r in found[:8])
            raise ValueError(f"--curves {prefix!r} matches {len(found)} completed runs of the reported dbs"
                             f"{': ' + listing if found else ''}; give a longer run id prefix "
                             f"('python -m benchmark results' lists them)")
        chosen.append(found[0])
    return chosen


def relatedness_figures(records: list[RunRecord], folder: Path, data_root: str | None) -> list[Path]:
    """Heat maps of the relatedness sources the stored runs used (or the db's sources if none did)."""
    from reports.figures import relatedness_figure

    maps, _ = relatedness_maps(records, data_root)
    paths = []
    for m in maps:
        paths += relatedness_figure(m.matrix, m.classes, m.attributes, folder / f"relatedness_{records[0].db}_{m.name}",
                                    m.title)
    return paths


@dataclass(frozen=True)
class RelatednessMap:
    """One relatedness matrix p(attribute | class) of a db, resolved as the coupling methods resolve it."""

    name: str
    title: str
    matrix: np.ndarray
    classes: tuple[str, ...]
    attributes: tuple[str, ...]


def relatedness_maps(records: list[RunRecord], data_root: str | None) -> tuple[list[RelatednessMap], str]:
    """The matrices of the sources ``records`` (one db) used, or the db's sources if none did; and,
    when there is none, why (the db's files are not reachable, it has no class/attribute pair, ...)."""
    from datasets import DBS

    if not records:
        return [], "no run of this db"
    first = records[0]
    try:
        db = DBS.get(first.db)(data_root=data_root, **first.config.get("db_options", {}))
        problem = db.problem(first.fold)
        classes, attributes = problem.pair()
    except Exception as exc:  # a missing data folder or a db without a class/attribute pair: no heat map
        log.warning("no relatedness heat map for db %r: %s", first.db, exc)
        return [], f"db {first.db!r} could not be opened here ({exc}); a file-based db needs --data-root"
    used = {str(r.method_options["relatedness"]) for r in records if "relatedness" in r.method_options}
    maps, problems = [], []
    for source in sorted(used) or problem.relatedness_sources():
        try:
            resolved, matrix = _resolve(problem, source)
        except Exception as exc:  # noqa: BLE001 - one unusable source must not stop the other figures
            log.warning("no relatedness heat map for %r on db %r: %s", source, first.db, exc)
            problems.append(f"source {source!r}: {exc}")
            continue
        name = Path(resolved).stem if resolved.endswith(".csv") else resolved
        title = f"{first.db}: p(attribute | class), source {resolved}" + (" (auto)" if source == "auto" else "")
        maps.append(RelatednessMap(name, title, matrix, tuple(classes.labels), tuple(attributes.labels)))
    return maps, "; ".join(problems) or ("" if maps else "the db has no relatedness source")


def _resolve(problem: Problem, source: str) -> tuple[str, np.ndarray]:
    """The coupling methods' own resolution of a relatedness option (``auto``, a source, a CSV path)."""
    from methods.dmsca import resolve_relatedness

    return resolve_relatedness(problem, source)
