"""``sweep``: run an experiment file's grid, dependencies first, skipping what the store holds completed.

The plan is a list of runs in dependency order (a run's linked runs, ``Method.dependencies``, come
before it, each config once even when several runs or entries need it). A backend trains the runs
(in this process, in N local processes, or as Ray tasks); a run whose dependency failed is not
started. Progress (k/N, ETA, failures) goes to logging and a tqdm bar; the summary says what failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Protocol

from tabulate import tabulate
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from benchmark.config import RunConfig
from benchmark.experiment import Experiment, ExperimentError, load
from benchmark.grid import DbSpec, GridRun, check_grid_data, expand
from benchmark.linked import model_path
from benchmark.options import changed_options as options_changed
from benchmark.run_graph import DependencyCycleError, RunGraph, dependency_configs
from benchmark.stores import store_path
from benchmark.sweep_plan import DONE, RESUME, RUN, Backend, Node, Outcome, Plan
from benchmark.tasks import Problem
from benchmark.train import TrainOptions
from datasets import Db
from methods import METHODS
from results import COMPLETED, FAILED, RUNNING, ResultsStore

log = logging.getLogger(__name__)

#: Loggers of a single run (epochs, linked runs, methods' setup), quieted to warnings during a sweep.
QUIET_LOGGERS = ("benchmark.train", "benchmark.runner", "methods")

def build_plan(path: Path, grid: list[GridRun], store: ResultsStore | None, workdir: str | Path, force: bool,
               retrain_missing_weights: bool = False) -> Plan:
    """Add the grid's dependencies (recursively, as one run graph), order them first and decide each run's action.

    ``store`` None (a dry run before any store exists) plans every run to train.
    ``force`` retrains the grid's own runs, never a dependency that is not itself in the grid.
    ``retrain_missing_weights`` trains a completed run again when a run to train needs its weights file and
    it is missing (a store imported from an export, which carries no weights); without it that is an error.
    Raises :class:`ExperimentError` when a method's dependencies cannot be made, depend on each
    other in a cycle, or a completed dependency's weights file is missing.
    """
    graph = RunGraph(partial(_declared, path))
    specs: dict[str, DbSpec] = {}  # a dependency uses the db of the first grid run that needs it
    sources: dict[str, list[str]] = {}
    problems = _Problems()
    for run in grid:
        for source in run.sources:
            if run.cfg.run_id not in graph:
                _add(graph, run.cfg, problems.of(run.db, run.cfg.fold), path)
                for cfg in [*graph.closure(run.cfg.run_id), run.cfg]:
                    specs.setdefault(cfg.run_id, run.db)
            sources.setdefault(run.cfg.run_id, []).append(source)
    nodes = [Node(cfg, specs[cfg.run_id], sources.get(cfg.run_id, []), graph.needs(cfg.run_id))
             for cfg in graph.order()]
    plan = Plan(path, nodes, graph)
    for node in plan.nodes:
        node.action = decide(node, store, force)
    check_weights(plan, workdir, retrain_missing_weights)
    for node in plan.nodes:
        if node.retrain and store is not None:
            node.replaced = store.get(node.run_id)  # to say, once retrained, whether its numbers moved
    return plan


class _Problems:
    """Each grid db opened once, when a run on it is first planned; its problems by fold."""

    def __init__(self) -> None:
        self.dbs: dict[DbSpec, Db] = {}

    def of(self, spec: DbSpec, fold: int | None) -> Problem:
        if spec not in self.dbs:
            self.dbs[spec] = spec.open()
        return self.dbs[spec].problem(fold)


def _declared(path: Path, cfg: RunConfig, problem: Problem) -> dict[str, RunConfig]:
    """:func:`~benchmark.run_graph.dependency_configs`, its errors worded for the experiment file."""
    try:
        return dependency_configs(cfg, problem)
    except (KeyError, ValueError) as exc:
        raise ExperimentError(f"{path}: the runs {cfg.describe()} builds on cannot be made: {exc}") from exc


def _add(graph: RunGraph, cfg: RunConfig, problem: Problem, path: Path) -> None:
    """``graph.add``, a cycle reported as a problem of the experiment file."""
    try:
        graph.add(cfg, problem)
    except DependencyCycleError as exc:
        raise ExperimentError(f"{path}: {exc}") from exc


def decide(node: Node, store: ResultsStore | None, force: bool) -> str:
    """Done if completed (unless forced), resumed if unfinished (``running`` after a kill, or ``failed``), else run."""
    stored = None if store is None else store.get(node.run_id)
    forced = force and node.in_grid
    if stored is not None and stored.status == COMPLETED and not forced:
        return DONE
    if stored is not None and stored.status in (RUNNING, FAILED) and not forced:
        return RESUME
    return RUN


def check_weights(plan: Plan, workdir: str | Path, retrain: bool = False) -> None:
    """Every completed run that a run to train builds on must have its weights file (the runner loads it); with
    ``retrain``, one that lacks it is planned to train again (same config, same run id) instead. The closure is
    transitive, so a retrained run's own dependencies were checked with it."""
    missing = missing_weights(plan, workdir)
    if missing:
        if not retrain:
            lines = "\n".join(f"  - run {d.run_id} ({d.cfg.describe()}), needed by {n.cfg.describe()}: "
                              f"{model_path(workdir, d.run_id)} is missing" for d, n in missing.values())
            raise ExperimentError(f"{plan.path}: completed runs without their weights file, nothing was run:\n"
                                  f"{lines}\nCopy the files from the machine that trained them, or sweep again with "
                                  f"--retrain-missing-weights to train those runs again (same configs and run ids).")
        for dep, needed_by in missing.values():
            dep.action, dep.retrain = RUN, True
            log.info("run %s (%s) is completed but %s is missing: training it again for %s", dep.run_id,
                     short(dep.cfg), model_path(workdir, dep.run_id), short(needed_by.cfg))


