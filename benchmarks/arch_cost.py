"""Time per training step and parameter counts of the architecture baselines against ``no_coupling`` on one backbone.

A script, not a test: timings depend on the machine. It reuses ``step_time.py``'s fake problem,
random batch, full training step and round-robin timing, and adds the architecture-specific setups:

- ``task_routing``: one task per training step (its forward runs one backbone pass).
- ``adashare:search``: a policy epoch with every block open (Gumbel gates on all of them; weights
  and policy logits updated by two partial backwards), the search's most expensive step.
- ``adashare:retrain``: the retraining with a policy that executes every block (the upper bound;
  each skipped block saves its share of one task's pass), and with ``--skip`` blocks skipped.

Parameter counts: trainable parameters of the network (AdaShare's search adds its T x L x 2 policy
logits; Task Routing's masks are buffers, counted apart), and those some task uses under the policy.

    python benchmarks/arch_cost.py --backbone resnet18 --batch-size 32 --image-size 64 --steps 20
    python benchmarks/arch_cost.py --backbone vgg16 --methods no_coupling task_routing --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

import torch
from step_time import Setup, build_method, fake_problem, random_batch, time_round_robin, train_step

from benchmark.backbones import create_backbone, create_heads
from benchmark.tasks import Batch, Problem
from methods import LinkedRun
from methods.adashare import AdaShare
from methods.adashare_net import GatedNet, used_parameters

CHOICES = ("no_coupling", "task_routing", "adashare:search", "adashare:retrain")


def adashare_setup(phase: str, backbone: str, problem: Problem, skip: int = 0, seed: int = 0) -> Setup:
    """AdaShare ready to step: the search in its last curriculum stage, or the retraining with ``skip`` blocks skipped."""
    if phase == "search":
        setup = build_method("adashare", backbone, problem, seed=seed, options={"phase": "search", "warmup_epochs": 0})
        setup.method.on_epoch_end(setup.model, 10_000)  # far into the schedule: every block open
        setup.model.train()
        return setup
    search = AdaShare(phase="search")
    net, width = create_backbone(backbone)
    search_model = search.build(net, create_heads(problem.tasks, width), problem)
    logits = torch.zeros_like(search_model.policy_logits.detach())
    logits[:, :skip, 1] = 1.0  # the first `skip` blocks skipped by every task, the rest executed
    search.learned_logits.copy_(logits)
    search.learned_blocks.fill_(logits.shape[1])
    method = AdaShare()
    method.attach("policy_run", LinkedRun("policy_run", "synthetic-policy", {}, search, search_model))
    torch.manual_seed(seed)
    net, width = create_backbone(backbone)
    model = method.build(net, create_heads(problem.tasks, width), problem)
    model.train()
    return Setup("adashare:retrain", method, model, torch.optim.Adam(method.param_groups(model), lr=1e-3))


def counts(setup: Setup) -> tuple[int, int, int]:
    """(trainable parameters, parameters some task uses, buffer elements) of the setup's network."""
    trainable = sum(p.numel() for p in setup.model.parameters() if p.requires_grad)
    used = used_parameters(setup.model) if isinstance(setup.model, GatedNet) else trainable
    buffers = sum(b.numel() for b in setup.model.buffers())
    return trainable, used, buffers


def table(times: dict[str, list[float]], sizes: dict[str, tuple[int, int, int]], reference: str) -> str:
    """Median ms/step and IQR, ratio to ``reference``, parameter and buffer counts."""
    base_time, base_params = statistics.median(times[reference]), sizes[reference][0]
    rows = [f"{'setup':<28} {'ms/step':>9} {'IQR ms':>15} {'x ' + reference:>14} {'params':>12} {'used':>12} "
            f"{'x params':>9} {'buffers':>10}"]
    for name, values in times.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        med = statistics.median(values)
        trainable, used, buffers = sizes[name]
        rows.append(f"{name:<28} {1000 * med:>9.1f} {f'{1000 * q1:.1f}-{1000 * q3:.1f}':>15} {med / base_time:>14.2f} "
                    f"{trainable:>12,} {used:>12,} {trainable / base_params:>9.4f} {buffers:>10,}")
    return "\n".join(rows)


def setups(names: Sequence[str], backbone: str, problem: Problem, skip: int, device: torch.device) -> dict[str, Setup]:
    out = {}
    for name in names:
        if name.startswith("adashare:"):
            out[name] = adashare_setup(name.split(":")[1], backbone, problem)
            if name == "adashare:retrain" and skip:
                out[f"adashare:retrain skip={skip}"] = adashare_setup("retrain", backbone, problem, skip)
        else:
            out[name] = build_method(name, backbone, problem)
    for setup in out.values():
        setup.model.to(device), setup.method.to(device)
        setup.optimizer = torch.optim.Adam(setup.method.param_groups(setup.model), lr=1e-3)  # on the device
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(CHOICES), choices=CHOICES,
                        help="setups to time; the first is the reference (default: all)")
    parser.add_argument("--backbone", default="resnet18", help="a timm ResNet for adashare; any for task_routing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step per setup each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--skip", type=int, default=4, help="blocks the extra retraining setup skips (0: none)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    problem = fake_problem()
    cpu_batch = random_batch(problem, args.batch_size, args.image_size)
    batch = Batch(cpu_batch.inputs.to(device), {k: v.to(device) for k, v in cpu_batch.targets.items()},
                  {k: v.to(device) for k, v in cpu_batch.masks.items()}, cpu_batch.index)
    built = setups(args.methods, args.backbone, problem, args.skip, device)
    sizes = {name: counts(setup) for name, setup in built.items()}  # before training moves the search's policy
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    steps = {name: (lambda s=setup: (train_step(s, batch, problem), sync())) for name, setup in built.items()}
    times = time_round_robin(steps, args.steps, args.warmup)
    print(f"backbone={args.backbone} batch={args.batch_size} image={args.image_size}px device={device} "
          f"steps={args.steps} warmup={args.warmup} threads={torch.get_num_threads()}")
    print(table(times, sizes, args.methods[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
