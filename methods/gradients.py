"""Helpers the gradient-balancing methods share: which tasks a batch annotates, the last shared layer."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from benchmark.tasks import Batch, global_count

#: Layer types that count as "a layer of weights" for GradNorm's W.
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def is_annotated(batch: Batch, task: str) -> bool:
    """Whether ``batch`` holds at least one annotated entry of ``task`` (a class target of -1 is missing).

    Under ``torchrun``, whether the global batch does: every process gets the same answer.
    """
    mask = batch.masks[task]
    target = batch.targets[task]
    if not target.is_floating_point():  # class indices: -1 also means "not annotated"
        mask = mask & (target >= 0)
    return bool(global_count(mask.sum()) > 0)


def last_shared_layer(model: nn.Module, shared: Iterable[nn.Parameter], output: Tensor) -> str:
    """Name in ``model`` of the shared conv/linear layer that ran last in computing ``output``.

    GradNorm measures gradient norms on "the last shared layer of weights" (Chen et al., ICML
    2018, Sec. 3.2). Module registration order need not be execution order, so this walks the
    graph that produced ``output`` (the shared representation z) and, among the nodes that consume
    a trainable shared conv/linear weight, picks the one created last in the forward pass (the
    largest autograd sequence number): smallcnn's last conv, ResNet's ``layer4.1.conv2``, VGG's
    last pre-logits conv, DenseNet's last dense layer.

    Args:
        model: the network, searched for conv/linear layers.
        shared: the parameters every task uses (``model.shared_parameters()``).
        output: a tensor computed by ``model``'s shared part, with its graph.
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
        raise ValueError("no trainable shared conv/linear layer produced this output; pass the layer's "
                         "module name explicitly (GradNorm's layer='backbone.NAME')")
    if len(best[1]) > 1:  # one node used several layers' weights: a compiled (torch.compile) network
        raise ValueError(f"the autograd graph does not tell which of the layers {sorted(best[1])} ran last (one "
                         f"fused node uses them all, as a torch.compile'd network has); pass GradNorm's "
                         f"layer='NAME' explicitly (the layer found without --compile)")
    return best[1].pop()
