"""The gradient engine: the training loop's side of every gradient-weighting method.

A weighting method (MGDA-UB, GradNorm, the TorchJD weightings, ...) owns only its math: given the
tasks' gradients it returns task weights (:meth:`methods.base.Method.weighting`). Everything else is
here, once: which tasks the (global) batch annotates, each task's gradient with respect to what the
method asked for (:class:`methods.base.GradientRequest`: the shared representation z, the last
shared layer, or every shared parameter), removing the mixed-precision loss scale, reducing over
``torchrun`` processes, their Gram matrix, and applying the weights (the backbone gets Σ_t w_t ∇L_t,
the heads their own or weighted gradients, other loss terms weight 1). The design follows TorchJD's
split of ``autojac`` (the plumbing) from its weightings (the math).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from benchmark.collectives import all_reduce_mean, global_count, world_size
from benchmark.tasks import Batch
from methods.base import GradientRequest, Method, StepContext, TaskGradients, Weighting

log = logging.getLogger(__name__)

#: Layer types that count as "a layer of weights" for ``GradientRequest(wrt="shared_layer")``.
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def weighted_backward(method: Method, losses: dict[str, Tensor], ctx: StepContext,
                      cache: dict[str, str] | None = None) -> dict[str, Tensor]:
    """Gradients of ``losses`` combined with ``method.weighting``'s task weights, left in ``.grad``.

    Returns the weights as loss-like entries (``weight/<task>``, detached; 0 for a task the batch does
    not annotate), which the loop logs with the losses. ``cache`` (one dict per training run) keeps
    what is found once, such as the last shared layer's name.
    """
    request = method.gradient_request()
    tasks = [t for t in losses if t in ctx.model.heads]
    extras = [value for name, value in losses.items() if name not in ctx.model.heads]  # weight 1
    present = [is_annotated(ctx.batch, t) for t in tasks]
    active = [t for t, p in zip(tasks, present) if p]
    global_losses = all_reduce_mean(torch.stack([losses[t].detach() for t in tasks]).double())  # (T,)
    if request.wrt == "representation":
        z_grads, head_grads = representation_gradients(losses, tasks, ctx)
        vectors, gram = representation_gram([z_grads[t] for t in active], request.batch_reduction, ctx.loss_scale)
    else:
        z_grads, head_grads = {}, {}
        params = requested_parameters(request, ctx, {} if cache is None else cache)
        rows, reached = local_parameter_rows([losses[t] for t in active], params)
        vectors = global_rows(rows, ctx.loss_scale)
        # (T, N) @ (N, T) -> (T, T) in the gradients' dtype: a float64 copy of millions of weights costs
        # more than the step's own backward on a CPU (GradNorm on resnet18: 0.72x instead of 0.95x)
        gram = (vectors @ vectors.T).double()
    gradients = TaskGradients(tasks=active, absent=[t for t, p in zip(tasks, present) if not p],
                              losses=global_losses[[tasks.index(t) for t in active]],
                              all_losses=dict(zip(tasks, global_losses)), gram=gram, vectors=vectors,
                              step=ctx.step, epoch=ctx.epoch)
    result = as_weighting(method.weighting(gradients), len(active))
    weights = {t: 0.0 for t in tasks} | {t: float(w) for t, w in zip(active, result.weights)}
    if request.wrt == "representation":
        apply_at_representation(weights, z_grads, head_grads, extras, request.head_gradient, ctx)
    elif request.wrt == "shared_parameters" and active and not extras:  # the rows cover the whole backbone
        apply_at_parameters(weights, active, losses, rows, reached, params, ctx)
    else:  # Σ_t w_t L_t (+ other terms, which need their own backward anyway): heads weighted too
        total = weighted_task_sum(losses, weights) + (torch.stack(extras).sum() if extras else 0.0)
        total.backward()
    if result.loss is not None:  # the method's own parameters (GradNorm's weights), scaled like every gradient
        (result.loss * ctx.loss_scale).backward()
    return {f"weight/{t}": torch.tensor(w) for t, w in weights.items()}


def as_weighting(value: Weighting | Tensor | Sequence[float], count: int) -> Weighting:
    """A weighting hook's answer as a :class:`Weighting` of ``count`` finite weights."""
    result = value if isinstance(value, Weighting) else Weighting(torch.as_tensor(value, dtype=torch.float64))
    weights = torch.as_tensor(result.weights, dtype=torch.float64).flatten()
    if weights.numel() != count:
        raise ValueError(f"weighting returned {weights.numel()} weights for {count} annotated tasks")
    if not bool(torch.isfinite(weights).all()):  # a NaN weight would spread into every gradient of the step
        raise FloatingPointError(f"weighting returned non-finite task weights {weights.tolist()}")
    return Weighting(weights, result.loss)


