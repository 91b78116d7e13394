"""From a request to stored runs: resolve configs, skip what is done, train, record the outcome."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones import BUILTIN_BACKBONES, check_backbone
from benchmark.checkpoint import checkpoint_path, saved_execution
from benchmark.collectives import world_size
from benchmark.config import ATTRIBUTE_LOSSES, RunConfig
from benchmark.distributed import from_main, is_main_process
from benchmark.linked import link_entry, load_linked, model_path, save_model
from benchmark.options import parse_overrides, resolve
from benchmark.pretrained import ensure_available, resolve_pretrained
from benchmark.protocol import check_input_size, check_overrides, check_patience, check_seed
from benchmark.provenance import environment, now, peak_memory_mb
from benchmark.run_graph import RunGraph, run_graph
from benchmark.runlock import RunInProgressError, run_lock
from benchmark.tasks import Problem
from benchmark.train import TrainOptions, TrainResult, train
from datasets import DBS, Db
from methods import METHODS, LinkedRun, Method
from results import COMPLETED, Metric, ResultsStore, RunRecord
from results.records import error_cause

log = logging.getLogger(__name__)

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
    patience: int | None = None


def open_db(name: str, db_set: Sequence[str] = (), data_root: str | None = None) -> Db:
    """Instantiate the db ``name`` with ``key=value`` options."""
    cls = DBS.get(name)
    options = parse_overrides(cls, db_set, f"db {name!r}", exclude=cls.location_options)
    return cls(data_root=data_root, **options)


def resolve_configs(request: RunRequest, db: Db | None = None) -> tuple[Db, list[RunConfig]]:
    """The db and the fully resolved configs one request stands for (``single_task`` gives one per task).

    Every number of the protocol is checked against its range (the image size against what the backbone
    can take) and the method is built once from each config's options, so whatever is wrong with a
    request fails here, before anything is stored. ``db``: the request's db, already opened.
    """
    check_seed(request.seed)
    method_cls = METHODS.get(request.method)
    backbone, pretrained = resolve_pretrained(request.backbone, request.pretrained)
    check_backbone(backbone, pretrained)
    supported = method_cls.supported_backbones
    if supported and backbone not in supported and backbone in BUILTIN_BACKBONES:
        raise ValueError(f"method {request.method!r} cannot use backbone {backbone!r}; "
                         f"use one of {', '.join(supported)} (or another timm model of that family)")
    db = open_db(request.db, request.db_set, request.data_root) if db is None else db
    db.check_fold(request.fold)
    preset = db.preset()
    check_overrides(request.epochs, request.batch_size, request.lr, request.image_size, preset)
    image_size = preset.image_size if request.image_size is None else request.image_size
    check_input_size(backbone, image_size)
    options = resolve(method_cls, parse_overrides(method_cls, request.method_set, f"method {request.method!r}"))
    expanded = method_cls.expand(options, db.problem(request.fold))
    for checked in expanded:  # its own checks of its options (ranges, combinations) and of what it needs of the
        method_cls(**checked).check_capabilities()  # gradient engine, before anything is stored
    method_name = request.method
    if method_cls.stored_as is not None:  # an alias: stored as the registered method it stands for
        method_name, added = method_cls.stored_as
        expanded = [resolve(METHODS.get(method_name), {**o, **added}) for o in expanded]
    epochs = preset.epochs if request.epochs is None else request.epochs
    check_patience(request.patience, epochs)
    configs = [RunConfig(method=method_name, db=request.db, backbone=backbone, seed=request.seed, epochs=epochs,
                         batch_size=preset.batch_size if request.batch_size is None else request.batch_size,
                         lr=preset.lr if request.lr is None else request.lr, image_size=image_size,
                         augmentation=preset.augmentation, label_smoothing=preset.label_smoothing, fold=request.fold,
                         pretrained=pretrained, method_options=o, db_options=db.options(),
                         precision=request.precision, attribute_loss=request.attribute_loss or ATTRIBUTE_LOSSES[0],
                         patience=request.patience)
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
            checkpoints: str = "temporary", options: TrainOptions | None = None, wait: bool = False,
            verify: bool = True, graph: RunGraph | None = None) -> RunRecord:
    """Train and store one run, or return the stored one if it already completed (unless ``force``).

    The runs its method builds on (``Method.dependencies``) are reused when completed, else trained
    first (``force`` never reaches them), and handed to the method; the stored run links them. They
    come from ``graph`` (:mod:`benchmark.run_graph`; the dependent's own when this trains a dependency),
    else from ``cfg``'s graph, made here: a cycle is refused before anything is stored. A completed
    run's best-epoch weights go to ``workdir/models/<run_id>.pt`` (``workdir`` defaults to the store's
    folder) before it is marked completed. A failure of any kind, Ctrl-C included, marks
    the run failed with the reason (and the traceback, after a blank line) and re-raises.

    One process trains a run at a time (``benchmark/runlock.py``): a run another process is training
    raises :class:`~benchmark.runlock.RunInProgressError` at once, before anything is stored; with
    ``wait`` this waits for that process instead and returns its run once completed. With ``verify``
    the db's files are checked (``Db.verify``: every image decodes) before a row is stored.

    Checkpoints: at each epoch's end the run's state goes to ``workdir/checkpoints/<run_id>.pt``;
    ``checkpoints`` says what becomes of it: ``temporary`` (deleted once the run completes),
    ``keep``, or ``off`` (none written). ``resume=True`` continues an unfinished run (stored
    ``running`` after a kill, or ``failed``, e.g. after Ctrl-C) from its checkpoint, and ends as the
    uninterrupted run would; without a checkpoint the run starts from the beginning (and a
    checkpoint found is discarded with a warning). Dependencies trained on the way get the same
    ``resume``, ``checkpoints``, ``options``, ``wait`` and ``verify`` (how to train here: AMP is
    ``cfg.precision``). Under torchrun every process calls this; rank 0 alone writes.
    """
    if checkpoints not in CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoints={checkpoints!r} is not one of {CHECKPOINT_POLICIES}")
    existing = from_main(lambda: store.get(cfg.run_id))
    if existing is not None and existing.status == COMPLETED and not force:
        log.info("skipping %s: completed run %s exists (use --force to train again)", cfg.describe(), cfg.run_id)
        return existing
    graph = run_graph(cfg, db.problem(cfg.fold)) if graph is None else graph
    workdir = store.path.parent if workdir is None else Path(workdir)
    how = {"resume": resume, "checkpoints": checkpoints, "options": options, "wait": wait, "verify": verify}
    with claim(workdir, cfg, wait):
        again = from_main(lambda: store.get(cfg.run_id))
        if again is not None and again.status == COMPLETED and (
                not force or existing is None or again.finished_at != existing.finished_at):
            log.info("%s: another process completed run %s meanwhile; using it", cfg.describe(), cfg.run_id)
            return again
        linked, links = run_dependencies(cfg, graph, db, store, device, workdir, progress, **how)
        if verify:
            verify_data(db, cfg.image_size, progress)
        return train_and_store(cfg, db, store, device, workdir, progress, linked, links, resume=resume,
                               checkpoints=checkpoints, options=options)


@contextmanager
def claim(workdir: Path, cfg: RunConfig, wait: bool) -> Iterator[None]:
    """Rank 0 holds the run's lock while every process trains it; a run another process holds is refused
    (:class:`~benchmark.runlock.RunInProgressError`) on every process, or waited for with ``wait``."""
    with ExitStack() as stack:
        def take() -> RunInProgressError | None:
            try:
                stack.enter_context(run_lock(workdir, cfg.run_id, cfg.describe(), wait=wait))
            except RunInProgressError as exc:
                return exc
            return None

        refused = from_main(take)
        if refused is not None:
            raise refused
        yield


def verify_data(db: Db, image_size: int, progress: bool) -> None:
    """``db.verify`` on rank 0 and its verdict on every process: a broken file stops them all before a row is stored."""
    def check() -> Exception | None:
        try:
            db.verify(image_size, progress=progress)
        except (ValueError, FileNotFoundError) as exc:  # CorruptDataError, MissingDataError
            return exc
        return None

    problem = from_main(check)
    if problem is not None:
        raise problem


def train_and_store(cfg: RunConfig, db: Db, store: ResultsStore, device: torch.device, workdir: Path, progress: bool,
                    linked: dict[str, LinkedRun], links: dict[str, Any], *, resume: bool, checkpoints: str,
                    options: TrainOptions | None) -> RunRecord:
    """Store the run as running, train it, then store it completed with its metrics, or failed with the reason."""
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
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else (  # its cause in one line, then the traceback
            f"{error_cause(f'{type(exc).__name__}: {exc}', limit=None)}\n\n{traceback.format_exc()}")
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
    """How a run was executed, stored with its environment (none of it is in its identity). A run resumed from a
    checkpoint written under another memory format also keeps that one (``earlier``), with a warning: its epochs
    before and after the resumption ran different kernels, so it matches neither format's uninterrupted run."""
    options = options or TrainOptions()
    resumed = bool(resume and checkpoint is not None and checkpoint.is_file())
    out = {"processes": world_size(), "channels_last": options.channels_last, "compile": options.compile,
           "workers": options.workers, "sync_batchnorm": options.sync_batchnorm, "resumed": resumed}
    if resumed:
        assert checkpoint is not None
        earlier = saved_execution(checkpoint)
        if earlier and earlier.get("channels_last") != options.channels_last:
            log.warning("resuming %s with channels_last=%s from a checkpoint written with channels_last=%s: its "
                        "epochs ran in two memory formats (stored under environment.execution.earlier); use the "
                        "checkpoint's format to continue it exactly", checkpoint.stem, options.channels_last,
                        earlier.get("channels_last"))
            out["earlier"] = earlier
    return {"execution": out}


def run_dependencies(cfg: RunConfig, graph: RunGraph, db: Db, store: ResultsStore, device: torch.device,
                     workdir: Path, progress: bool, **how: Any) -> tuple[dict[str, LinkedRun], dict[str, Any]]:
    """Reuse or train every run ``cfg`` builds on (its direct dependencies in ``graph``, by role; theirs
    through :func:`execute`); returns them loaded for the method, and the links to store."""
    problem = db.problem(cfg.fold)
    linked: dict[str, LinkedRun] = {}
    links: dict[str, Any] = {}
    for role, dep in graph.dependencies(cfg.run_id).items():
        log.info("%s needs %s as %r", cfg.describe(), dep.describe(), role)
        record = execute(dep, db, store, device, progress=progress, workdir=workdir, graph=graph, **how)
        linked[role] = load_linked(role, dep, workdir, problem, device, graph)
        links[role] = link_entry(record)
    return linked, links

