"""The results store (SQLite) and its records; reports read from here and never train."""

from results.records import COMPLETED, FAILED, RUNNING, Metric, RunRecord
from results.store import SCHEMA_VERSION, ResultsStore, StoreError, read_jsonl

__all__ = ["COMPLETED", "FAILED", "RUNNING", "SCHEMA_VERSION", "Metric", "ResultsStore", "RunRecord", "StoreError",
           "read_jsonl"]
