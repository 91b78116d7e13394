"""``bench``: images per second of each method on one backbone, batch size and device, and where the time goes.

Each method trains with the training step runs use (``benchmark.train.train_step``: AMP, channels-last,
compile as asked) on batches of the db's training loader (workers and pinned memory as in a run), its
own network built with the same seed: ``warmup`` untimed steps, then ``steps`` timed ones, taken in
``rounds`` turns across the methods so that a change in the machine's load hits every method alike.
Waiting for the next batch is data loading; the step itself (copy to the device, forward, losses,
the method's backward, update; synchronised on a GPU) is compute. images/s = images / (data + compute).
Methods that declare linked runs (student-teacher's teachers) get untrained ones: their forward
passes are what costs. On a GPU, "peak MB" is the memory a step needs beyond the resident networks and
optimizer states.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader

from benchmark.amp import resolve_precision
from benchmark.backbones import check_backbone, create_backbone, create_heads
from benchmark.config import RunConfig
from benchmark.data import augmentation
from benchmark.linked import Built, attach_linked
from benchmark.options import parse_overrides, resolve
from benchmark.protocol import check_input_size, check_int, check_workers
from benchmark.devices import pick_device
from benchmark.run_graph import run_graph
from benchmark.runner import open_db
from benchmark.seeding import seed_everything
from benchmark.tasks import Batch, Problem
from benchmark.train import Trainer, TrainOptions, build_trainer, train_step
from datasets import Db
from methods import METHODS, LinkedRun

log = logging.getLogger(__name__)


@dataclass
class Timing:
    """One method's figures (None where it could not run, with the reason in ``note``)."""

    method: str
    images_per_s: float | None = None
    step_ms: float | None = None
    data_ms: float | None = None
    peak_mb: float | None = None
    note: str = ""


