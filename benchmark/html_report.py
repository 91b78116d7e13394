"""``python -m benchmark report --format html``: the results page of a store (``reports/html.py``).

The page is built by :mod:`reports` from stored runs alone; what needs a db (the relatedness heat
maps: class and attribute names, priors, the training split for the counted ``db`` source) is
resolved here, where the db registry may be imported, and handed over as matrices.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.stores import every_record, store_path
from benchmark.provenance import now
from results import COMPLETED, RunRecord

if TYPE_CHECKING:
    from reports import ReportOptions

log = logging.getLogger(__name__)

PAGE_NAME = "index.html"


def write_page(args: argparse.Namespace, options: ReportOptions) -> int:
    """Write ``--out DIR/index.html`` (default ``WORKDIR/report/``) for the runs of ``--workdir`` or ``--runs``,
    their tables made with ``options`` (``report``'s flags, checked: :func:`benchmark.cli.report.report_options`)."""
    from reports.html import html_page

    records = [r for r in every_record(args) if not args.backbone or r.backbone == args.backbone]
    dbs = args.db or sorted({r.db for r in records})
    records = [r for r in records if r.db in dbs]
    if not records:
        where = ", ".join(args.runs) if args.runs else args.workdir
        raise ValueError(f"no run of {', '.join(dbs) if args.db else 'any db'}"
                         f"{f' with backbone {args.backbone}' if args.backbone else ''} in {where}; train some with "
                         f"'python -m benchmark run --db ... --method ...'")
    if args.layout != "negative-transfer" or args.curves or args.figures:
        log.info("--format html shows every layout that applies and embeds its figures; "
                 "--layout, --versus, --curves and --figures are for the other formats")
    source = ", ".join(args.runs) if args.runs else str(store_path(args.workdir))
    page = html_page(records, dbs, args.backbone, options, heat_maps(records, dbs, args.data_root),
                     source=source, generated=now())
    out = Path(args.out or Path(args.workdir) / "report") / PAGE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB); open it in a browser", file=sys.stderr)
    return 0


def heat_maps(records: list[RunRecord], dbs: list[str], data_root: str | None) -> dict[str, object]:
    """Per db, its relatedness heat maps (``reports.html.HeatMap``), or why there are none."""
    from benchmark.reporting import relatedness_maps
    from reports.html import HeatMap

    out: dict[str, object] = {}
    for db in dbs:
        mine = [r for r in records if r.db == db]
        maps, why = relatedness_maps([r for r in mine if r.status == COMPLETED] or mine, data_root)
        out[db] = [HeatMap(m.title, m.matrix, m.classes, m.attributes) for m in maps] if maps else why
    return out
