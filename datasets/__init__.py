"""Db adapters, one per module, each a subclass of :class:`datasets.base.Db`.

This top-level package shadows Hugging Face ``datasets``; mtlbench never depends on that.
"""

from datasets.base import DBS, Db, Preset, TaskDataset, TensorTaskDataset
from datasets import synthetic  # noqa: F401  (registers the built-in dbs)
from datasets import cad, celeba, cub, sadd  # noqa: F401  (file-based dbs, case study II)
from datasets import abaw4_lsd, affectnet, affwild2, ckplus, emotionet, rafdb  # noqa: F401  (case study I)
from datasets import affect_pairs  # noqa: F401  (case study I's pairings, Tab. 2)

__all__ = ["DBS", "Db", "Preset", "TaskDataset", "TensorTaskDataset"]
