"""Backbones: timm models by name without downloads, the small CNN, local weights, one head per task."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones import SmallCNN, check_backbone, create_backbone, create_heads, list_backbones
from benchmark.tasks import TaskSpec


@pytest.mark.parametrize("name", ["smallcnn", "resnet18", "vgg16", "densenet121"])
def test_backbone_maps_images_to_features_of_its_width(name):
    model, width = create_backbone(name)
    model.eval()
    with torch.no_grad():
        z = model(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, width)


def test_heads_match_tasks():
    heads = create_heads([TaskSpec("c", "multiclass", ("a", "b", "c")), TaskSpec("a", "attributes", ("x",) * 5)], 16)
    assert heads["c"].out_features == 3 and heads["a"].out_features == 5


def test_unknown_backbone_suggests_timm_names():
    with pytest.raises(ValueError, match="Did you mean .*resnet50"):
        check_backbone("resnet50x")


def test_local_weights_torch_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = SmallCNN()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    for file in ("w.pth", "w.safetensors"):
        model, _ = create_backbone("smallcnn", str(tmp_path / file))
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)


def test_listing_shows_the_paper_backbones_and_timm_patterns():
    names = [n for n, _ in list_backbones()]
    assert {"smallcnn", "vgg16", "resnet50", "densenet121"} <= set(names)
    assert "resnet18" in [n for n, _ in list_backbones("resnet1*")]
