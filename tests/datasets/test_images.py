"""Image machinery of the file-based dbs: decoding (crop, fit, [-1, 1]), splits helpers, the decoded-image cache."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import datasets.cache as cache_module
from benchmark.data import augmentation, make_loader
from datasets.cache import ImageCache, cache_folder
from datasets.cad import ClothingAttributes
from datasets.files import allocate, stratified_parts
from datasets.images import ImageSource, decode, to_tensor
from tests.datasets.fixture_trees import cad_tree, grey, two_colour_image


@pytest.fixture
def cad_root(tmp_path):
    return cad_tree(tmp_path / "data")


def open_cad(root, cache_dir, **options) -> ClothingAttributes:
    return ClothingAttributes(data_root=str(root), cache_dir=str(cache_dir), **options)


def count_decodes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = cache_module.decode_row

    def counting(source, row, size, fit):
        calls.append(row)
        return real(source, row, size, fit)

    monkeypatch.setattr(cache_module, "decode_row", counting)
    return calls


def test_to_tensor_maps_pixels_to_minus_one_one():
    pixels = np.array([[[0, 255, 127]]], dtype=np.uint8)
    x = to_tensor(pixels)
    assert x.shape == (3, 1, 1) and x.dtype == torch.float32
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1])


def test_decode_crops_to_the_box_and_fits(tmp_path):
    path = tmp_path / "two.png"
    two_colour_image(path, (40, 20))
    right = decode(path, (20, 0, 20, 20), 8, "stretch")
    assert right.shape == (8, 8, 3) and (right[..., 2] > 250).all() and (right[..., 0] < 5).all()
    whole = decode(path, None, 8, "stretch")
    assert (whole[:, :3, 0] > 250).all() and (whole[:, -3:, 2] > 250).all()
    centre = decode(path, None, 8, "center_crop")  # the centre 20x20 square: half red, half blue
    assert (centre[:, :3, 0] > 250).all() and (centre[:, -3:, 2] > 250).all()
    assert decode(path, (-5, -5, 1000, 1000), 8, "stretch").tolist() == whole.tolist()  # clipped box


def test_jpeg_draft_decoding_keeps_the_box(tmp_path):
    """libjpeg's 1/8 downscaling while decoding must not move the crop box."""
    pixels = np.zeros((400, 800, 3), np.uint8)
    pixels[:, 400:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    blue = decode(tmp_path / "big.jpg", (420, 10, 360, 380), 16, "stretch")
    assert blue[..., 2].min() > 240 and blue[..., 0].max() < 15


def test_allocate_golden_values_and_stratified_parts():
    assert allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert allocate(3, (0.8, 0.1, 0.1)) == [1, 1, 1]  # every part gets one when possible
    assert allocate(2, (0.8, 0.1, 0.1)) == [2, 0, 0]
    assert allocate(7, (1.0, 0.0)) == [7, 0]  # a part without share gets nothing
    strata = np.repeat(np.arange(5), [1, 2, 3, 10, 31])
    parts = stratified_parts(strata, (0.8, 0.1, 0.1), np.random.default_rng(0), every_part=True)
    for value, n in enumerate([1, 2, 3, 10, 31]):
        counts = np.bincount(parts[strata == value], minlength=3).tolist()
        assert counts[0] >= counts[1] + counts[2] - 1 and (min(counts) >= 1 if n >= 3 else counts[0] == n)
    again = stratified_parts(strata, (0.8, 0.1, 0.1), np.random.default_rng(0), every_part=True)
    assert (parts == again).all()


def test_stratified_rounding_is_carried_across_strata():
    """Twenty strata of 5 split 50/50: each gives 3/2 one way or the other, and the totals stay 50/50."""
    strata = np.repeat(np.arange(20), 5)
    parts = stratified_parts(strata, (0.5, 0.5), np.random.default_rng(1))
    assert abs(int((parts == 0).sum()) - 50) <= 1
    for value in range(20):
        assert sorted(np.bincount(parts[strata == value], minlength=2).tolist()) == [2, 3]
    tiny = stratified_parts(np.arange(10), (0.9, 0.1), np.random.default_rng(0))  # strata of one item each
    assert int((tiny == 1).sum()) == 1, "without every_part, tiny strata do not inflate small parts"


def test_cache_second_pass_and_later_runs_do_no_decoding(cad_root, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    data = open_cad(cad_root, tmp_path / "cache").split("train", 0, 12)
    first = [data[i]["input"] for i in range(len(data))]
    assert len(calls) == len(data)
    second = [data[i]["input"] for i in range(len(data))]
    assert len(calls) == len(data), "the second pass must read the cache only"
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    later = open_cad(cad_root, tmp_path / "cache").split("train", 0, 12)  # a later run, same files and size
    assert torch.equal(later[3]["input"], first[3]) and len(calls) == len(data)
    other_fold = open_cad(cad_root, tmp_path / "cache").split("test", 0, 12)  # one cache serves every split
    other_fold[0]
    assert len(calls) == len(data) + 1


def test_cached_pixels_equal_direct_decoding(cad_root, tmp_path):
    cached = open_cad(cad_root, tmp_path / "cache").split("val", 0, 10)
    direct = open_cad(cad_root, "off").split("val", 0, 10)
    assert direct.cache is None and not (tmp_path / "off").exists()
    for i in range(len(cached)):
        assert torch.equal(cached[i]["input"], direct[i]["input"])
        row = int(cached.rows[i])
        assert cached[i]["input"].mean().item() == pytest.approx(grey(row) / 127.5 - 1, abs=0.02)


def test_cache_is_invalidated_by_size_and_by_changed_files(cad_root, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    db = open_cad(cad_root, tmp_path / "cache")
    a, b = db.split("train", 0, 12), db.split("train", 0, 16)
    a[0], b[0]
    assert a.cache.key != b.cache.key and len(calls) == 2 and b[0]["input"].shape == (3, 16, 16)
    path = cad_root / "ClothingAttributeDataset" / "images" / "000001.jpg"
    Image.new("RGB", (30, 30), (250, 250, 250)).save(path)
    os.utime(path, ns=(1, 1))  # a different size and time: a new fingerprint
    changed = open_cad(cad_root, tmp_path / "cache").split("train", 0, 12)
    assert changed.cache.key != a.cache.key
    assert to_tensor(changed.cache.get(0)).mean().item() > 0.9 and len(calls) == 3  # the new content, decoded


def test_pickled_dataset_remaps_the_cache_and_workers_fill_it(cad_root, tmp_path):
    data = open_cad(cad_root, tmp_path / "cache").split("train", 0, 8)
    data[0]
    clone = pickle.loads(pickle.dumps(data))
    assert clone.cache._pixels is None and torch.equal(clone[0]["input"], data[0]["input"])
    loader = make_loader(data, batch_size=4, train=False, workers=2)
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(data) and batches[0].inputs.shape[1:] == (3, 8, 8)
    assert data.cache.filled() == len(data), "workers' writes are visible to every process"


def test_unusable_cache_folder_falls_back_to_decoding(cad_root, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    data = open_cad(cad_root, blocker / "cache").split("train", 0, 8)
    assert data[0]["input"].shape == (3, 8, 8) and "unusable" in caplog.text


def test_cache_folder_from_option_env_or_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MTLBENCH_CACHE_DIR", raising=False)
    assert cache_folder(None) == cache_module.Path("~/.cache/mtlbench").expanduser()
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path))
    assert cache_folder(None) == tmp_path and cache_folder("/x") == cache_module.Path("/x")
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", "off")
    assert cache_folder(None) is None


def test_training_transform_applies_to_the_float_input(cad_root, tmp_path):
    from torchvision.transforms import v2

    data = open_cad(cad_root, tmp_path / "cache").split("train", 0, 12)
    plain = data[0]["input"]
    data.transform = v2.RandomHorizontalFlip(p=1.0)
    assert torch.equal(data[0]["input"], plain.flip(-1))
    data.transform = augmentation("affine")
    x = data[0]["input"]
    assert x.shape == plain.shape and x.dtype == torch.float32 and x.min() >= -1.0 and x.max() <= 1.0


def test_image_source_fingerprint_follows_files(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    one = ImageSource.scan("x", tmp_path, ["a.jpg", "b.jpg"], None, "X_ROOT")
    boxed = ImageSource.scan("x", tmp_path, ["a.jpg", "b.jpg"], np.ones((2, 4)), "X_ROOT")
    assert one.fingerprint == ImageSource.scan("x", tmp_path, ["a.jpg", "b.jpg"], None, "X_ROOT").fingerprint
    assert one.fingerprint != boxed.fingerprint
    assert ImageCache(one, 8, "stretch", tmp_path).key != ImageCache(one, 8, "center_crop", tmp_path).key


def test_file_dbs_are_registered_and_location_options_stay_out_of_identity(cad_root, tmp_path):
    from datasets import DBS

    assert {"cad", "celeba", "cub", "sadd"} <= set(DBS.names())
    a = open_cad(cad_root, tmp_path / "one")
    b = ClothingAttributes(data_root=str(tmp_path / "elsewhere"), cache_dir="off")
    assert a.options() == b.options() and "data_root" not in a.options() and "cache_dir" not in a.options()
    assert ClothingAttributes(fit="center_crop").options() != a.options()
    with pytest.raises(ValueError, match="fit must be one of"):
        ClothingAttributes(fit="squash")