def run_bench(args: argparse.Namespace) -> str:
    """Time every requested method as ``args`` says; the table, with a header naming the setting."""
    check_bench_numbers(args)
    device = pick_device(args.device)
    check_backbone(args.backbone)
    check_input_size(args.backbone, args.image_size)
    precision = resolve_precision(args.amp, device)
    options = TrainOptions(channels_last=args.channels_last, compile=args.compile, workers=args.workers)
    db = open_db(args.db, args.db_set, args.data_root)
    specs = args.methods or sorted(METHODS.names(), key=lambda n: n != "no_coupling")  # the reference first
    prepared = [prepare(spec, db, args, device, precision, options) for spec in specs]
    stepping = [p for p in prepared if isinstance(p, Stepper)]
    for stepper in stepping:
        stepper.run(args.warmup, timed=False)
    rounds = max(1, min(args.rounds, args.steps))
    shares = [args.steps // rounds + (r < args.steps % rounds) for r in range(rounds)]
    for share, order in zip(shares, round_orders(len(stepping), rounds)):
        for i in order:  # in turns, so a change of the machine's load hits every method alike
            stepping[i].run(share, timed=True)
    head = (f"backbone={args.backbone} batch={args.batch_size} image={args.image_size}px device={device} "
            f"precision={precision} channels_last={args.channels_last} compile={args.compile} "
            f"workers={'auto' if args.workers is None else args.workers} steps={args.steps} rounds={rounds} "
            f"warmup={args.warmup} threads={torch.get_num_threads()}")
    return head + "\n" + format_timings([p.timing() if isinstance(p, Stepper) else p for p in prepared])


def round_orders(methods: int, rounds: int) -> list[list[int]]:
    """The order the methods take their turns in, round by round: rotated by one each round, so that no
    method always steps first (right after another network ran, with cold caches) or always last."""
    return [[(r + i) % methods for i in range(methods)] for r in range(rounds)] if methods else [[]] * rounds


def check_bench_numbers(args: argparse.Namespace) -> None:
    """Each count in its range, named by its flag (before any network is built)."""
    check_int("--batch-size", args.batch_size, 1, "the batch size")
    check_int("--image-size", args.image_size, 1, "the input side in pixels")
    check_int("--steps", args.steps, 1, "the number of timed steps")
    check_int("--warmup", args.warmup, 0, "the number of untimed steps")
    check_int("--rounds", args.rounds, 1, "the number of turns")
    check_workers(args.workers)


def bench_config(spec: str, db: Db, args: argparse.Namespace, precision: str) -> RunConfig:
    """The run config of ``spec`` (``name`` or ``name:key=value,...``) under the bench's protocol."""
    name, _, sets = spec.partition(":")
    cls = METHODS.get(name)
    problem = db.problem()
    options = cls.expand(resolve(cls, parse_overrides(cls, [s for s in sets.split(",") if s], f"method {name!r}")),
                         problem)[0]
    preset = db.preset()
    return RunConfig(method=name, db=db.name, backbone=args.backbone, seed=0, epochs=1, batch_size=args.batch_size,
                     lr=preset.lr, image_size=args.image_size, augmentation=preset.augmentation,
                     label_smoothing=preset.label_smoothing, method_options=options, db_options=db.options(),
                     precision=precision)


@dataclass
class Stepper:
    """One method's network ready to train, and what its timed steps add up to."""

    spec: str
    tr: Trainer
    batches: Iterator[Batch]
    steps: int = 0
    timed: int = 0
    images: int = 0
    data_s: float = 0.0
    step_s: float = 0.0
    peak_mb: float | None = None
    error: str = ""

    def run(self, steps: int, timed: bool) -> None:
        """``steps`` training steps, added up if ``timed``; an error (out of memory, say) ends this method's timing."""
        cuda = self.tr.device.type == "cuda"
        self.tr.model.train()
        for _ in range(0 if self.error else steps):
            started = time.perf_counter()
            batch = next(self.batches)
            loaded = time.perf_counter()
            resident = torch.cuda.memory_allocated(self.tr.device) if cuda else 0
            try:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(self.tr.device)
                train_step(self.tr, batch, self.steps, 0)
                if cuda:
                    torch.cuda.synchronize(self.tr.device)
            except (RuntimeError, FloatingPointError) as exc:  # out of memory; a NaN loss
                log.warning("bench: %s stopped: %s", self.spec, exc)
                self.error = str(exc).splitlines()[0][:90]
                return
            self.steps += 1
            if timed:
                self.timed, self.images = self.timed + 1, self.images + len(batch)
                self.data_s += loaded - started
                self.step_s += time.perf_counter() - loaded
                if cuda:  # what a step needs beyond the networks and optimizer states already resident
                    self.peak_mb = max(self.peak_mb or 0.0, (torch.cuda.max_memory_allocated(self.tr.device) - resident) / 2**20)

    def timing(self) -> Timing:
        """Images/s over the timed steps, and ms per step of compute and of data loading."""
        if self.error or not self.timed:
            return Timing(self.spec, note=self.error or "no timed step")
        return Timing(self.spec, self.images / (self.data_s + self.step_s), 1000 * self.step_s / self.timed,
                      1000 * self.data_s / self.timed, self.peak_mb)


def prepare(spec: str, db: Db, args: argparse.Namespace, device: torch.device, precision: str,
            options: TrainOptions) -> Stepper | Timing:
    """``spec``'s method and network, built as a run builds them, with its training loader; a Timing with a note if it cannot run."""
    try:
        cfg = bench_config(spec, db, args, precision)
        supported = METHODS.get(cfg.method).supported_backbones
        if supported and args.backbone not in supported:
            return Timing(spec, note=f"needs one of the backbones {', '.join(supported)}")
        generator = seed_everything(cfg.seed)
        problem = db.problem()
        method = METHODS.get(cfg.method)(**cfg.method_options)
        for role, run in untrained_links(cfg, problem, device).items():
            method.attach(role, run)
        tr = build_trainer(cfg, problem, method, device, options)
    except (RuntimeError, ValueError) as exc:  # e.g. AdaShare's retraining without a learned policy
        log.warning("bench: %s cannot run: %s", spec, exc)
        return Timing(spec, note=str(exc).splitlines()[0][:90])
    data = db.split("train", None, cfg.image_size)
    data.transform = augmentation(cfg.augmentation)
    keep = None if method.uses_unannotated_samples else tr.model.tasks
    return Stepper(spec, tr, _forever(tr.loader(data, cfg.batch_size, train=True, generator=generator, keep_tasks=keep)))


def _forever(loader: DataLoader) -> Iterator[Batch]:
    while True:
        yield from loader


def untrained_links(cfg: RunConfig, problem: Problem, device: torch.device) -> dict[str, LinkedRun]:
    """The runs ``cfg``'s method declares (its run graph's), untrained (their forward cost is what the bench
    measures), by role; each built after, and handed, the runs it declares itself."""
    def make(dep: RunConfig, deps: dict[str, tuple[RunConfig, Built]]) -> Built:
        method = METHODS.get(dep.method)(**dep.method_options)
        attach_linked(method, deps, untrained_run)
        backbone, width = create_backbone(dep.backbone, dep.pretrained, load_weights=False)
        model = method.build(backbone, create_heads(problem.tasks, width), problem)
        return method.to(device), model.to(device).eval()

    built = run_graph(cfg, problem).build_dependencies(cfg.run_id, make)
    return {role: untrained_run(role, dep, run) for role, (dep, run) in built.items()}


def untrained_run(role: str, cfg: RunConfig, built: Built) -> LinkedRun:
    """An untrained run as a dependent receives it; its id says it is not one from the store."""
    return LinkedRun(role, f"untrained-{cfg.method}", cfg.to_dict(), *built)


def format_timings(timings: list[Timing]) -> str:
    """One table: images/s and its ratio to no_coupling (else the first row), ms per step, data share."""
    ref = next((t for t in timings if t.method == "no_coupling" and t.images_per_s), None) or next(
        (t for t in timings if t.images_per_s), None)
    rows = []
    for t in timings:
        if t.images_per_s is None:
            rows.append([t.method, "-", "-", "-", "-", "-", "-", t.note])
            continue
        assert t.step_ms is not None and t.data_ms is not None
        ratio = t.images_per_s / ref.images_per_s if ref and ref.images_per_s else float("nan")
        rows.append([t.method, f"{t.images_per_s:.1f}", f"{ratio:.2f}", f"{t.step_ms:.1f}", f"{t.data_ms:.1f}",
                     f"{100 * t.data_ms / (t.data_ms + t.step_ms):.0f}%",
                     "-" if t.peak_mb is None else f"{t.peak_mb:.0f}", t.note])
    headers = ["method", "images/s", f"x {ref.method if ref else '?'}", "compute ms/step", "data ms/step",
               "data share", "peak MB", "note"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