def is_annotated(batch: Batch, task: str) -> bool:
    """Whether ``batch`` holds at least one annotated entry of ``task`` (a class target of -1 is missing).

    Under ``torchrun``, whether the global batch does: every process gets the same answer.
    """
    mask = batch.masks[task]
    target = batch.targets[task]
    if not target.is_floating_point():  # class indices: -1 also means "not annotated"
        mask = mask & (target >= 0)
    return bool(global_count(mask.sum()) > 0)


# ----- gradients with respect to the shared representation z (the UB form) ---------------------
def representation_gradients(losses: dict[str, Tensor], tasks: list[str], ctx: StepContext
                             ) -> tuple[dict[str, Tensor | None], dict[str, list[tuple[Tensor, Tensor | None]]]]:
    """Per task, ∂L_t/∂z and (parameter, gradient) of its head: a backward through the head only."""
    if not ctx.model.has_shared_representation:
        raise ValueError(f"{type(ctx.model).__name__} runs a separate backbone pass per task: there is no shared "
                         f"representation z to take gradients at; ask for wrt='shared_parameters' instead")
    z_grads, head_grads = {}, {}
    for task in tasks:
        params = [p for p in ctx.model.task_parameters(task) if p.requires_grad]
        grads = torch.autograd.grad(losses[task], [ctx.outputs.features, *params], retain_graph=True,
                                    allow_unused=True)
        z_grads[task], head_grads[task] = grads[0], list(zip(params, grads[1:]))
    return z_grads, head_grads


def representation_gram(grads: list[Tensor | None], reduction: str, loss_scale: float) -> tuple[Tensor, Tensor]:
    """(vectors (T, N), Gram (T, T)) of the tasks' unscaled gradients at z over the global batch.

    ``flatten``: g_t (B, D) as one B·D vector; ``sum``: summed over the batch first. A process's loss
    is its share of the global loss (``benchmark.tasks.as_global_mean``), so the global gradient on
    its samples is its own divided by K: flattened, the processes' blocks are disjoint and
    G = Σ_r G_r / K²; summed over the batch, the sums add up first.
    """
    if not grads:
        return torch.zeros(0, 0, dtype=torch.float64), torch.zeros(0, 0, dtype=torch.float64)
    like = next((g for g in grads if g is not None), None)
    rows = []
    for grad in grads:
        grad = torch.zeros_like(like) if grad is None else grad  # the loss does not reach z: a zero gradient
        grad = grad.double() / loss_scale  # under fp16 mixed precision gradients arrive times the scale
        rows.append(grad.flatten() if reduction == "flatten" else grad.sum(0).flatten())
    vectors = torch.stack(rows)  # (T, N)
    if reduction == "sum":
        vectors = all_reduce_mean(vectors)
    gram = vectors @ vectors.T  # (T, N) @ (N, T) -> (T, T)
    if reduction == "flatten" and world_size() > 1:
        gram = all_reduce_mean(gram) / world_size()
    return vectors, gram


