"""Shared fixtures: a tiny synthetic problem, and the example plugin installed on ``sys.path``.

The plugin folder is put on ``sys.path`` before collection, so ``importlib.metadata`` finds its
entry point and the contract suite (parametrised over the method registry) covers it for free.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin_example"
sys.path.insert(0, str(PLUGIN_DIR))
#: The gradient-method plugin example of docs/plugins.md, installed the same way.
GRADIENT_PLUGIN_DIR = Path(__file__).resolve().parent.parent / "docs" / "examples"
sys.path.insert(0, str(GRADIENT_PLUGIN_DIR))

REPO = Path(__file__).resolve().parent.parent

#: db options for a problem that trains in well under a second per epoch.
TINY_DB = {"n_train": 120, "n_val": 40, "n_test": 40, "image_size": 16, "ratio": "1:3"}


@pytest.fixture
def tiny_db():
    from datasets.synthetic import SyntheticDb

    return SyntheticDb(**TINY_DB)


def tiny_config(method: str, method_options: dict | None = None, **overrides):
    """A RunConfig on the tiny synthetic db with the small CNN, 2 epochs."""
    from benchmark.config import RunConfig

    fields = dict(method=method, db="synthetic", backbone="smallcnn", seed=0, epochs=2, batch_size=32, lr=1e-3,
                  image_size=16, method_options=method_options or {}, db_options=dict(TINY_DB))
    fields.update(overrides)
    return RunConfig(**fields)
