"""Linked runs: the runs a method builds on, their configs, and the model files that carry them over.

Multi-stage protocols (single-task teachers before a student, AdaShare's policy search before its
retraining) are separate stored runs (DESIGN.md, Sec. 4). A method names them with
``Method.dependencies``; :mod:`benchmark.run_graph` resolves them into :class:`RunConfig` s under the
dependent run's protocol and walks them. A completed run leaves its best-epoch weights in
``WORKDIR/models/<run_id>.pt``, from which :func:`load_linked` rebuilds it for ``Method.attach``;
:func:`train_dependencies` trains them in memory instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones import create_backbone, create_heads
from benchmark.config import RunConfig
from benchmark.run_graph import RunGraph, run_graph
from benchmark.run_graph import dependency_configs as dependency_configs  # its old home; callers import it here
from benchmark.tasks import Problem
from benchmark.train import train
from datasets import Db
from methods import METHODS, LinkedRun, Method, MultiTaskModel
from results import RunRecord

MODELS_DIR = "models"
MODEL_FILE_FORMAT = 1


def model_path(workdir: str | Path, run_id: str) -> Path:
    """Where the completed run ``run_id`` keeps its best-epoch weights."""
    return Path(workdir) / MODELS_DIR / f"{run_id}.pt"


def save_model(path: Path, cfg: RunConfig, model: MultiTaskModel, method: Method) -> None:
    """Write a run's network and method state atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"format": MODEL_FILE_FORMAT, "run_id": cfg.run_id, "config": cfg.to_dict(),
               "model": model.state_dict(), "method": method.state_dict()}
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)  # atomic on POSIX: a reader sees the old file or the whole new one
    finally:
        temporary.unlink(missing_ok=True)


#: A run's method and network, ready to hand to a dependent's ``Method.attach`` as a :class:`LinkedRun`.
Built = tuple[Method, MultiTaskModel]
#: How a dependency's (role, config, built run) becomes the :class:`LinkedRun` its dependent receives.
AsLinked = Callable[[str, RunConfig, Built], LinkedRun]


def linked_run(role: str, cfg: RunConfig, built: Built) -> LinkedRun:
    """The completed run ``cfg`` (its method and network ``built``) as its dependent receives it in ``role``."""
    return LinkedRun(role, cfg.run_id, cfg.to_dict(), *built)


def attach_linked(method: Method, deps: dict[str, tuple[RunConfig, Built]], as_linked: AsLinked = linked_run) -> None:
    """Hand ``method`` its built dependencies (``RunGraph.build``'s ``deps``), each in its role, before ``build``."""
    for role, (cfg, built) in deps.items():
        method.attach(role, as_linked(role, cfg, built))


def load_linked(role: str, cfg: RunConfig, workdir: str | Path, problem: Problem, device: torch.device,
                graph: RunGraph | None = None) -> LinkedRun:
    """Rebuild the completed run ``cfg`` from its model file, its own linked runs (a chain) loaded and attached first.

    ``graph``: a run graph holding ``cfg`` (the dependent's), else ``cfg``'s own is made.
    """
    graph = run_graph(cfg, problem) if graph is None else graph
    return linked_run(role, cfg, graph.build(cfg.run_id, lambda c, deps: _load(c, deps, workdir, problem, device)))


def _load(cfg: RunConfig, deps: dict[str, tuple[RunConfig, Built]], workdir: str | Path, problem: Problem,
          device: torch.device) -> Built:
    """One completed run from its model file, given its own linked runs already loaded."""
    path = model_path(workdir, cfg.run_id)
    if not path.is_file():
        raise FileNotFoundError(
            f"run {cfg.run_id} ({cfg.describe()}) is completed in the store but its weights {path} are missing "
            f"(it was imported, or trained before mtlbench kept weights); copy {MODELS_DIR}/{path.name} from the "
            f"machine that trained it, or retrain it: 'python -m benchmark run --method {cfg.method} "
            f"{' '.join(f'--set {k}={v}' for k, v in cfg.method_options.items())} ... --force'")
    saved = torch.load(path, map_location=device, weights_only=True)
    if saved.get("run_id") != cfg.run_id or saved.get("format") != MODEL_FILE_FORMAT:
        raise ValueError(f"{path} holds run {saved.get('run_id')} (format {saved.get('format')}), not run "
                         f"{cfg.run_id} (format {MODEL_FILE_FORMAT}); delete it and retrain that run with --force")
    method = METHODS.get(cfg.method)(**cfg.method_options)
    attach_linked(method, deps)  # a chain: its build may need them
    backbone, width = create_backbone(cfg.backbone, cfg.pretrained, load_weights=False)  # weights: from the file
    model = method.build(backbone, create_heads(problem.tasks, width), problem)
    model.load_state_dict(saved["model"])
    method.load_state_dict(saved["method"])
    return method.to(device), model.to(device).eval()


def train_dependencies(cfg: RunConfig, db: Db, device: torch.device,
                       cache: dict[str, Built] | None = None) -> dict[str, LinkedRun]:
    """Train the runs ``cfg`` builds on in memory, without store or files (tests, notebooks), by role.

    ``cache`` (by run id) lets several calls share a trained dependency.
    """
    def make(dep: RunConfig, deps: dict[str, tuple[RunConfig, Built]]) -> Built:
        method = METHODS.get(dep.method)(**dep.method_options)
        linked = {role: linked_run(role, c, built) for role, (c, built) in deps.items()}
        result = train(dep, db, method, device, progress=False, linked=linked)
        assert result.model is not None
        return method, result.model

    graph = run_graph(cfg, db.problem(cfg.fold))
    built = graph.build_dependencies(cfg.run_id, make, {} if cache is None else cache)
    return {role: linked_run(role, dep, run) for role, (dep, run) in built.items()}


def link_entry(record: RunRecord) -> dict[str, Any]:
    """What a dependent run stores about a linked run: its id, when it finished, its total cost."""
    return {"run_id": record.run_id, "method": record.method, "finished_at": record.finished_at,
            "wall_time_s": record.total_wall_time_s}
