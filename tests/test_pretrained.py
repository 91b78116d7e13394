"""Pretrained weights: resolution to a stored identity, timm's loading code on a local file, the packaged
EfficientNet-Lite0 weights and their key mapping, input normalisation, and what reaches a run's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.backbones import create_backbone
from benchmark.pretrained import (PACKAGED, PretrainedError, WEIGHTS_DIR_VAR, create_timm_pretrained, map_in_order,
                                  packaged_classifier, resolve_pretrained)

LITE0 = PACKAGED["efficientnet_lite0"]
CAD_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cad" / "ClothingAttributeDataset" / "images"


@pytest.mark.parametrize("backbone, pretrained, expected", [
    ("resnet50", None, ("resnet50", None)),
    ("resnet50", "imagenet", ("resnet50", "timm:resnet50.a1_in1k")),  # timm's default tag
    ("resnet50", "a3_in1k", ("resnet50", "timm:resnet50.a3_in1k")),
    ("resnet50", "resnet50.a3_in1k", ("resnet50", "timm:resnet50.a3_in1k")),
    ("resnet50", "timm:resnet50.a3_in1k", ("resnet50", "timm:resnet50.a3_in1k")),
    ("resnet50.a2_in1k", None, ("resnet50", "timm:resnet50.a2_in1k")),  # timm's tagged-name syntax
    ("efficientnet_lite0", "imagenet", ("efficientnet_lite0", LITE0.identity)),  # the packaged weights first
])
def test_resolution_gives_the_stored_identity(backbone, pretrained, expected):
    assert resolve_pretrained(backbone, pretrained) == expected


def test_a_local_file_stays_as_given(tmp_path):
    file = tmp_path / "w.pth"
    file.write_bytes(b"")
    assert resolve_pretrained("resnet18", str(file)) == ("resnet18", str(file))


@pytest.mark.parametrize("backbone, pretrained, match", [
    ("resnet50", "zz_in1k", "resnet50's tags: a1_in1k"),
    ("resnet50", "resnet18.a1_in1k", "for 'resnet18', not for backbone 'resnet50'"),
    ("resnet50.a1_in1k", "a2_in1k", "give one"),
    ("resnet18", LITE0.identity, "no packaged weights of 'resnet18'"),
])
def test_bad_weights_names_are_refused_with_the_fix(backbone, pretrained, match):
    with pytest.raises(ValueError, match=match):
        resolve_pretrained(backbone, pretrained)


def test_timm_weights_load_through_timms_own_mechanism_from_the_weights_dir(tmp_path, monkeypatch):
    """The offline route: a file in $MTLBENCH_WEIGHTS_DIR goes through timm's pretrained_cfg_overlay=dict(file=...)."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)
    save_file(source.state_dict(), str(tmp_path / "resnet18.a1_in1k.safetensors"))
    monkeypatch.setenv(WEIGHTS_DIR_VAR, str(tmp_path))
    model, width = create_backbone("resnet18", "timm:resnet18.a1_in1k")
    assert width == 512
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert model.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)


def test_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_VAR, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests: the hub fails at once
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PretrainedError) as info:
        create_timm_pretrained("resnet18.a1_in1k")
    message = str(info.value)
    for hint in ("timm.create_model('resnet18.a1_in1k', pretrained=True)", "HF_HUB_OFFLINE=1",
                 str(tmp_path / "resnet18.a1_in1k.safetensors"), "--pretrained /path/to/weights.pth"):
        assert hint in message


def test_normalisation_maps_minus_one_one_to_the_weights_statistics(tmp_path, monkeypatch):
    """A pretrained backbone sees (x01 - mean) / std for an input x in [-1, 1]; from scratch it sees x."""
    model, _ = create_backbone("efficientnet_lite0", LITE0.identity, load_weights=False)
    seen = {}
    model.conv_stem.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    model.eval()(x)
    mean, std = torch.tensor(LITE0.mean).view(1, 3, 1, 1), torch.tensor(LITE0.std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["x"], ((x + 1) / 2 - mean) / std)
    assert "input_scale" not in model.state_dict()  # not persistent: run files and ids are unchanged
    scratch, _ = create_backbone("efficientnet_lite0")
    assert not hasattr(scratch.conv_stem, "input_scale")


def test_packaged_lite0_maps_one_to_one_onto_timm():
    import timm

    state = torch.load(LITE0.path(), map_location="cpu", weights_only=True)
    own = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_in_order(state, own)
    assert len(mapped) == len([k for k in own if not k.endswith("num_batches_tracked")]) == 247
    assert mapped["conv_stem.weight"] is state["_conv_stem.weight"]
    assert mapped["classifier.weight"] is state["_fc.weight"]
    with pytest.raises(ValueError, match="tensors|does not fit"):
        map_in_order(state, timm.create_model("efficientnet_b0", pretrained=False).state_dict())


def test_packaged_lite0_reproduces_a_known_prediction():
    """A smooth synthetic image (no data needed): the mapped model's top 3 ImageNet classes are 818
    'spotlight', 782 'screen', 664 'monitor' (golden values of the mapping; a wrong mapping or
    normalisation changes them); the backbone mtlbench trains has exactly the classifier model's weights."""
    model = packaged_classifier("efficientnet_lite0")
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 224), torch.linspace(-1, 1, 224), indexing="ij")
    image = torch.stack([xx, yy, (xx * yy)]).unsqueeze(0)  # (1, 3, 224, 224) in [-1, 1]
    with torch.no_grad():
        probs = model(image).softmax(-1)[0]
    assert probs.topk(3).indices.tolist() == [818, 782, 664]
    assert float(probs[818]) == pytest.approx(0.0339, abs=2e-3)
    backbone, _ = create_backbone("efficientnet_lite0", LITE0.identity)
    full = dict(model.named_parameters())
    for name, p in backbone.named_parameters():
        torch.testing.assert_close(p, full[name])


@pytest.mark.realdata
@pytest.mark.skipif(not CAD_IMAGES.is_dir(), reason="needs ../shared/data/cad (the Clothing Attributes Dataset)")
def test_packaged_lite0_names_a_cad_suit():
    """CAD's 000001.jpg is a man in a suit: ImageNet class 834 'suit', p = 0.88 (resize 256, centre crop 224)."""
    import numpy as np
    import torchvision.transforms.functional as TF
    from PIL import Image

    image = TF.center_crop(TF.resize(Image.open(CAD_IMAGES / "000001.jpg").convert("RGB"), 256), 224)
    x = torch.tensor(np.asarray(image)).permute(2, 0, 1).float().unsqueeze(0) / 127.5 - 1  # [-1, 1], as mtlbench feeds
    with torch.no_grad():
        probs = packaged_classifier("efficientnet_lite0")(x).softmax(-1)[0]
    assert int(probs.argmax()) == 834
    assert float(probs[834]) == pytest.approx(0.877, abs=0.01)
