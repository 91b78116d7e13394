"""``benchmarks/torchjd_cost.py`` runs end to end on a tiny setting: a table row per method, and its --check passes.

No timing is asserted (timings depend on the machine); the check (mtlbench's ``shared_parameters`` step and
TorchJD's native ``mtl_backward`` step give the backbone the same update) is.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from tests.conftest import REPO

pytest.importorskip("torchjd")

METHODS = ("upgrad", "mgda")


def torchjd_cost() -> ModuleType:
    """``benchmarks/torchjd_cost.py``, imported as it imports its sibling ``step_time.py``."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import torchjd_cost as module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def table_rows(output: str) -> dict[str, list[str]]:
    """The cells of each row of the printed (github-format) table, by method."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_the_script_prints_a_row_per_method_and_its_check_passes(capsys):
    status = torchjd_cost().main(["--backbone", "smallcnn", "--warmup", "1", "--steps", "2", "--rounds", "1",
                                  "--image-size", "16", "--batch-size", "8", "--methods", *METHODS, "--check"])
    output = capsys.readouterr().out
    assert status == 0, output
    checks = [line for line in output.splitlines() if line.startswith("check ")]
    assert [line.split()[1].rstrip(":") for line in checks] == list(METHODS)
    assert all(": ok (same initial weights: True;" in line for line in checks), checks
    rows = table_rows(output)
    assert set(rows) == {"method", "no_coupling", *METHODS}
    assert float(rows["no_coupling"][1]) > 0  # its ms per step (the representation column: its loop step)
    for name in METHODS:
        numbers = [float(cell) for cell in rows[name]]
        assert len(numbers) == 7 and all(n > 0 for n in numbers), rows[name]


def test_each_method_maps_to_the_aggregator_of_its_defaults():
    module = torchjd_cost()
    from methods import METHODS as REGISTRY

    for name in module.TORCHJD_METHODS:
        aggregator = module.torchjd_aggregator(name, REGISTRY.get(name)(), 2)
        assert type(aggregator).__module__.startswith("torchjd.aggregation"), name
    with pytest.raises(ValueError, match="not a TorchJD-backed method"):
        module.torchjd_aggregator("no_coupling", REGISTRY.get("no_coupling")(), 2)
