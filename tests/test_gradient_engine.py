"""The gradient engine's helpers: the last shared layer of real backbones, annotation checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.backbones import create_backbone, create_heads
from benchmark.tasks import Batch
from methods import MultiTaskModel
from benchmark.gradient_engine import is_annotated, last_shared_layer
from tests.methods.tiny_mtl import tiny_problem


@pytest.mark.parametrize("name, expected", [("smallcnn", "features.12"), ("resnet18", "layer4.1.conv2")])
def test_last_shared_layer_of_real_backbones(name, expected):
    torch.manual_seed(0)
    backbone, width = create_backbone(name)
    z = backbone(torch.randn(2, 3, 32, 32))
    assert last_shared_layer(backbone, backbone.parameters(), z) == expected
    model = MultiTaskModel(backbone, create_heads(tiny_problem().tasks, width))
    out = model(torch.randn(2, 3, 32, 32))
    # the heads are linear layers that run later, but they are not shared
    assert last_shared_layer(model, model.shared_parameters(), out.features) == f"backbone.{expected}"


class _OutOfOrder(nn.Module):
    """Registers ``late`` before ``early`` but runs ``early`` first, then a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(4, 4)
        self.early = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.late(torch.relu(self.early(x))))


def test_last_shared_layer_follows_execution_not_registration_and_skips_frozen_layers():
    module = _OutOfOrder()
    assert last_shared_layer(module, module.parameters(), module(torch.randn(3, 4))) == "late"
    with pytest.raises(ValueError, match="layer="):
        last_shared_layer(module, [], module(torch.randn(3, 4)))


def test_is_annotated_reads_masks_and_missing_class_targets():
    batch = Batch(torch.zeros(2, 1),
                  {"classes": torch.tensor([-1, -1]), "att": torch.ones(2, 3), "cls2": torch.tensor([-1, 2])},
                  {"classes": torch.tensor([True, True]), "att": torch.zeros(2, 3, dtype=torch.bool),
                   "cls2": torch.tensor([True, True])}, torch.arange(2))
    assert not is_annotated(batch, "classes")  # mask set but target -1: not annotated
    assert not is_annotated(batch, "att")
    assert is_annotated(batch, "cls2")