def apply_at_representation(weights: dict[str, float], z_grads: dict[str, Tensor | None],
                            head_grads: dict[str, list[tuple[Tensor, Tensor | None]]], extras: list[Tensor],
                            head_gradient: str, ctx: StepContext) -> None:
    """One backward through the backbone from z with Σ_t w_t g_t; each head its own (or weighted) gradient."""
    z = ctx.outputs.features
    combined = torch.zeros_like(z)  # Σ_t w_t g_t, what the backbone receives at z
    for task, weight in weights.items():
        if weight != 0.0 and z_grads[task] is not None:
            combined = combined + weight * z_grads[task]
    roots, seeds = [z], [combined]
    if extras:  # terms other than task losses keep weight 1
        roots.append(torch.stack(extras).sum())
        seeds.append(torch.ones_like(roots[-1]))
    torch.autograd.backward(roots, seeds)
    for task, weight in weights.items():
        factor = 1.0 if head_gradient == "own" else weight
        for param, grad in head_grads[task]:
            if grad is not None:
                param.grad = factor * grad if param.grad is None else param.grad + factor * grad


# ----- gradients with respect to shared parameters -------------------------------------------
def requested_parameters(request: GradientRequest, ctx: StepContext, cache: dict[str, str]) -> list[nn.Parameter]:
    """The shared parameters ``request`` names: the last shared layer's weight, or all of them."""
    shared = [p for p in ctx.model.shared_parameters() if p.requires_grad]
    if request.wrt == "shared_parameters":
        return shared
    name = request.layer
    if name == "auto":
        if "last_shared_layer" not in cache:
            cache["last_shared_layer"] = last_shared_layer(ctx.model, shared, ctx.outputs.features)
            log.info("the last shared layer is %s", cache["last_shared_layer"])
        name = cache["last_shared_layer"]
    try:
        weight = ctx.model.get_submodule(name).weight
    except AttributeError:
        weight = None
    if not isinstance(weight, nn.Parameter):  # no such module, no weight attribute, or a layer built without one
        raise ValueError(f"layer={name!r} is no module with a weight in the model; use a name from "
                         f"model.named_modules() or layer=auto")
    if all(weight is not p for p in shared):
        raise ValueError(f"layer={name!r} is not a trainable layer of the shared backbone (a task head's or a frozen "
                         f"layer's weight says nothing about what the tasks share); name a backbone layer or use "
                         f"layer=auto")
    return [weight]


def local_parameter_rows(losses: list[Tensor], params: list[nn.Parameter]) -> tuple[Tensor, list[bool]]:
    """(T, N) gradients of ``losses`` with respect to ``params`` as this process computes them (loss scale
    included), flattened in order in the parameters' dtype (zeros for a parameter a loss does not reach),
    and, per parameter, whether any of the losses reaches it."""
    if not losses:
        return torch.zeros(0, 0, dtype=torch.float64), [False] * len(params)
    rows, reached = [], [False] * len(params)
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        reached = [hit or g is not None for hit, g in zip(reached, grads)]
        flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]
        rows.append(flat[0] if len(flat) == 1 else torch.cat(flat))
    return torch.stack(rows), reached  # (T, N), in the gradients' dtype


def global_rows(rows: Tensor, loss_scale: float) -> Tensor:
    """This process's rows (:func:`local_parameter_rows`) as the global batch's, without the loss scale.

    Under ``torchrun`` each process's loss is its share of the global loss: the global gradient is
    the mean of the processes' (as gradient averaging makes it).
    """
    if rows.numel() == 0:
        return rows
    return all_reduce_mean(rows / loss_scale if loss_scale != 1.0 else rows)


