"""mtlbench: multi-task learning strategies compared on classification tasks with sparse annotations.

The package is importable without torch being imported: ``benchmark.registry`` and
``benchmark.tasks`` are the contract modules that ``methods`` and ``datasets`` build on.
"""

__version__ = "0.1.0"
