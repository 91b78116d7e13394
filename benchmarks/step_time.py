"""Time full training steps of registered methods on one model and batch; print ms/step and the ratio to a reference.

A script, not a test: timings depend on the machine. For each method it builds the same backbone
and heads (same seed) on a fake problem with one multiclass task of N classes and one attribute
task of M attributes (with a random ``"domain"`` relatedness prior, so relatedness-based methods
run too), one random batch with some labels missing, and times complete steps of the training
loop itself (:func:`benchmark.train.train_step`, fp32, one process) round-robin across methods,
so drifts in machine load hit every method alike. Reports the median.

    python benchmarks/step_time.py --methods no_coupling mgda_ub gradnorm --backbone resnet18 \\
        --batch-size 32 --image-size 64 --steps 20

The pieces (:func:`fake_problem`, :func:`random_batch`, :func:`build_method`, :func:`train_step`,
:func:`time_round_robin`) are importable for other benchmarks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.amp import MixedPrecision
from benchmark.backbones import create_backbone, create_heads
from benchmark.config import RunConfig
from benchmark.linked import Built, attach_linked
from benchmark.options import resolve
from benchmark.run_graph import run_graph
from benchmark.tasks import Batch, Problem, TaskSpec
from benchmark.train import Trainer, TrainOptions
from benchmark.train import train_step as loop_step
from methods import METHODS, LinkedRun, Method, MultiTaskModel


def fake_problem(n_classes: int = 6, n_attributes: int = 8, seed: int = 0) -> Problem:
    """A problem with tasks ``classes`` (N classes) and ``attributes`` (M) and a random ``domain`` prior (N, M)."""
    rng = np.random.default_rng(seed)
    tasks = (TaskSpec("classes", "multiclass", tuple(f"c{i}" for i in range(n_classes))),
             TaskSpec("attributes", "attributes", tuple(f"a{i}" for i in range(n_attributes))))
    return Problem(db="fake", tasks=tasks, priors={"domain": rng.uniform(0.0, 1.0, (n_classes, n_attributes))})


def random_batch(problem: Problem, batch_size: int, image_size: int, missing: float = 0.5, seed: int = 0) -> Batch:
    """Random images and labels; each sample lacks each task's label with probability ``missing``."""
    gen = torch.Generator().manual_seed(seed)
    targets, masks = {}, {}
    for index, spec in enumerate(problem.tasks):
        keep = torch.rand(batch_size, generator=gen) >= missing
        keep[index % batch_size] = True  # every task keeps at least one annotated sample
        if spec.kind == "multiclass":
            target = torch.randint(0, spec.num_outputs, (batch_size,), generator=gen)
            targets[spec.name], masks[spec.name] = torch.where(keep, target, -1), keep
        else:
            targets[spec.name] = torch.randint(0, 2, (batch_size, spec.num_outputs), generator=gen).float()
            masks[spec.name] = keep[:, None].expand(-1, spec.num_outputs).clone()
    inputs = torch.randn(batch_size, 3, image_size, image_size, generator=gen)
    return Batch(inputs, targets, masks, torch.arange(batch_size))


@dataclass
class Setup:
    """One method ready to step: the method, its network, its optimizer, and a step counter."""

    name: str
    method: Method
    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    steps: int = 0
    cache: dict = field(default_factory=dict)  # the gradient engine's per-run findings


def _method(name: str, problem: Problem, options: dict | None = None) -> Method:
    """``name`` with its defaults (the first expansion, e.g. single_task's first task) updated by ``options``."""
    cls = METHODS.get(name)
    return cls(**cls.expand(resolve(cls, options or {}), problem)[0])


