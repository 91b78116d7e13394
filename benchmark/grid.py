"""The grid of an experiment file: every run it stands for, resolved as ``run`` resolves them.

The expansion goes through :func:`benchmark.runner.resolve_configs`, the code path of ``run``, so a
grid run has the id the same ``run`` command gets (``single_task`` expands to one run per task,
``dmsca``'s ``relatedness=auto`` is resolved). Dbs are opened and their data checked first, so a
missing data root fails the check, not a run hours into the sweep.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.backbones import check_backbone
from benchmark.pretrained import resolve_pretrained
from benchmark.config import RunConfig
from benchmark.experiment import Entry, Experiment, Problems, check_preset, check_seeds, option_pairs
from benchmark.options import OptionError, parse_overrides
from benchmark.registry import RegistryError
from benchmark.runner import RunRequest, open_db, resolve_configs
from benchmark.stores import store_path
from datasets import Db
from methods import METHODS
from results import COMPLETED, ResultsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DbSpec:
    """How to open one db of a grid: its name, ``key=value`` options and data root (also in another process)."""

    name: str
    db_set: tuple[str, ...] = ()
    data_root: str | None = None

    def open(self) -> Db:
        """The db, opened as ``run`` opens it."""
        return open_db(self.name, self.db_set, self.data_root)


@dataclass
class GridRun:
    """One run of the grid: its resolved config, its db, and the entries of the file that ask for it."""

    cfg: RunConfig
    db: DbSpec
    sources: list[str] = field(default_factory=list)


@dataclass
class DbPlan:
    """A db entry ready to expand: how to open it, its folds, seeds and preset overrides."""

    entry: Entry
    spec: DbSpec
    folds: list[int | None]
    seeds: list[int]
    preset: dict[str, Any]


def expand(experiment: Experiment, data_roots: dict[str, str] | None = None) -> list[GridRun]:
    """Every run of the grid, each once, in file order; raises :class:`ExperimentError` listing every problem.

    ``data_roots`` (db name -> folder, from ``sweep --data-root``) overrides the entries' ``data_root``.
    """
    problems = Problems(experiment.path)
    dbs = [p for e in experiment.dbs if (p := plan_db(problems, experiment, e, data_roots or {})) is not None]
    methods = [(e, option_pairs(problems, e)) for e in experiment.methods if check_method(problems, e)]
    backbones = [(e.name, e.fields.get("pretrained"), e.fields.get("preset", {})) for e in experiment.backbones
                 if check_backbone_entry(problems, e)]
    runs: dict[str, GridRun] = {}
    broken: set[tuple[str, str, str]] = set()  # (method, db, backbone) entries already found wrong: said once
    # db-major, method-minor: an interrupted sweep leaves whole comparisons (every method of a seed) behind it
    for db in dbs:
        for backbone, pretrained, backbone_preset in backbones:
            for fold in db.folds:
                for seed in db.seeds:
                    for method, pairs in methods:
                        combination = (method.label, db.entry.label, backbone)
                        if combination in broken or not method_runs_on(method, backbone, fold):
                            continue
                        request = RunRequest(method=method.name, db=db.spec.name, backbone=backbone, seed=seed,
                                             fold=fold, pretrained=pretrained, method_set=pairs,
                                             db_set=db.spec.db_set, data_root=db.spec.data_root,
                                             **{**db.preset, **backbone_preset})
                        try:
                            configs = resolve_configs(request)[1]
                        except (RegistryError, OptionError, ValueError, FileNotFoundError) as exc:
                            broken.add(combination)
                            problems.add(f"{method.label} on {db.entry.label} with backbone {backbone!r}", str(exc))
                            continue
                        for cfg in configs:
                            runs.setdefault(cfg.run_id, GridRun(cfg, db.spec)).sources.append(
                                f"{method.label} x {db.entry.label}")
    problems.raise_if_any()
    return list(runs.values())


def check_grid_data(grid: list[GridRun], workdir: str | Path, force: bool, progress: bool) -> None:
    """Check the files of every db the sweep trains on, at each image size it uses (``Db.verify``: annotations
    parse, every image decodes), so a broken file stops the sweep before anything trains or is stored."""
    done: set[str] = set()
    if store_path(workdir).is_file() and not force:
        with ResultsStore(store_path(workdir), create=False) as store:
            done = {r.run_id for r in store.runs(status=COMPLETED)}
    opened: dict[DbSpec, Db] = {}
    for spec, size in dict.fromkeys((run.db, run.cfg.image_size) for run in grid if run.cfg.run_id not in done):
        if spec not in opened:
            opened[spec] = spec.open()
        opened[spec].verify(size, progress=progress)


def method_runs_on(entry: Entry, backbone: str, fold: int | None) -> bool:
    """Whether a method entry's ``backbones`` / ``folds`` (when given) include this backbone and fold."""
    backbones, folds = entry.fields.get("backbones"), entry.fields.get("folds")
    return (backbones is None or backbone in backbones) and (folds is None or fold is None or fold in folds)


