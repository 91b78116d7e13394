"""From a request to stored runs: resolve configs, skip what is done, train, record the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones import BUILTIN_BACKBONES, check_backbone
from benchmark.checkpoint import checkpoint_path
from benchmark.config import ATTRIBUTE_LOSSES, RunConfig
from benchmark.distributed import from_main, is_main_process
from benchmark.linked import dependency_configs, link_entry, load_linked, model_path, save_model
from benchmark.options import parse_overrides, resolve
from benchmark.pretrained import ensure_available, resolve_pretrained
from benchmark.provenance import environment, now, peak_memory_mb
from benchmark.tasks import Problem, world_size
from benchmark.train import TrainOptions, TrainResult, train
from datasets import DBS, Db
from methods import METHODS, LinkedRun, Method
from results import COMPLETED, Metric, ResultsStore, RunRecord

log = logging.getLogger(__name__)

STORE_FILE = "results.sqlite"


@dataclass
class RunRequest:
    """What a user asked for on the command line or in an experiment file."""

    method: str
    db: str
    backbone: str = "smallcnn"
    seed: int = 0
    fold: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    pretrained: str | None = None
    method_set: Sequence[str] = ()
    db_set: Sequence[str] = ()
    data_root: str | None = None
    precision: str = "fp32"
    attribute_loss: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def open_db(name: str, db_set: Sequence[str] = (), data_root: str | None = None) -> Db:
    """Instantiate the db ``name`` with ``key=value`` options."""
    cls = DBS.get(name)
    options = parse_overrides(cls, db_set, f"db {name!r}", exclude=cls.location_options)
    return cls(data_root=data_root, **options)


def resolve_configs(request: RunRequest) -> tuple[Db, list[RunConfig]]:
    """The db and the fully resolved configs one request stands for (``single_task`` gives one per task)."""
    method_cls = METHODS.get(request.method)
    backbone, pretrained = resolve_pretrained(request.backbone, request.pretrained)
    check_backbone(backbone, pretrained)
    supported = method_cls.supported_backbones
    if supported and backbone not in supported and backbone in BUILTIN_BACKBONES:
        raise ValueError(f"method {request.method!r} cannot use backbone {backbone!r}; "
                         f"use one of {', '.join(supported)} (or another timm model of that family)")
    db = open_db(request.db, request.db_set, request.data_root)
    db.check_fold(request.fold)
    preset = db.preset()
    options = resolve(method_cls, parse_overrides(method_cls, request.method_set, f"method {request.method!r}"))
    expanded = method_cls.expand(options, db.problem(request.fold))
    configs = [RunConfig(method=request.method, db=request.db, backbone=backbone, seed=request.seed,
                         epochs=request.epochs or preset.epochs, batch_size=request.batch_size or preset.batch_size,
                         lr=request.lr or preset.lr, image_size=request.image_size or preset.image_size,
                         augmentation=preset.augmentation, label_smoothing=preset.label_smoothing, fold=request.fold,
                         pretrained=pretrained, method_options=o, db_options=db.options(),
                         precision=request.precision, attribute_loss=request.attribute_loss or ATTRIBUTE_LOSSES[0])
               for o in expanded]
    return db, configs


def result_metrics(result: TrainResult, problem: Problem) -> list[Metric]:
    """Flatten val and test metrics into store rows, with direction and primary flags."""
    rows = []
    for split, values in (("val", result.val), ("test", result.test)):
        for task, metrics in values.items():
            spec = problem.task(task)
            rows += [Metric(split, task, name, float(v), spec.higher_is_better(name), name == spec.primary)
                     for name, v in metrics.items()]
    return rows


#: ``checkpoints`` values of :func:`execute` (``run --checkpoints``).
CHECKPOINT_POLICIES = ("temporary", "keep", "off")


def execute(cfg: RunConfig, db: Db, store: ResultsStore, device: torch.device, *, force: bool = False,
            progress: bool = True, workdir: str | Path | None = None, resume: bool = False,
            checkpoints: str = "temporary", options: TrainOptions | None = None,
            _chain: tuple[str, ...] = ()) -> RunRecord:
    """Train and store one run, or return the stored one if it already completed (unless ``force``).

    The runs its method builds on (``Method.dependencies``) are reused when completed, else trained
    first (``force`` never reaches them), and handed to the method; the stored run links them. A
    completed run's best-epoch weights go to ``workdir/models/<run_id>.pt`` (``workdir`` defaults to
    the store's folder) before it is marked completed. A failure of any kind, Ctrl-C included, marks
    the run failed with the reason and re-raises.

    Checkpoints: at each epoch's end the run's state goes to ``workdir/checkpoints/<run_id>.pt``;
    ``checkpoints`` says what becomes of it: ``temporary`` (deleted once the run completes),
    ``keep``, or ``off`` (none written). ``resume=True`` continues an unfinished run (stored
    ``running`` after a kill, or ``failed``, e.g. after Ctrl-C) from its checkpoint, and ends as the
    uninterrupted run would; without a checkpoint the run starts from the beginning. Dependencies
    trained on the way get the same ``resume``, ``checkpoints`` and ``options`` (how to train here:
    AMP is ``cfg.precision``). Under torchrun every process calls this; rank 0 alone writes.
    """
    if checkpoints not in CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoints={checkpoints!r} is not one of {CHECKPOINT_POLICIES}")
    existing = from_main(lambda: store.get(cfg.run_id))
    if existing is not None and existing.status == COMPLETED and not force:
        log.info("skipping %s: completed run %s exists (use --force to train again)", cfg.describe(), cfg.run_id)
        return existing
    if cfg.run_id in _chain:
        raise ValueError(f"method {cfg.method!r} depends on itself through runs {' -> '.join(_chain)}; fix its dependencies()")
    workdir = store.path.parent if workdir is None else Path(workdir)
    how = {"resume": resume, "checkpoints": checkpoints, "options": options}
    linked, links = run_dependencies(cfg, db, store, device, workdir, progress, _chain + (cfg.run_id,), **how)
    method: Method = METHODS.get(cfg.method)(**cfg.method_options)
    if cfg.pretrained:
        ensure_available(cfg.pretrained)  # timm's weights: downloaded (or found offline) before a row is stored
    checkpoint = None if checkpoints == "off" else checkpoint_path(workdir, cfg.run_id)
    main = is_main_process()
    if main:
        record = RunRecord(run_id=cfg.run_id, protocol_id=cfg.protocol_id, status="running", method=cfg.method,
                           db=cfg.db, backbone=cfg.backbone, seed=cfg.seed, fold=cfg.fold, config=cfg.to_dict(),
                           environment=environment(device) | execution(options, resume, checkpoint),
                           started_at=now(), links=links)
        store.start_run(record)
    started = time.perf_counter()
    try:
        result = train(cfg, db, method, device, progress=progress, linked=linked, options=options,
                       checkpoint=checkpoint, resume=resume)
        assert result.model is not None
        if main:
            save_model(model_path(workdir, cfg.run_id), cfg, result.model, method)
    except BaseException as exc:  # KeyboardInterrupt too: the row must not stay "running"
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        if main:
            store.fail_run(cfg.run_id, reason, wall_time_s=time.perf_counter() - started, finished_at=now())
        raise
    if main:
        store.complete_run(cfg.run_id, metrics=result_metrics(result, db.problem(cfg.fold)), history=result.history,
                           best_epoch=result.best_epoch, wall_time_s=time.perf_counter() - started + result.earlier_seconds,
                           peak_memory_mb=peak_memory_mb(device), finished_at=now(), links=links)
        if checkpoint is not None and checkpoints == "temporary":
            checkpoint.unlink(missing_ok=True)  # its best weights are in models/; a grid of checkpoints is large
    stored = from_main(lambda: store.get(cfg.run_id))
    assert stored is not None
    return stored


def execution(options: TrainOptions | None, resume: bool, checkpoint: Path | None) -> dict[str, Any]:
    """How a run was executed, stored with its environment (none of it is in its identity)."""
    options = options or TrainOptions()
    return {"execution": {"processes": world_size(), "channels_last": options.channels_last, "compile": options.compile,
                          "workers": options.workers, "sync_batchnorm": options.sync_batchnorm,
                          "resumed": bool(resume and checkpoint is not None and checkpoint.is_file())}}


def run_dependencies(cfg: RunConfig, db: Db, store: ResultsStore, device: torch.device, workdir: Path,
                     progress: bool, chain: tuple[str, ...], **how: Any) -> tuple[dict[str, LinkedRun], dict[str, Any]]:
    """Reuse or train every run ``cfg`` builds on; returns them loaded for the method, and the links to store."""
    problem = db.problem(cfg.fold)
    linked: dict[str, LinkedRun] = {}
    links: dict[str, Any] = {}
    for role, dep in dependency_configs(cfg, problem).items():
        log.info("%s needs %s as %r", cfg.describe(), dep.describe(), role)
        record = execute(dep, db, store, device, progress=progress, workdir=workdir, _chain=chain, **how)
        linked[role] = load_linked(role, dep, workdir, problem, device)
        links[role] = link_entry(record)
    return linked, links


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return device


def store_path(workdir: str | Path) -> Path:
    return Path(workdir) / STORE_FILE
