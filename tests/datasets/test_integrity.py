"""A db's files are checked before anything trains: every image decodes in full, label files parse.

Broken files are named, each with what is wrong, up to ten of them; a run or sweep on a broken db exits 2
and stores nothing; the check fills the decoded cache, so a second check decodes nothing.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from datasets.cad import RELEASE, ClothingAttributes
from datasets.files import CorruptDataError
from tests.datasets.fixture_trees import cad_tree

RUN = ["run", "--method", "no_coupling", "--db", "cad", "--fold", "0", "--epochs", "1", "--image-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return cad_tree(tmp_path_factory.mktemp("cad") / "data")


@pytest.fixture
def root(clean, tmp_path):
    """A private copy of the CAD fixture tree to break."""
    return shutil.copytree(clean, tmp_path / "data")


def image(root, i: int):
    return root / RELEASE / "images" / f"{i:06d}.jpg"


def truncate(path) -> None:
    """A JPEG of noise (so its data cannot be guessed) cut in half."""
    pixels = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def check(root, cache_dir="off") -> str:
    db = ClothingAttributes(data_root=str(root), cache_dir=str(cache_dir))
    with pytest.raises(CorruptDataError) as caught:
        db.verify(16)
    return str(caught.value)


def test_a_truncated_jpeg_is_named(root):
    truncate(image(root, 5))
    message = check(root)
    assert str(image(root, 5)) in message and "truncated" in message and "\n" not in message


def test_a_zero_byte_image_is_named(root):
    image(root, 7).write_bytes(b"")
    assert f"{image(root, 7)}: empty file (0 bytes)" in check(root)


def test_a_garbage_label_file_is_named(root):
    path = root / RELEASE / "labels" / "collar_GT.mat"
    path.write_bytes(os.urandom(3000))
    message = check(root)
    assert f"{path}: not a readable MATLAB .mat file" in message and "\n" not in message


def test_a_label_file_of_the_wrong_shape_is_named(root):
    import scipy.io

    path = root / RELEASE / "labels" / "gender_GT.mat"
    scipy.io.savemat(path, {"GT": np.ones((4, 6))})
    assert f"{path}: GT is 4 x 6, expected a vector" in check(root)


def test_many_offenders_are_listed_up_to_ten(root):
    for i in range(1, 13):
        image(root, i).write_bytes(b"")
    message = check(root)
    assert message.startswith("db 'cad': 12 of 24 image files do not decode:")
    assert message.count("empty file (0 bytes)") == 10 and "... and 2 more" in message


def test_the_check_fills_the_cache_and_a_second_check_decodes_nothing(root, tmp_path):
    db = ClothingAttributes(data_root=str(root), cache_dir=str(tmp_path / "cache"))
    db.verify(16)
    cache = db.memo(("cache", 16), lambda: None)
    assert cache.filled() == 24 and cache.decoded == 24
    again = ClothingAttributes(data_root=str(root), cache_dir=str(tmp_path / "cache"))
    again.verify(16)
    assert again.memo(("cache", 16), lambda: None).decoded == 0


def test_a_broken_image_fails_the_cache_check_and_stays_out_of_the_cache(root, tmp_path):
    truncate(image(root, 3))
    assert str(image(root, 3)) in check(root, tmp_path / "cache")
    assert str(image(root, 3)) in check(root, tmp_path / "cache")  # still found: never flagged as cached


@pytest.mark.parametrize("breaks, culprit", [
    (lambda root: truncate(image(root, 5)), "000005.jpg: truncated"),
    (lambda root: image(root, 7).write_bytes(b""), "000007.jpg: empty file (0 bytes)"),
    (lambda root: (root / RELEASE / "labels" / "collar_GT.mat").write_bytes(os.urandom(3000)), "collar_GT.mat: not a"),
])
def test_a_run_on_broken_data_exits_2_and_stores_nothing(capsys, root, tmp_path, monkeypatch, breaks, culprit):
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    breaks(root)
    workdir = tmp_path / "w"
    assert main([*RUN, "--data-root", str(root), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and culprit in errors[0] and "Traceback" not in err
    assert not workdir.exists()  # no store, no folder


def test_a_sweep_on_broken_data_exits_2_before_anything_is_stored(capsys, root, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    image(root, 9).write_bytes(b"")
    experiment = tmp_path / "broken.toml"
    experiment.write_text(f'[preset]\nepochs = 1\nimage_size = 16\n\n[[methods]]\nname = "no_coupling"\n\n'
                          f'[[dbs]]\nname = "cad"\ndata_root = "{root}"\nfolds = [0]\n')
    workdir = tmp_path / "w"
    assert main(["sweep", str(experiment), "--workdir", str(workdir), "--quiet"]) == 2
    assert "000009.jpg: empty file (0 bytes)" in capsys.readouterr().err
    assert not (workdir / "results.sqlite").exists()