def check_method(problems: Problems, entry: Entry) -> bool:
    """The method exists and its options parse (checked once per entry, not once per db)."""
    try:
        parse_overrides(METHODS.get(entry.name), option_pairs(Problems(problems.path), entry), f"method {entry.name!r}")
    except (RegistryError, OptionError) as exc:
        problems.add(entry.label, f"{exc} (see 'python -m benchmark ls methods')")
        return False
    return True


def check_backbone_entry(problems: Problems, entry: Entry) -> bool:
    """The backbone exists (built in or timm) and its ``pretrained`` weights, if named, can be had."""
    pretrained = entry.fields.get("pretrained")
    try:
        if pretrained is not None and not isinstance(pretrained, str):
            raise ValueError(f"pretrained must be a string ('imagenet', a timm tag or a file path), got {pretrained!r}")
        check_backbone(*resolve_pretrained(entry.name, pretrained))
    except (ValueError, FileNotFoundError) as exc:
        problems.add(entry.label, str(exc))
        return False
    return True


def plan_db(problems: Problems, experiment: Experiment, entry: Entry, data_roots: dict[str, str]) -> DbPlan | None:
    """Open a db entry once: its options, folds and data; None (with the problem noted) when it cannot run.

    An entry with ``optional = true`` whose data is missing is left out with a warning instead.
    """
    db_set = tuple(option_pairs(problems, entry))
    spec = DbSpec(entry.name, db_set, data_root(experiment.path, entry, data_roots))
    try:
        db = spec.open()
    except RegistryError as exc:
        problems.add(entry.label, f"{exc} Install the package that provides it (it then shows in "
                                  f"'python -m benchmark ls dbs') or remove this entry.")
        return None
    except (OptionError, ValueError) as exc:
        problems.add(entry.label, str(exc))
        return None
    folds = plan_folds(problems, entry, type(db).num_folds, entry.fields.get("folds", experiment.folds))
    if folds is None:
        return None
    try:
        check_data(db, folds[0])
    except FileNotFoundError as exc:
        if entry.fields.get("optional", False) and not root_given(db, spec):
            log.warning("%s: %s left out (optional = true; --data-root %s=DIR includes it): %s", experiment.path,
                        entry.label, entry.name, str(exc).splitlines()[0].rstrip(":"))
            return None
        problems.add(entry.label, f"{exc}\nIn the experiment file set data_root = \"DIR\" in this entry, or pass "
                                  f"'sweep --data-root {entry.name}=DIR' (or mark it optional = true).")
        return None
    seeds = check_seeds(problems, entry.label, entry.fields["seeds"]) if "seeds" in entry.fields else experiment.seeds
    preset = {**experiment.preset, **check_preset(problems, f"{entry.label} preset", entry.fields.get("preset", {}))}
    return DbPlan(entry, spec, folds, seeds, preset)


def data_root(path: Path, entry: Entry, data_roots: dict[str, str]) -> str | None:
    """``--data-root NAME=DIR`` else the entry's ``data_root`` (``~`` and ``$VARS`` expanded; relative to the file)."""
    root = data_roots.get(entry.name, entry.fields.get("data_root"))
    if root is None:
        return None  # the db reads its environment variable
    expanded = Path(os.path.expandvars(root)).expanduser()
    if entry.name not in data_roots and not expanded.is_absolute():
        expanded = path.parent / expanded
    return str(expanded)


def plan_folds(problems: Problems, entry: Entry, num_folds: int, value: Any) -> list[int | None] | None:
    """The folds to run: ``"all"`` or a list for a cross-validated db; none for a db with fixed splits."""
    if num_folds == 0:
        if "folds" in entry.fields:
            problems.add(entry.label, f"db {entry.name!r} has fixed train/val/test splits; remove 'folds'")
            return None
        return [None]
    if value == "all":
        return list(range(num_folds))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(f, int) and 0 <= f < num_folds for f in value):
        problems.add(entry.label, f"db {entry.name!r} is cross-validated with {num_folds} folds: set folds = \"all\" "
                                  f"or a list of folds in 0..{num_folds - 1} (got {value!r})")
        return None
    return list(dict.fromkeys(value))


def root_given(db: Db, spec: DbSpec) -> bool:
    """Whether a data root was named (file, command line or the db's environment variable): an optional db
    is left out only when none was, so a wrong path is still an error."""
    env_var = getattr(db, "env_var", "")
    return spec.data_root is not None or bool(env_var and os.environ.get(env_var))


def check_data(db: Db, fold: int | None) -> None:
    """Read a file-based db's training labels now, so missing data fails the check, not a run hours later."""
    if hasattr(db, "root"):
        db.split("train", fold)
