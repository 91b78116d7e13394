"""``celeba`` on fixture trees in the official formats: tasks, 1/-1 decoding, subject-dependent split, K / top-N."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.celeba import CelebA
from datasets.files import MissingDataError
from tests.datasets.fixture_trees import CELEBA_ATTRIBUTES, celeba_tree, grey

COUNTS = {101: 12, 205: 8, 307: 5, 408: 2, 509: 5, 610: 3}


@pytest.fixture
def root(tmp_path):
    celeba_tree(tmp_path / "data", COUNTS)
    return tmp_path / "data"


def open_db(root, **options) -> CelebA:
    return CelebA(data_root=str(root), cache_dir="off", **options)


def test_tasks_and_attribute_decoding(root):
    db = open_db(root)
    identity, attributes = db.tasks()
    assert identity.labels == ("id_101", "id_205", "id_307", "id_509", "id_610")  # 408 has 2 < min_images=3
    assert attributes.labels == CELEBA_ATTRIBUTES
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()[2:]
    expected = {line.split()[0]: [(int(v) + 1) // 2 for v in line.split()[1:]] for line in lines}
    labels = db.labels()
    for row, name in enumerate(labels.source.files):
        assert labels.targets["attributes"][row].tolist() == expected[name]  # 1 -> 1, -1 -> 0
    assert labels.masks["attributes"].all() and labels.masks["identity"].all()


def test_subject_dependent_stratified_split(root):
    db = open_db(root, split_seed=3)
    splits = {s: db.split(s, None, 8) for s in ("train", "val", "test")}
    rows = {s: set(d.rows.tolist()) for s, d in splits.items()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert sum(map(len, rows.values())) == len(db.labels())
    for c, identity in enumerate(db.tasks()[0].labels):
        counts = [int((d.targets["identity"] == c).sum()) for d in splits.values()]
        assert min(counts) >= 1, f"{identity} appears in every split"
        total = COUNTS[int(identity[3:])]
        for count, share in zip(counts, (0.8, 0.1, 0.1)):  # its share rounded up at most (one image at least)
            assert count <= max(1, np.ceil(share * total))
        assert sum(counts) == total
    again = open_db(root, split_seed=3).split("test", None, 8)
    assert (again.rows == splits["test"].rows).all()
    assert set(open_db(root, split_seed=4).split("test", None, 8).rows.tolist()) != rows["test"]


def test_min_images_and_top_identities(root):
    assert open_db(root, min_images=1).tasks()[0].num_outputs == 6
    assert open_db(root, min_images=6).tasks()[0].labels == ("id_101", "id_205")
    assert open_db(root, top_identities=2).tasks()[0].labels == ("id_101", "id_205")
    assert open_db(root, top_identities=3).tasks()[0].labels == ("id_101", "id_205", "id_307")  # tie: lower id
    db = open_db(root, top_identities=2)
    assert len(db.labels()) == 20 and set(db.split("train", None, 8).targets["identity"].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="no identity has min_images=50"):
        open_db(root, min_images=50).tasks()


def test_images_are_found_by_name(root):
    db = open_db(root)
    data = db.split("val", None, 8)
    for i in range(len(data)):
        name = data.source.files[int(data.rows[i])]
        assert data[i]["input"].mean().item() == pytest.approx(grey(int(name[:6]) - 1) / 127.5 - 1, abs=0.02)


def test_release_layout_with_img_and_anno_folders(tmp_path):
    celeba_tree(tmp_path / "rel", {1: 4, 2: 3}, layout="release")
    db = open_db(tmp_path / "rel")
    assert db.tasks()[0].num_outputs == 2 and len(db.split("train", None, 8)) == 3


def test_image_without_attributes_is_masked_not_negative(root):
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    dropped = lines.pop(2).split()[0]
    lines[0] = str(int(lines[0]) - 1)
    path.write_text("\n".join(lines) + "\n")
    labels = open_db(root).labels()
    row = labels.source.files.index(dropped)
    assert not labels.masks["attributes"][row].any() and labels.targets["attributes"][row].sum() == 0


def test_bad_files_are_clear_errors(root, tmp_path, monkeypatch):
    path = root / "list_attr_celeba.txt"
    text = path.read_text()
    path.write_text("99\n" + text.split("\n", 1)[1])
    with pytest.raises(ValueError, match="line 1 says 99 images"):
        open_db(root).labels()
    path.write_text(text.replace(" 1", " 0", 1))
    with pytest.raises(ValueError, match="values must be 1 or -1, found \\[0\\]"):
        open_db(root).labels()
    (root / "identity_CelebA.txt").unlink()
    with pytest.raises(MissingDataError, match=r"identity_CelebA.txt  \(missing\)"):
        open_db(root).tasks()
    monkeypatch.setenv("MTLBENCH_CELEBA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match="nowhere/list_attr_celeba.txt"):
        CelebA().tasks()
    monkeypatch.delenv("MTLBENCH_CELEBA_ROOT")
    with pytest.raises(MissingDataError, match="MTLBENCH_CELEBA_ROOT=DIR"):
        CelebA().tasks()


def test_missing_image_is_named(root):
    (root / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(MissingDataError, match="(?s)1 of .* image files.*img_align_celeba/000003.jpg"):
        open_db(root).split("train", None, 8)
