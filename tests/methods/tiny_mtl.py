"""A tiny multi-task network, problem and batch for the gradient-balancing tests (milliseconds on a CPU)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from benchmark.tasks import Batch, Problem, TaskSpec, task_loss
from benchmark.gradient_engine import representation_gram, weighted_backward
from methods import Method, MultiTaskModel, StepContext, TaskGradients

IN_FEATURES, WIDTH = 12, 8


def tiny_problem(n_tasks: int = 2) -> Problem:
    """Task ``classes`` (4 classes) then ``n_tasks - 1`` attribute tasks ``att0``, ``att1``, ... (3 each)."""
    tasks = [TaskSpec("classes", "multiclass", ("a", "b", "c", "d"))]
    tasks += [TaskSpec(f"att{i}", "attributes", ("x", "y", "z")) for i in range(n_tasks - 1)]
    return Problem(db="tiny", tasks=tuple(tasks))


def tiny_backbone() -> nn.Module:
    return nn.Sequential(nn.Linear(IN_FEATURES, 16), nn.Tanh(), nn.Linear(16, WIDTH), nn.Tanh())


def tiny_model(method: Method, problem: Problem, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    heads = nn.ModuleDict({t.name: nn.Linear(WIDTH, t.num_outputs) for t in problem.tasks})
    return method.build(tiny_backbone(), heads, problem)


def tiny_batch(problem: Problem, size: int = 10, seed: int = 0, unannotated: tuple[str, ...] = ()) -> Batch:
    """Random inputs and labels; tasks in ``unannotated`` have no label at all in the batch."""
    gen = torch.Generator().manual_seed(seed)
    targets, masks = {}, {}
    for spec in problem.tasks:
        keep = torch.rand(size, generator=gen) < 0.7
        keep[0] = True
        if spec.name in unannotated:
            keep[:] = False
        if spec.kind == "multiclass":
            target = torch.randint(0, spec.num_outputs, (size,), generator=gen)
            targets[spec.name], masks[spec.name] = torch.where(keep, target, -1), keep
        else:
            targets[spec.name] = torch.randint(0, 2, (size, spec.num_outputs), generator=gen).float()
            masks[spec.name] = keep[:, None].expand(-1, spec.num_outputs).clone()
    return Batch(torch.randn(size, IN_FEATURES, generator=gen), targets, masks, torch.arange(size))


def forward(method: Method, model: MultiTaskModel, batch: Batch, problem: Problem,
            step: int = 0, epoch: int = 0) -> tuple[dict[str, Tensor], StepContext]:
    """The losses and step context the training loop would hand to ``method.backward`` (or the gradient engine)."""
    out = model(batch.inputs)
    losses = {t: task_loss(problem.task(t), out.logits[t], batch.targets[t], batch.masks[t]) for t in out.logits}
    ctx = StepContext(model, batch, out, problem, step, epoch)
    return method.losses(losses, ctx), ctx


def grads_of(loss: Tensor, params: Iterable[Tensor]) -> list[Tensor]:
    """∇ of ``loss`` with respect to ``params`` by plain autograd (zeros where unused), the graph kept."""
    params = list(params)
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def shared_grads_of(loss: Tensor, model: MultiTaskModel) -> list[Tensor]:
    """∇ of ``loss`` with respect to the shared parameters (zeros where unused)."""
    return grads_of(loss, model.shared_parameters())


def weighted_step(method: Method, losses: dict[str, Tensor], ctx: StepContext) -> dict[str, float]:
    """What the training loop does with a weighting method's losses: the gradient engine's backward.

    Returns the weights it applied, by task (0 for a task the batch does not annotate).
    """
    applied = weighted_backward(method, losses, ctx)
    return {name.removeprefix("weight/"): float(value) for name, value in applied.items()}


def representation_gradients(grads: list[Tensor], losses: list[float], reduction: str = "flatten",
                             tasks: list[str] | None = None) -> TaskGradients:
    """The :class:`TaskGradients` the engine builds from per-task gradients at z (no network needed)."""
    names = tasks or [f"t{i}" for i in range(len(grads))]
    vectors, gram = representation_gram(list(grads), reduction, 1.0)
    values = torch.tensor(losses, dtype=torch.float64)
    return TaskGradients(names, [], values, dict(zip(names, values)), gram, vectors)