def apply_at_parameters(weights: dict[str, float], active: list[str], losses: dict[str, Tensor], rows: Tensor,
                        reached: list[bool], params: list[nn.Parameter], ctx: StepContext) -> None:
    """The gradients of Σ_t w_t L_t without another backward through the backbone.

    ``rows`` already hold the gradient of each annotated task (``active``, in order) on every shared
    parameter, this process's, loss scale included: the backbone gets Σ_t w_t of them, written in each
    parameter's memory format (a parameter no loss reaches keeps no gradient, as a backward leaves it).
    Every other parameter (the heads, each weighted by its task's weight; an absent task's head gets
    0 · ∇L_t, zeros) gets its part of a backward of the weighted sum restricted to those parameters,
    which stops at z. The same gradients as ``(Σ_t w_t L_t).backward()`` up to float rounding, one
    backbone backward cheaper: the T backwards that took the rows are all the backbone needs, as in
    TorchJD's ``mtl_backward`` + ``jac_to_grad``.
    """
    factors = torch.tensor([weights[t] for t in active], dtype=rows.dtype, device=rows.device)
    combined = factors @ rows  # (N,): Σ_t w_t ∇L_t on the shared parameters, flattened
    for param, hit, part in zip(params, reached, combined.split([p.numel() for p in params])):
        if hit:
            grad = torch.empty_like(param).copy_(part.view(param.shape))  # the parameter's memory format
            param.grad = grad if param.grad is None else param.grad + grad
    shared = {id(p) for p in params}
    others = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in shared]
    if others:  # the heads' gradients: the backward of Σ_t w_t L_t stops where no input lies further back
        torch.autograd.backward(weighted_task_sum(losses, weights), inputs=others)


def weighted_task_sum(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """Σ_t w_t L_t over every task of ``weights`` (an absent one at weight 0, so its head still gets zeros)."""
    stacked = torch.stack([losses[t] for t in weights])  # (T,)
    factors = torch.tensor(list(weights.values()), dtype=stacked.dtype, device=stacked.device)
    return (factors * stacked).sum()


def last_shared_layer(model: nn.Module, shared: Sequence[nn.Parameter], output: Tensor) -> str:
    """Name in ``model`` of the shared conv/linear layer that ran last in computing ``output``.

    GradNorm measures gradient norms on "the last shared layer of weights" (Chen et al., ICML
    2018, Sec. 3.2). Module registration order need not be execution order, so this walks the
    graph that produced ``output`` (the shared representation z) and, among the nodes that consume
    a trainable shared conv/linear weight, picks the one created last in the forward pass (the
    largest autograd sequence number): smallcnn's last conv, ResNet's ``layer4.1.conv2``, VGG's
    last pre-logits conv, DenseNet's last dense layer.
    """
    shared_ids = {id(p) for p in shared}
    layers = {id(m.weight): name for name, m in model.named_modules()
              if isinstance(m, WEIGHT_LAYERS) and m.weight.requires_grad and id(m.weight) in shared_ids}
    best: tuple[int, set[str]] | None = None
    seen: set = set()
    stack = [output.grad_fn] if output.grad_fn is not None and layers else []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            variable = getattr(child, "variable", None)  # AccumulateGrad nodes hold their leaf tensor
            if variable is not None and id(variable) in layers:
                order = node._sequence_nr()  # creation order of the node that used the weight
                if best is None or order > best[0]:
                    best = (order, {layers[id(variable)]})
                elif order == best[0]:
                    best[1].add(layers[id(variable)])
            stack.append(child)
    if best is None:
        raise ValueError("no trainable shared conv/linear layer produced this output; name the layer explicitly "
                         "(e.g. GradNorm's layer='backbone.NAME')")
    if len(best[1]) > 1:  # one node used several layers' weights: a compiled (torch.compile) network
        raise ValueError(f"the autograd graph does not tell which of the layers {sorted(best[1])} ran last (one "
                         f"fused node uses them all, as a torch.compile'd network has); name the layer "
                         f"explicitly (e.g. GradNorm's layer='NAME', the layer found without --compile)")
    return best[1].pop()
