"""``benchmarks/torchjd_cost.py`` runs end to end on a tiny setting: a table row per method, and its --check passes.

No timing is asserted (timings depend on the machine); the check (mtlbench's ``shared_parameters`` step and
TorchJD's native ``mtl_backward`` step, or mtlbench's loss weighting and TorchJD's scalarizer, give the backbone
the same update) is.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from tests.conftest import REPO

pytest.importorskip("torchjd")

AGGREGATED = ("upgrad", "mgda")
SCALARIZED = ("uw", "rlw", "famo")
METHODS = AGGREGATED + SCALARIZED


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
    checks = {line.split()[1].rstrip(":"): line for line in output.splitlines() if line.startswith("check ")}
    assert list(checks) == list(METHODS)
    assert checks.pop("rlw").startswith("check rlw: skipped (its random weights cannot be drawn alike")
    assert all(": ok (same initial weights: True;" in line for line in checks.values()), checks
    assert output.count("| method ") == 2  # the gradient weightings' table, then the loss weightings'
    rows = table_rows(output)
    assert set(rows) == {"method", "no_coupling", *METHODS}
    for name in AGGREGATED:
        numbers = [float(cell) for cell in rows[name]]
        assert len(numbers) == 7 and all(n > 0 for n in numbers), rows[name]
    for name in SCALARIZED:
        numbers = [float(cell) for cell in rows[name]]
        assert len(numbers) == 5 and all(n > 0 for n in numbers), rows[name]


def test_each_method_maps_to_the_aggregator_of_its_defaults():
    module = torchjd_cost()
    from methods import METHODS as REGISTRY

    for name in module.TORCHJD_METHODS:
        aggregator = module.torchjd_aggregator(name, REGISTRY.get(name)(), 2)
        assert type(aggregator).__module__.startswith("torchjd.aggregation"), name
    with pytest.raises(ValueError, match="not a TorchJD-backed method"):
        module.torchjd_aggregator("no_coupling", REGISTRY.get("no_coupling")(), 2)


def test_each_loss_weighting_maps_to_the_scalarizer_of_its_defaults():
    module = torchjd_cost()
    from methods import METHODS as REGISTRY

    expected = {"uw": "UW", "dwa": "DWA", "rlw": "Random", "famo": "FAMO"}
    for name in module.SCALARIZER_METHODS:
        scalarizer = module.torchjd_scalarizer(name, REGISTRY.get(name)(), 2)
        assert type(scalarizer).__name__ == expected[name], name
    famo = module.torchjd_scalarizer("famo", REGISTRY.get("famo")(logit_lr=0.5, gamma=0.01), 2)
    assert (famo.lr, famo.weight_decay) == (0.5, 0.01)
    assert module.torchjd_scalarizer("dwa", REGISTRY.get("dwa")(temperature=3.0), 2).temperature == 3.0
    with pytest.raises(ValueError, match="not a loss weighting TorchJD implements"):
        module.torchjd_scalarizer("upgrad", REGISTRY.get("upgrad")(), 2)
