"""Backbones: timm models by their timm names, plus a small CNN for CPU runs; one head per task.

Models are built from scratch unless ``pretrained`` names weights: timm's (fetched and cached by
timm), a package's, or a local file; :mod:`benchmark.pretrained` resolves and loads them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from benchmark.pretrained import (PACKAGE, TIMM, create_timm_pretrained, input_statistics, load_packaged,
                                  normalize_inputs, packaged_weights)
from benchmark.tasks import TaskSpec

log = logging.getLogger(__name__)

#: The backbones the paper uses (and a few CPU-friendly ones), listed by ``ls backbones``.
PAPER_BACKBONES: dict[str, str] = {
    "vgg16": "VGG-16 (Simonyan & Zisserman, ICLR 2015); used in the paper's Table 4, and the suite's one network "
             "for the affect tables (the paper's Tables 2-3 use a network per db; one network for all dbs keeps "
             "method differences apart from architecture differences)",
    "resnet50": "ResNet-50 (He et al., CVPR 2016); used in the paper's Table 4",
    "densenet121": "DenseNet-121 (Huang et al., CVPR 2017); used in the paper's Table 4",
    "resnet18": "ResNet-18 (He et al., CVPR 2016); a light residual backbone",
    "efficientnet_b0": "EfficientNet-B0 (Tan & Le, ICML 2019)",
    "efficientnet_lite0": "EfficientNet-Lite0 (Tan & Le, 2020); ImageNet weights installed with mtlbench "
                          "(--pretrained imagenet works offline); the CPU reference backbone",
    "mobilenetv3_small_100": "MobileNetV3-Small (Howard et al., ICCV 2019); CPU-friendly",
}


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages and global average pooling; trains in seconds on a CPU.

    Args:
        width: channels of the first stage (doubled at stages 2 and 3).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, C, 1, 1) -> (B, C)


BUILTIN_NAME = "smallcnn"
BUILTIN_BACKBONES: dict[str, tuple[type[nn.Module], str]] = {
    BUILTIN_NAME: (SmallCNN, "4-stage conv net, 128-d features (mtlbench built-in, for CPU runs)"),
}


def list_backbones(pattern: str | None = None) -> list[tuple[str, str]]:
    """(name, description) of the built-in and paper backbones, or of every timm model matching ``pattern``."""
    import timm

    if pattern:
        builtin = [(n, d) for n, (_, d) in BUILTIN_BACKBONES.items() if Path(n).match(pattern)]
        return builtin + [(n, PAPER_BACKBONES.get(n, "timm model")) for n in timm.list_models(pattern)]
    return [(n, d) for n, (_, d) in BUILTIN_BACKBONES.items()] + list(PAPER_BACKBONES.items())


def check_backbone(name: str, pretrained: str | None = None) -> None:
    """Fail before any training if ``name`` is no known backbone or ``pretrained`` (a resolved weights
    identity, :func:`benchmark.pretrained.resolve_pretrained`) is no local file or named weights of it.

    Named weights are not fetched here (``sweep --dry-run`` checks a GPU grid offline): the runner
    fetches them before it stores a run (:func:`benchmark.pretrained.ensure_available`).
    """
    if name not in BUILTIN_BACKBONES:
        import timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, list(BUILTIN_BACKBONES) + timm.list_models(), n=5, cutoff=0.6)
            raise ValueError(f"unknown backbone {name!r}. Did you mean {', '.join(close) or '(no close match)'}? "
                             f"Run 'python -m benchmark ls backbones [--pattern GLOB]' for the list.")
    if pretrained and is_named_weights(pretrained):
        if name in BUILTIN_BACKBONES:
            raise ValueError(f"backbone {name!r} has no pretrained weights but a local file; drop --pretrained")
    elif pretrained and not Path(pretrained).expanduser().is_file():
        raise FileNotFoundError(f"pretrained weights {pretrained!r} not found: give a local .pth/.safetensors file, "
                                f"'imagenet' (timm's weights, downloaded and cached), a timm tag such as 'a1_in1k', "
                                f"or drop --pretrained to train from scratch")


def is_named_weights(pretrained: str) -> bool:
    """Whether ``pretrained`` names timm's or a package's weights (else it is a local file)."""
    return pretrained.startswith((TIMM, PACKAGE))


def create_backbone(name: str, pretrained: str | None = None, *, load_weights: bool = True) -> tuple[nn.Module, int]:
    """A feature extractor (B, 3, H, W) -> (B, D) and its width D.

    Args:
        name: ``smallcnn`` or any timm architecture name (``vgg16``, ``resnet50``, ...).
        pretrained: a resolved weights identity (``timm:<arch>.<tag>``, ``package:...``) or the path of a
            local weights file (``.pth``/``.pt``/``.bin``/``.safetensors``); None trains from scratch.
            Named weights also set the input normalisation they expect.
        load_weights: False builds the same network (normalisation included) without loading weights,
            for a saved run's weights to replace them.
    """
    if name in BUILTIN_BACKBONES:
        model: nn.Module = BUILTIN_BACKBONES[name][0]()
    elif pretrained and pretrained.startswith(TIMM):
        model = create_timm_pretrained(pretrained.removeprefix(TIMM), load_weights)
    else:
        import timm

        check_backbone(name)
        model = timm.create_model(name, pretrained=False, num_classes=0)  # num_classes=0: pooled features
    if pretrained and pretrained.startswith(PACKAGE):
        if load_weights:
            load_packaged(model, packaged_weights(pretrained))
    elif pretrained and load_weights and not is_named_weights(pretrained):
        load_local_weights(model, pretrained)
    statistics = input_statistics(pretrained, model) if pretrained else None
    if statistics is not None:
        normalize_inputs(model, *statistics)
    # timm's num_features is the width before pre-logits layers (VGG's 4096-d MLP, MobileNetV3's
    # conv head); with num_classes=0 the model outputs head_hidden_size features.
    return model, int(getattr(model, "head_hidden_size", None) or model.num_features)


def load_local_weights(model: nn.Module, path: str) -> None:
    """Load a local checkpoint into ``model``, ignoring classifier weights; never downloads."""
    check_backbone(BUILTIN_NAME, path)
    file = Path(path).expanduser()
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    usable = {k.removeprefix("module."): v for k, v in state.items()}
    usable = {k: v for k, v in usable.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"no tensor in {str(file)!r} matches the backbone's parameters by name and shape; "
                         f"is it a checkpoint of this architecture?")
    missing = [k for k in own if k not in usable]
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s (%d left at their initialisation)", len(usable), file, len(missing))


def create_heads(tasks: Sequence[TaskSpec], in_features: int) -> nn.ModuleDict:
    """One linear head per task: N class logits or M attribute logits."""
    return nn.ModuleDict({t.name: nn.Linear(in_features, t.num_outputs) for t in tasks})