def missing_weights(plan: Plan, workdir: str | Path) -> dict[str, tuple[Node, Node]]:
    """The completed runs whose weights file is missing and that a run to train builds on, each with one such run."""
    missing: dict[str, tuple[Node, Node]] = {}
    for node in plan.nodes:
        if node.action != DONE:
            for dep in plan.closure(node):
                if dep.action == DONE and not model_path(workdir, dep.run_id).is_file():
                    missing.setdefault(dep.run_id, (dep, node))
    return missing


# ----- running the plan -------------------------------------------------------------------------
@dataclass
class Summary:
    """What a sweep did: runs skipped as done, completed, failed, and not started because a dependency failed."""

    path: Path
    plan: Plan
    completed: list[Node] = field(default_factory=list)
    failed: list[tuple[Node, str]] = field(default_factory=list)
    blocked: list[tuple[Node, str]] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def text(self) -> str:
        """The closing summary: counts, then each failed and each not-started run."""
        plan = self.plan
        grid = sum(n.in_grid for n in plan.nodes)
        head = (f"sweep {self.path}: {grid} grid runs + {len(plan.nodes) - grid} dependencies; "
                f"{plan.count(DONE)} already done, {len(self.completed)} completed, {len(self.failed)} failed, "
                f"{len(self.blocked)} not started (a dependency failed); "
                f"wall {timedelta(seconds=round(self.wall_time_s))}")
        lines = [head]
        lines += [f"  FAILED  {n.run_id}  {short(n.cfg)}: {error}" for n, error in self.failed]
        lines += [f"  NOT RUN {n.run_id}  {short(n.cfg)}: needs failed run {dep}" for n, dep in self.blocked]
        if not self.ok:
            lines.append("failed runs are stored as failed; sweep again to retry them (completed runs are skipped)")
        return "\n".join(lines)


class Progress:
    """k/N, ETA and failures across the grid, on a tqdm bar and in one log line per finished run."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.count, self.failures = total, 0, 0
        self.started = time.monotonic()
        self.bar = tqdm(total=total, desc="sweep", unit="run", disable=not enabled or total == 0, dynamic_ncols=True)

    def finished(self, node: Node, outcome: Outcome | None, note: str = "") -> None:
        """Count ``node`` as done (``outcome`` None: not started, ``note`` says why) and log one line."""
        self.count += 1
        self.failures += outcome is None or not outcome.ok
        elapsed = time.monotonic() - self.started
        eta = timedelta(seconds=round(elapsed / self.count * (self.total - self.count)))
        if outcome is None:
            status = f"not started ({note})"
        else:
            status = f"completed in {outcome.wall_time_s or 0:.1f}s" if outcome.ok else f"FAILED: {outcome.error}"
        level = logging.INFO if outcome is not None and outcome.ok else logging.WARNING
        log.log(level, "[%d/%d] %s %s; ETA %s, %d failed", self.count, self.total, short(node.cfg), status, eta,
                self.failures)
        self.bar.update(1)
        self.bar.set_postfix(failed=self.failures)

    def close(self) -> None:
        self.bar.close()


def run_plan(plan: Plan, backend: Backend, progress: Progress) -> Summary:
    """Train every run of ``plan`` not done, each once its dependencies completed; returns the summary."""
    summary = Summary(plan.path, plan)
    started = time.monotonic()
    done = {n.run_id for n in plan.nodes if n.action == DONE}
    failed: set[str] = set()
    queue = [n for n in plan.nodes if n.action != DONE]
    pending: dict[Future, Node] = {}
    while queue or pending:
        waiting = []
        for node in queue:
            bad = next((d for d in node.needs if d in failed), None)
            if bad is not None:
                failed.add(node.run_id)  # its own dependants are not started either
                summary.blocked.append((node, bad))
                progress.finished(node, None, f"needs failed run {bad}")
            elif len(pending) < backend.slots and all(d in done for d in node.needs):
                pending[backend.submit(node, plan.closure(node))] = node
            else:
                waiting.append(node)
        queue = waiting
        if not pending:
            break
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            node = pending.pop(future)
            outcome = backend.finish(node, future)
            if outcome.ok:
                done.add(node.run_id)
                summary.completed.append(node)
            else:
                failed.add(node.run_id)
                summary.failed.append((node, outcome.error or "unknown error"))
            progress.finished(node, outcome)
    summary.wall_time_s = time.monotonic() - started
    return summary


# ----- the dry run ---------------------------------------------------------------------------
def changed_options(cfg: RunConfig) -> str:
    """The hyperparameters that differ from the method's defaults (``single_task``'s task, ``dmsca``'s source ...)."""
    return options_changed(METHODS.get(cfg.method), cfg.method_options)


