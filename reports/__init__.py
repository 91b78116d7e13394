"""Reports: tables and figures built from the results store. They read runs and never train."""

from reports.compare import Block, Column, Variant, build_blocks, column_stat, delta_m, verdict
from reports.layouts import LAYOUTS, build_tables
from reports.render import FORMATS, SUFFIXES, render
from reports.spec import Baseline
from reports.stats import SPREADS, TESTS, Stat
from reports.table import Cell, ReportOptions, Row, Table

__all__ = ["FORMATS", "LAYOUTS", "SPREADS", "SUFFIXES", "TESTS", "Baseline", "Block", "Cell", "Column", "ReportOptions",
           "Row", "Stat", "Table", "Variant", "build_blocks", "build_tables", "column_stat", "delta_m", "render",
           "verdict"]