def _attach_untrained_dependencies(method: Method, name: str, backbone: str, problem: Problem) -> None:
    """Give ``method`` (registered as ``name``) the linked runs it declares (e.g. teachers), untrained:
    their cost is what is timed.

    They are the nodes of the method's run graph (:mod:`benchmark.run_graph`, on a placeholder protocol:
    only the methods and their options matter here), each built after the ones it declares itself.
    """
    def make(dep: RunConfig, deps: dict[str, tuple[RunConfig, Built]]) -> Built:
        linked = METHODS.get(dep.method)(**dep.method_options)
        attach_linked(linked, deps, _untrained)
        net, width = create_backbone(backbone)
        model = linked.build(net, create_heads(problem.tasks, width), problem)
        linked.eval(), model.eval()
        return linked, model

    cfg = RunConfig(method=name, db=problem.db, backbone=backbone, seed=0, epochs=1, batch_size=1, lr=0.0,
                    image_size=1, method_options=method.hparams())
    attach_linked(method, run_graph(cfg, problem).build_dependencies(cfg.run_id, make), _untrained)


def _untrained(role: str, cfg: RunConfig, built: Built) -> LinkedRun:
    """An untrained linked run as its dependent receives it (no stored config: nothing here is stored)."""
    return LinkedRun(role, f"untrained-{cfg.method}", {}, *built)


def build_method(name: str, backbone: str, problem: Problem, lr: float = 1e-3, seed: int = 0,
                 options: dict | None = None) -> Setup:
    """Method ``name`` with its default hyperparameters on a fresh ``backbone`` (same init for a given seed)."""
    method = _method(name, problem, options)
    _attach_untrained_dependencies(method, name, backbone, problem)
    torch.manual_seed(seed)
    net, width = create_backbone(backbone)
    model = method.build(net, create_heads(problem.tasks, width), problem)
    model.train()
    optimizer = torch.optim.Adam(method.param_groups(model), lr=lr)
    return Setup(name, method, model, optimizer)


def train_step(setup: Setup, batch: Batch, problem: Problem, options: TrainOptions = TrainOptions()) -> None:
    """One complete training step: the loop's own :func:`benchmark.train.train_step` (the batch in the network's
    memory format, forward, task losses, the method's losses, the finite check, backward or the gradient engine,
    gradient averaging, the step), fp32; ``options`` as the trainer takes them (channels-last)."""
    device = next(setup.model.parameters()).device
    trainer = Trainer(setup.model, setup.method, setup.optimizer, problem, device, MixedPrecision("fp32", device),
                      options=options, gradient_cache=setup.cache)
    loop_step(trainer, batch, setup.steps, 0)
    setup.steps += 1


def time_round_robin(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call, ``repeats`` rounds of one call per entry, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return times


def format_table(times: dict[str, list[float]], reference: str) -> str:
    """A plain-text table: method, median and IQR in ms per step, ratio of medians to ``reference``."""
    base = statistics.median(times[reference])
    rows = [f"{'method':<20} {'ms/step':>9} {'IQR ms':>15} {'x ' + reference:>16}"]
    for name, values in times.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        med = statistics.median(values)
        rows.append(f"{name:<20} {1000 * med:>9.1f} {f'{1000 * q1:.1f}-{1000 * q3:.1f}':>15} {med / base:>16.2f}")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["no_coupling"],
                        help="registered methods; the first is the reference (default no_coupling)")
    parser.add_argument("--backbone", default="smallcnn", help="smallcnn or a timm name (resnet18, ...)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=6, help="N classes of the multiclass task")
    parser.add_argument("--attributes", type=int, default=8, help="M attributes of the attribute task")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step per method each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--missing", type=float, default=0.5, help="probability a sample lacks a task's label")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    problem = fake_problem(args.classes, args.attributes)
    batch = random_batch(problem, args.batch_size, args.image_size, args.missing)
    setups = {name: build_method(name, args.backbone, problem) for name in dict.fromkeys(args.methods)}
    steps = {name: (lambda s=setup: train_step(s, batch, problem)) for name, setup in setups.items()}
    times = time_round_robin(steps, args.steps, args.warmup)
    print(f"backbone={args.backbone} batch={args.batch_size} image={args.image_size}px N={args.classes} "
          f"M={args.attributes} steps={args.steps} warmup={args.warmup} threads={torch.get_num_threads()}")
    print(format_table(times, args.methods[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