def short(cfg: RunConfig) -> str:
    """``method[changed options] on db / backbone / seed S[ / fold K]``: a run in one short line."""
    options = changed_options(cfg)
    return (f"{cfg.method}{f'[{options}]' if options else ''} on {cfg.db} / {cfg.backbone} / seed {cfg.seed}"
            + ("" if cfg.fold is None else f" / fold {cfg.fold}"))


def plan_table(plan: Plan) -> str:
    """The expanded grid, one row per run in the order it would train, with what a sweep would do."""
    state = {DONE: "done", RUN: "to run", RESUME: "to resume"}
    rows = []
    for i, n in enumerate(plan.nodes, 1):
        options = changed_options(n.cfg)
        what = "to retrain (weights missing)" if n.retrain else state[n.action]
        rows.append([i, what, "grid" if n.in_grid else "dependency", n.run_id,
                     n.cfg.method + (f" [{options}]" if options else ""), n.cfg.db, n.cfg.backbone, n.cfg.seed,
                     "" if n.cfg.fold is None else n.cfg.fold, " ".join(n.needs)])
    table = tabulate(rows, headers=["#", "state", "role", "run_id", "method", "db", "backbone", "seed", "fold",
                                    "needs"], tablefmt="github")
    grid = sum(n.in_grid for n in plan.nodes)
    return (f"{plan.path}: {grid} grid runs + {len(plan.nodes) - grid} dependencies; {plan.count(DONE)} done, "
            f"{plan.count(RUN)} to run, {plan.count(RESUME)} to resume (dry run: nothing trained)\n{table}")


# ----- the command ---------------------------------------------------------------------------
def parse_data_roots(values: list[str]) -> dict[str, str]:
    """``["cad=/data/cad", ...]`` -> ``{"cad": "/data/cad"}``."""
    out = {}
    for value in values:
        name, sep, root = value.partition("=")
        if not sep or not name.strip() or not root.strip():
            raise ValueError(f"--data-root {value!r} must look like DB=DIR, e.g. --data-root cad=/data/cad")
        out[name.strip()] = root.strip()
    return out


def check_arguments(args: argparse.Namespace) -> None:
    """Reject options that do not go together, saying which to use instead."""
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: give 1 or more runs at a time")
    if args.executor == "ray" and args.jobs != 1:
        raise ValueError("--jobs is for --executor local; Ray schedules runs by the resources each asks for "
                         "(set [resources] cpus/gpus in the experiment file)")
    if args.executor == "ray" and args.device != "auto":
        raise ValueError("--device is for --executor local; a Ray task trains on the GPU Ray gives it, if any "
                         "(set [resources] gpus in the experiment file)")
    if args.address and args.executor != "ray":
        raise ValueError("--address is the Ray cluster to use: add --executor ray")


def make_backend(args: argparse.Namespace, store: ResultsStore, experiment: Experiment) -> Backend:
    """The executor asked for on the command line; Ray is imported only here."""
    from benchmark import sweep_backends

    options = train_options(args, experiment)
    if args.executor == "ray":
        from benchmark.sweep_ray import RayBackend

        return RayBackend(store, args.workdir, args.address, experiment.resources, options)
    if args.jobs > 1:
        return sweep_backends.ProcessBackend(store, args.workdir, args.device, args.force, args.jobs, options)
    return sweep_backends.InProcessBackend(store, args.workdir, args.device, args.force, options)


