"""Training steps with glibc's default malloc thresholds against :mod:`benchmark.allocator`'s, side by side.

A script, not a test: timings depend on the machine. Each round starts one fresh process per setting
(``MTLBENCH_ALLOCATOR=system`` and the default), alternating which goes first, so drifts in machine load
hit both alike. Each process trains the same method on the same backbone and random batch from the same
seed for ``--steps`` timed steps after ``--warmup`` untimed ones (the training loop's own step,
:func:`benchmarks.step_time.train_step`), and prints its median step time, its minor page faults per step
and a hash of its weights. The script reports the median over rounds, the ratio, and whether the weights
were bit-identical under both settings (exit code 1 if not).

    python benchmarks/allocator_speed.py --backbone efficientnet_lite0 --image-size 112 --batch-size 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"glibc defaults": "system", "mtlbench": "keep"}


def child(args: argparse.Namespace) -> None:
    """One process: set the allocator as ``MTLBENCH_ALLOCATOR`` says, train, print a JSON line."""
    sys.path.insert(0, str(ROOT))
    from benchmark.allocator import keep_freed_memory
    tuned = keep_freed_memory()
    import torch

    from benchmarks.step_time import build_method, fake_problem, random_batch, train_step
    if args.threads:
        torch.set_num_threads(args.threads)
    problem = fake_problem()
    setup = build_method(args.method, args.backbone, problem)
    batch = random_batch(problem, args.batch_size, args.image_size)
    for _ in range(args.warmup):
        train_step(setup, batch, problem)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        train_step(setup, batch, problem)
        times.append(time.perf_counter() - started)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    digest = hashlib.sha256()
    for tensor in setup.model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    print(json.dumps({"tuned": tuned, "ms": 1000 * statistics.median(times), "faults_per_step": faults / args.steps,
                      "weights": digest.hexdigest()}))


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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    found: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        order = list(SETTINGS) if round_ % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            env = {**os.environ, "MTLBENCH_ALLOCATOR": SETTINGS[name]}
            out = subprocess.run([sys.executable, __file__, "--child", *forwarded], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            found[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"method={args.method} backbone={args.backbone} batch={args.batch_size} image={args.image_size}px "
          f"steps={args.steps} warmup={args.warmup} rounds={args.rounds}")
    print(f"{'allocator':16} {'ms/step':>9} {'faults/step':>12} {'x defaults':>11}")
    base = statistics.median(r["ms"] for r in found["glibc defaults"])
    for name, rows in found.items():
        ms = statistics.median(r["ms"] for r in rows)
        faults = statistics.median(r["faults_per_step"] for r in rows)
        print(f"{name:16} {ms:9.1f} {faults:12.0f} {ms / base:11.2f}")
    tuned = {r["tuned"] for r in found["mtlbench"]}
    hashes = {r["weights"] for rows in found.values() for r in rows}
    print(f"thresholds set: {tuned == {True}}; weights bit-identical across settings and rounds: {len(hashes) == 1}")
    return 0 if len(hashes) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
