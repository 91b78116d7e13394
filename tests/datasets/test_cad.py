"""``cad`` on a fixture tree in the release layout: tasks, 1/2 and NaN decoding, file-name keying, 6 x 2 folds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from benchmark.cli import main
from datasets.cad import BINARY, CATEGORIES, ClothingAttributes
from datasets.files import MissingDataError
from results import ResultsStore
from tests.datasets.fixture_trees import CAD_N, cad_labels, cad_tree, grey


@pytest.fixture
def root(tmp_path):
    return cad_tree(tmp_path / "data")


@pytest.fixture
def db(root, tmp_path):
    return ClothingAttributes(data_root=str(root), cache_dir=str(tmp_path / "cache"))


def all_rows(db, fold):
    return {s: db.split(s, fold, 8) for s in ("train", "val", "test")}


def test_tasks_and_extra_tasks(root, tmp_path):
    db = ClothingAttributes(data_root=str(root))
    category, attributes = db.tasks()
    assert category.labels == CATEGORIES and attributes.num_outputs == 23 and attributes.labels == BINARY
    extra = ClothingAttributes(data_root=str(root), extra_tasks=True, cache_dir=str(tmp_path / "c"))
    assert [t.name for t in extra.tasks()] == ["category", "attributes", "sleeve_length", "neckline"]
    labels = extra.labels()
    gts = cad_labels()
    assert labels.targets["sleeve_length"].tolist() == (gts["sleevelength"] - 1).astype(int).tolist()
    assert labels.targets["neckline"][1] == -1 and not labels.masks["neckline"][1]


def test_label_decoding_one_two_coding_and_nan(db):
    labels, gts = db.labels(), cad_labels()
    necktie = BINARY.index("necktie")
    assert labels.targets["attributes"][:4, necktie].tolist() == [0.0, 1.0, 0.0, 1.0]  # 1 = no, 2 = yes, NaN -> 0
    assert labels.masks["attributes"][:4, necktie].tolist() == [True, True, False, True]
    for j, name in enumerate(BINARY):
        known = ~np.isnan(gts[name])
        assert (labels.masks["attributes"][:, j].numpy() == known).all()
        assert (labels.targets["attributes"][known, j].numpy() == gts[name][known] - 1).all()
    category = labels.targets["category"].numpy()
    assert (category[::3] == -1).all() and not labels.masks["category"][::3].any()
    assert category[1] == 1 and labels.masks["category"][1]  # code 2 (sweater) -> index 1
    assert labels.targets["attributes"].min() >= 0, "a missing label is masked, never negative"


def test_labels_are_keyed_by_file_name_not_directory_order(db, root):
    (root / "ClothingAttributeDataset" / "images" / "000000_extra.jpg").write_bytes(b"")  # sorts first
    test = db.split("test", 0, 8)
    for i in range(len(test)):
        row = int(test.rows[i])
        assert test.source.files[row].endswith(f"{row + 1:06d}.jpg")
        assert test[i]["input"].mean().item() == pytest.approx(grey(row) / 127.5 - 1, abs=0.02)


def test_six_times_two_fold_protocol(db):
    assert db.num_folds == 12
    for repetition in range(6):
        a, b = all_rows(db, 2 * repetition), all_rows(db, 2 * repetition + 1)
        rows_a = {s: set(d.rows.tolist()) for s, d in a.items()}
        rows_b = {s: set(d.rows.tolist()) for s, d in b.items()}
        assert rows_a["test"] == rows_b["train"] | rows_b["val"], "the two folds of a repetition swap halves"
        assert len(rows_a["test"]) == CAD_N // 2
        assert not rows_a["train"] & rows_a["val"] and not rows_a["val"] & rows_a["test"]
        assert len(rows_a["val"]) >= 1
    halves = [frozenset(all_rows(db, 2 * r)["test"].rows.tolist()) for r in range(6)]
    assert len(set(halves)) > 1, "repetitions are different random halvings"
    test = all_rows(db, 0)["test"].targets["category"].numpy()
    full = db.labels().targets["category"].numpy()
    for c in range(-1, 7):  # stratified: each category (and 'none') split in half, up to one image
        assert abs(2 * (test == c).sum() - (full == c).sum()) <= 1


def test_folds_are_checked_and_seeded(db, root):
    with pytest.raises(ValueError, match="pass --fold 0..11"):
        db.split("train", None)
    with pytest.raises(ValueError, match="pass --fold 0..11"):
        db.check_fold(12)
    same = ClothingAttributes(data_root=str(root), cache_dir="off")
    other = ClothingAttributes(data_root=str(root), cache_dir="off", split_seed=1)
    assert (same.split("test", 3, 8).rows == db.split("test", 3, 8).rows).all()
    assert set(other.split("test", 0, 8).rows.tolist()) != set(db.split("test", 0, 8).rows.tolist())


def test_empirical_relatedness_counts_co_annotated_training_images(db):
    matrix = db.problem(0).relatedness("db")
    train = db.split("train", 0, 8)
    cls, att = train.targets["category"].numpy(), train.targets["attributes"].numpy()
    known = train.masks["attributes"].numpy()
    assert matrix.shape == (7, 23)
    for c in range(7):
        for j in range(23):
            rows = (cls == c) & known[:, j]
            assert matrix[c, j] == pytest.approx(att[rows, j].mean() if rows.any() else 0.0)


def test_missing_root_files_and_images_are_named(root, tmp_path, monkeypatch):
    monkeypatch.delenv("MTLBENCH_CAD_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="pass --data-root DIR or set MTLBENCH_CAD_ROOT"):
        ClothingAttributes().labels()
    (root / "ClothingAttributeDataset" / "labels" / "collar_GT.mat").unlink()
    with pytest.raises(MissingDataError, match=r"labels/collar_GT.mat  \(missing\)") as err:
        ClothingAttributes(data_root=str(root)).labels()
    assert "labels/category_GT.mat\n" in str(err.value), "the message lists what was expected where"
    cad_tree(tmp_path / "other")
    (tmp_path / "other" / "ClothingAttributeDataset" / "images" / "000007.jpg").unlink()
    monkeypatch.setenv("MTLBENCH_CAD_ROOT", str(tmp_path / "other"))  # the environment variable is honoured
    with pytest.raises(MissingDataError, match="(?s)1 of 24 image files.*images/000007.jpg"):
        ClothingAttributes().labels()


def test_bad_codes_are_an_error_naming_the_file(tmp_path):
    gts = cad_labels()
    gts["collar"][5] = 3
    root = cad_tree(tmp_path / "data", gts=gts)
    with pytest.raises(ValueError, match="collar_GT.mat: values must be 1..2 or NaN, found \\[3.0\\]"):
        ClothingAttributes(data_root=str(root)).labels()
    scipy.io.savemat(root / "ClothingAttributeDataset" / "labels" / "collar_GT.mat", {"labels": np.ones((CAD_N, 1))})
    with pytest.raises(ValueError, match="no variable 'GT'"):
        ClothingAttributes(data_root=str(root)).labels()


@pytest.mark.slow
def test_cross_validated_run_end_to_end(root, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    args = ["run", "--db", "cad", "--data-root", str(root), "--image-size", "16", "--epochs", "1",
            "--batch-size", "8", "--workdir", str(tmp_path / "w"), "--quiet", "--method", "no_coupling"]
    assert main([*args, "--fold", "1"]) == 0
    assert main([*args, "--fold", "12"]) == 2
    (run,) = ResultsStore(tmp_path / "w" / "results.sqlite").runs()
    assert run.fold == 1 and run.status == "completed" and "data_root" not in run.config["db_options"]