def train_options(args: argparse.Namespace, experiment: Experiment) -> TrainOptions:
    """How every run of the sweep executes: the file's ``[execution]`` table, ``--[no-]channels-last`` over it,
    and ``--tensorboard``. None of it is part of a run's identity; each run stores what it ran with."""
    flag = getattr(args, "channels_last", None)
    channels_last = experiment.execution.get("channels_last", False) if flag is None else flag
    return TrainOptions(tensorboard=args.tensorboard, channels_last=channels_last)


def only_entries(experiment: Experiment, kind: str, names: list[str] | None) -> Experiment:
    """The file's grid restricted to its ``kind`` entries (``methods`` or ``backbones``) named ``names`` (all when
    None); run ids are unchanged, so a later sweep of the whole file skips what this one completed."""
    if not names:
        return experiment
    entries = getattr(experiment, kind)
    unknown = sorted(set(names) - {e.name for e in entries})
    if unknown:
        raise ExperimentError(f"{experiment.path}: --{kind} {' '.join(unknown)}: no such {kind[:-1]} entry in the file "
                              f"(its {kind}: {', '.join(dict.fromkeys(e.name for e in entries))})")
    return dataclasses.replace(experiment, **{kind: [e for e in entries if e.name in names]})


def cmd_sweep(args: argparse.Namespace) -> int:
    """Check and expand the file, plan, then train (or print the plan); non-zero exit when a run failed."""
    check_arguments(args)
    experiment = only_entries(only_entries(load(args.file), "methods", args.methods), "backbones", args.backbones)
    grid = expand(experiment, parse_data_roots(args.data_root))
    if args.dry_run:
        store = ResultsStore(store_path(args.workdir), create=False) if store_path(args.workdir).is_file() else None
        print(plan_table(build_plan(experiment.path, grid, store, args.workdir, args.force,
                                    args.retrain_missing_weights)))
        if store is not None:
            store.close()
        return 0
    check_grid_data(grid, args.workdir, args.force, progress=not args.quiet)  # before the store exists or a run starts
    with ResultsStore(store_path(args.workdir)) as store:
        plan = build_plan(experiment.path, grid, store, args.workdir, args.force, args.retrain_missing_weights)
        log.info("%s: %d grid runs + %d dependencies; %d done, %d to run, %d to resume", experiment.path,
                 sum(n.in_grid for n in plan.nodes), sum(not n.in_grid for n in plan.nodes), plan.count(DONE),
                 plan.count(RUN), plan.count(RESUME))
        for name in QUIET_LOGGERS:  # each run's own chatter would bury the grid's progress; warnings still show
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
        backend = make_backend(args, store, experiment)
        progress = Progress(len(plan.nodes) - plan.count(DONE), enabled=not args.quiet)
        try:
            with logging_redirect_tqdm():
                summary = run_plan(plan, backend, progress)
        finally:
            progress.close()
            backend.close()
        retrained = retrain_comparison(plan, store)
    print("\n".join([summary.text(), *retrained]))
    return 0 if summary.ok else 1


def retrain_comparison(plan: Plan, store: ResultsStore) -> list[str]:
    """For each run retrained for its missing weights: whether its test metrics equal those of the record it
    replaced (an imported record may come from another kind of machine, where rounding moves a run)."""
    lines = []
    for node in plan.nodes:
        new = store.get(node.run_id) if node.retrain and node.replaced is not None else None
        if new is None or new.status != COMPLETED:
            continue
        before = {(m.task, m.metric): m.value for m in node.replaced.metrics if m.split == "test"}
        after = {(m.task, m.metric): m.value for m in new.metrics if m.split == "test"}
        moved = {k: after[k] - before[k] for k in before.keys() & after.keys() if after[k] != before[k]}
        if not moved and before.keys() == after.keys():
            lines.append(f"  retrained {node.run_id} ({short(node.cfg)}): test metrics identical to the record it "
                         f"replaced (best epoch {new.best_epoch})")
            continue
        most = max(moved, key=lambda k: abs(moved[k])) if moved else None
        where = "" if most is None else (f", most in {most[0]} {most[1]} ({before[most]:.4f} -> "
                                         f"{after[most]:.4f})")
        lines.append(f"  retrained {node.run_id} ({short(node.cfg)}): test metrics differ from the record it "
                     f"replaced{where}; best epoch {node.replaced.best_epoch} -> {new.best_epoch}")
    return lines
