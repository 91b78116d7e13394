"""CPU training steps under three settings, side by side: glibc's malloc defaults, :mod:`benchmark.allocator`'s
thresholds (the default), and those plus channels-last memory format (``run``/``sweep --channels-last``,
``[execution] channels_last = true`` in an experiment file).

A script, not a test: timings depend on the machine. Each round starts one fresh process per setting,
rotating which goes first, so drifts in machine load hit all alike. Each process trains the same method on
the same backbone and random batch from the same seed for ``--steps`` timed steps after ``--warmup``
untimed ones (the training loop's own step, :func:`benchmarks.step_time.train_step`), and prints its median
step time, its minor page faults per step and its weights. The script reports the median over rounds, the
ratio to glibc's defaults, and how far each setting's weights are from the defaults' after the steps: the
allocator must leave them bit-identical (exit code 1 if not); channels-last runs other convolution kernels,
which sum in another order, so its weights differ by rounding (the largest absolute difference is printed).

    python benchmarks/cpu_speed.py --backbone efficientnet_lite0 --image-size 112 --batch-size 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: setting -> (MTLBENCH_ALLOCATOR, channels-last)
SETTINGS = {"glibc defaults": ("system", False), "allocator": ("keep", False),
            "allocator + channels-last": ("keep", True)}


def child(args: argparse.Namespace) -> None:
    """One process: set the allocator as ``MTLBENCH_ALLOCATOR`` says, train (channels-last if asked), save the
    weights to ``--weights``, print a JSON line."""
    sys.path.insert(0, str(ROOT))
    from benchmark.allocator import keep_freed_memory
    tuned = keep_freed_memory()
    import torch

    from benchmark.train import TrainOptions
    from benchmarks.step_time import build_method, fake_problem, random_batch, train_step
    if args.threads:
        torch.set_num_threads(args.threads)
    problem = fake_problem()
    setup = build_method(args.method, args.backbone, problem)
    batch = random_batch(problem, args.batch_size, args.image_size)
    options = TrainOptions(channels_last=args.channels_last)  # the trainer converts each batch, as in a run
    if args.channels_last:
        setup.model.to(memory_format=torch.channels_last)  # as benchmark.train.build_trainer does
    for _ in range(args.warmup):
        train_step(setup, batch, problem, options)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        train_step(setup, batch, problem, options)
        times.append(time.perf_counter() - started)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    torch.save({k: v.detach().contiguous() for k, v in setup.model.state_dict().items()}, args.weights)
    print(json.dumps({"tuned": tuned, "ms": 1000 * statistics.median(times), "faults_per_step": faults / args.steps}))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="no_coupling")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting, alternating")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    import torch

    forwarded = list(argv if argv is not None else sys.argv[1:])
    found: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                allocator, channels_last = SETTINGS[name]
                weights = Path(scratch) / f"{names.index(name)}-{round_}.pt"
                command = [sys.executable, __file__, "--child", "--weights", str(weights), *forwarded]
                out = subprocess.run(command + (["--channels-last"] if channels_last else []), cwd=ROOT, check=True,
                                     env={**os.environ, "MTLBENCH_ALLOCATOR": allocator}, capture_output=True, text=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                found[name].append({**row, "weights": torch.load(weights)})
        reference = found[names[0]][0]["weights"]
        print(f"method={args.method} backbone={args.backbone} batch={args.batch_size} image={args.image_size}px "
              f"steps={args.steps} warmup={args.warmup} rounds={args.rounds} threads={torch.get_num_threads()}")
        print(f"{'setting':26} {'ms/step':>9} {'faults/step':>12} {'x defaults':>11}  weights after the steps")
        base = statistics.median(r["ms"] for r in found[names[0]])
        identical = True
        for name, rows in found.items():
            ms = statistics.median(r["ms"] for r in rows)
            faults = statistics.median(r["faults_per_step"] for r in rows)
            gap = max(max((w[k].float() - reference[k].float()).abs().max().item() for k in reference)
                      for w in (r["weights"] for r in rows))
            if not SETTINGS[name][1]:
                identical &= gap == 0
            print(f"{name:26} {ms:9.1f} {faults:12.0f} {ms / base:11.2f}  "
                  f"{'bit-identical to the defaults' if gap == 0 else f'max |difference| {gap:.1e}'}")
    tuned = {r["tuned"] for r in found["allocator"]}
    print(f"allocator thresholds set: {tuned == {True}}; allocator weights bit-identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
