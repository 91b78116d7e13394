"""Every shipped experiment file resolves, all cells, against tiny fixture trees of every db it names.

The check is the one ``python -m benchmark sweep FILE --dry-run`` makes (load, expand, plan with the
dependencies), with every file-based db pointed at a fixture tree in its official release format
(``--data-root`` and the dbs' environment variables both), so ``optional = true`` entries are
exercised too. A file whose grid cannot run fails here, naming the entry and the fix, instead of on a
GPU machine hours into a sweep. New files under ``experiments/`` are covered by the glob.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.experiment import load
from benchmark.grid import expand
from benchmark.sweep import RUN, build_plan, plan_table
from datasets import DBS
from tests.conftest import REPO
from tests.datasets.affect_fixtures import (abaw4_lsd_tree, affectnet_csv_tree, affwild2_tree, ckplus_tree,
                                            emotionet_tree, rafdb_tree)
from tests.datasets.fixture_trees import cad_tree, celeba_tree, cub_tree, sadd_tree

EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))

#: db name -> writer of a tiny tree in its official format under the given folder.
WRITERS = {
    "cad": cad_tree,
    "celeba": lambda root: celeba_tree(root, {101: 12, 205: 8, 307: 5, 509: 5, 610: 3}),
    "cub": cub_tree,
    "sadd": sadd_tree,
    "affectnet": affectnet_csv_tree,
    "rafdb": rafdb_tree,
    "emotionet": emotionet_tree,
    "affwild2": affwild2_tree,
    "abaw4_lsd": abaw4_lsd_tree,
    "ckplus": ckplus_tree,
}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, str]:
    """db name -> data root, for every registered db that reads files (the pairings: the folder of their sides).

    The dbs' environment variables point at the same trees while the module runs, as a user's would.
    """
    root = tmp_path_factory.mktemp("data")
    for name, write in WRITERS.items():
        write(root / name)
    roots = {}
    for name in DBS.names():
        env_var = getattr(DBS.get(name), "env_var", "")
        if env_var:
            roots[name] = str(root if "+" in name else root / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        for name in DBS.names():
            env_var = getattr(DBS.get(name), "env_var", "")
            if env_var and name in roots:
                patch.setenv(env_var, roots[name])
        yield roots


def test_every_db_of_every_experiment_file_has_a_fixture_tree():
    """A file naming a file-based db without a writer here would not be exercised: add one to WRITERS."""
    names = {entry.name for path in EXPERIMENTS for entry in load(path).dbs}
    sides = {side for name in names if "+" in name for side in name.split("+")}
    file_based = {n for n in names | sides if n in DBS.names() and "+" not in n and getattr(DBS.get(n), "env_var", "")}
    assert file_based <= set(WRITERS), f"add fixture writers for {sorted(file_based - set(WRITERS))}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_file_resolves_every_cell(path: Path, data_roots: dict[str, str], tmp_path: Path):
    experiment = load(path)
    grid = expand(experiment, data_roots)
    plan = build_plan(experiment.path, grid, None, tmp_path / "w", force=False)  # the dry run's plan
    assert grid, f"{path.name}: the grid is empty"
    assert all(node.action == RUN for node in plan.nodes)
    assert f"{len(plan.nodes)} to run" in plan_table(plan)
    covered = {source.split(" x ")[1] for run in grid for source in run.sources}
    assert covered == {entry.label for entry in experiment.dbs}, f"{path.name}: db entries without a run"
    methods = {source.split(" x ")[0] for run in grid for source in run.sources}
    assert methods == {entry.label for entry in experiment.methods}, f"{path.name}: method entries without a run"
