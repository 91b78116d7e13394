"""Reports: tables and figures built from the results store. They read runs and never train."""

from reports.negative_transfer import Cell, NegativeTransferTable, Row, build_negative_transfer
from reports.render import FORMATS, Table, negative_transfer_table, render

__all__ = ["FORMATS", "Cell", "NegativeTransferTable", "Row", "Table", "build_negative_transfer",
           "negative_transfer_table", "render"]
