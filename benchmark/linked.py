"""Linked runs: the runs a method builds on, their configs, and the model files that carry them over.

Multi-stage protocols (single-task teachers before a student, AdaShare's policy search before its
retraining) are separate stored runs (DESIGN.md, Sec. 4). A method names them with
``Method.dependencies``; each becomes a :class:`RunConfig` under the dependent run's protocol; a
completed run leaves its best-epoch weights in ``WORKDIR/models/<run_id>.pt``, from which
:func:`load_linked` rebuilds it for ``Method.attach``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones import create_backbone, create_heads
from benchmark.config import RunConfig
from benchmark.options import resolve
from benchmark.tasks import Problem
from benchmark.train import train
from datasets import Db
from methods import METHODS, LinkedRun, Method, MultiTaskModel
from results import RunRecord

MODELS_DIR = "models"
MODEL_FILE_FORMAT = 1


def dependency_configs(cfg: RunConfig, problem: Problem) -> dict[str, RunConfig]:
    """The configs of the runs ``cfg``'s method declares it builds on, by role.

    A dependency keeps every protocol field of ``cfg`` (db and its options, backbone, pretrained
    weights, seed, fold, epochs, batch size, lr, image size) and takes its own method and fully
    resolved hyperparameters, so its run id is the one the same request on the command line gets.
    """
    declared = METHODS.get(cfg.method).dependencies(dict(cfg.method_options), problem)
    out = {}
    for role, dep in declared.items():
        options = resolve(METHODS.get(dep.method), dep.options)
        out[role] = dataclasses.replace(cfg, method=dep.method, method_options=options)
    return out


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


def load_linked(role: str, cfg: RunConfig, workdir: str | Path, problem: Problem, device: torch.device) -> LinkedRun:
    """Rebuild the completed run ``cfg`` from its model file, its own linked runs attached first."""
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
    for sub_role, sub_cfg in dependency_configs(cfg, problem).items():  # a chain: its build may need them
        method.attach(sub_role, load_linked(sub_role, sub_cfg, workdir, problem, device))
    backbone, width = create_backbone(cfg.backbone, cfg.pretrained, load_weights=False)  # weights: from the file
    model = method.build(backbone, create_heads(problem.tasks, width), problem)
    model.load_state_dict(saved["model"])
    method.load_state_dict(saved["method"])
    return LinkedRun(role, cfg.run_id, cfg.to_dict(), method.to(device), model.to(device).eval())


def train_dependencies(cfg: RunConfig, db: Db, device: torch.device,
                       cache: dict[str, tuple[Method, MultiTaskModel]] | None = None) -> dict[str, LinkedRun]:
    """Train the runs ``cfg`` builds on in memory, without store or files (tests, notebooks), by role.

    ``cache`` (by run id) lets several calls share a trained dependency.
    """
    cache = {} if cache is None else cache
    out = {}
    for role, dep in dependency_configs(cfg, db.problem(cfg.fold)).items():
        if dep.run_id not in cache:
            method = METHODS.get(dep.method)(**dep.method_options)
            result = train(dep, db, method, device, progress=False, linked=train_dependencies(dep, db, device, cache))
            assert result.model is not None
            cache[dep.run_id] = (method, result.model)
        out[role] = LinkedRun(role, dep.run_id, dep.to_dict(), *cache[dep.run_id])
    return out


def link_entry(record: RunRecord) -> dict[str, Any]:
    """What a dependent run stores about a linked run: its id, when it finished, its total cost."""
    return {"run_id": record.run_id, "method": record.method, "finished_at": record.finished_at,
            "wall_time_s": record.total_wall_time_s}
