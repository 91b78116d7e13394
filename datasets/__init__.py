"""Db adapters, one per module, each a subclass of :class:`datasets.base.Db`.

This top-level package shadows Hugging Face ``datasets``; mtlbench never depends on that.
"""

from datasets.base import DBS, Db, Preset, TaskDataset, TensorTaskDataset
from datasets import synthetic  # noqa: F401  (registers the built-in dbs)

__all__ = ["DBS", "Db", "Preset", "TaskDataset", "TensorTaskDataset"]
