"""``emotionet`` on fixtures of its two file formats: quoted 'AU 1' columns, 999, the 11 AUs, URLs to files, splits."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affect_tables import ACTION_UNITS
from datasets.emotionet import EmotioNet, au_number
from datasets.files import MissingDataError
from tests.datasets.affect_fixtures import EMOTIONET_AUS, emotionet_tree, emotionet_values

COLUMNS = [ACTION_UNITS.index(a) for a in EMOTIONET_AUS]
OTHERS = [j for j, a in enumerate(ACTION_UNITS) if a not in EMOTIONET_AUS]


@pytest.fixture
def root(tmp_path):
    emotionet_tree(tmp_path / "emo")
    return tmp_path / "emo"


def test_au_column_names():
    assert [au_number(c) for c in ("'AU 1'", "AU12", '"AU 26"', " 'AU 4' ", "URL", "AU")] == [1, 12, 26, 4, None, None]


def test_manual_csv_quoted_columns_999_and_the_eleven_aus(root):
    db = EmotioNet(data_root=str(root), cache_dir="off")
    (task,) = db.tasks()
    assert task.name == "au" and task.num_outputs == 17 and task.primary == "f1_acc_avg"
    labels = db.labels()
    files = labels.source.files
    kept = [int(f[len("images/m"):-4]) for f in files]
    assert files[0] == "images/m0.jpg", "a quoted URL maps to images/<its file name>"
    assert 3 not in kept, "an image whose URL was not downloaded is skipped"
    assert 5 not in kept, "an image with every AU unknown (999) carries nothing"
    assert len(kept) == 28
    target, mask = labels.targets["au"].numpy(), labels.masks["au"].numpy()
    assert not mask[:, OTHERS].any(), "the 6 canonical AUs EmotioNet does not code are masked in every image"
    codes = emotionet_values(30, 0)
    for row, i in enumerate(kept):
        known = codes[i] != 999
        assert (mask[row, COLUMNS] == known).all()
        assert (target[row, COLUMNS][known] == codes[i][known]).all()
        assert (target[row, COLUMNS][~known] == 0).all(), "999 is masked, never a negative"


def test_images_named_by_url_path_and_missing_images_as_an_error(root):
    (root / "images" / "emo" / "f0").mkdir(parents=True)
    (root / "images" / "m0.jpg").rename(root / "images" / "emo" / "f0" / "m0.jpg")
    db = EmotioNet(data_root=str(root), cache_dir="off", image_names="url_path")
    assert db.labels().source.files == ("images/emo/f0/m0.jpg",)  # the only image at its URL path
    with pytest.raises(MissingDataError, match="image files named by the annotations are missing"):
        EmotioNet(data_root=str(root), cache_dir="off", missing_images="error").labels()


def test_manual_split_and_automatic_training(root):
    manual = EmotioNet(data_root=str(root), cache_dir="off", split_fractions="0.6:0.2:0.2")
    parts = [set(manual.split(s, None, 8).rows.tolist()) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] in ([17, 6, 5], [16, 6, 6], [17, 5, 6]) and set.union(*parts) == set(range(28))
    auto = EmotioNet(data_root=str(root), cache_dir="off", training="automatic", split_fractions="0.6:0.2:0.2")
    train = auto.split("train", None, 8)
    files = {auto.labels().source.files[r] for r in train.rows}
    assert files == {f"images/a{i}.jpg" for i in range(20)}, "the lists train; their copy of a manual URL is left out"
    au7 = ACTION_UNITS.index(7)
    assert not train.masks["au"][:, au7].any(), "AU7 of the lists' 60 columns is not one of EmotioNet's 11"
    automatic = emotionet_values(20, 1)
    assert (train.targets["au"][:, COLUMNS].numpy() == np.where(automatic == 999, 0, automatic)).all()
    val, test = (set(auto.split(s, None, 8).rows.tolist()) for s in ("val", "test"))
    assert len(val) + len(test) == 28 and not val & test and abs(len(val) - len(test)) <= 1


def test_bad_values_and_missing_files_are_named(root):
    csv = root / "EmotioNet_FACS_aws_2020_24600.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",2"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"column \"'AU 26'\" must hold 1, 0 or 999"):
        EmotioNet(data_root=str(root)).labels()
    csv.unlink()
    with pytest.raises(MissingDataError, match="EmotioNet_FACS_aws_2020_24600.csv"):
        EmotioNet(data_root=str(root)).labels()
    (root / "x.csv").write_text("URL,'AU 1'\n'http://h/m0.jpg',1\n")
    with pytest.raises(MissingDataError, match="no list matches"):
        EmotioNet(data_root=str(root), manual_csv="x.csv", training="automatic", lists="none/*.txt").labels()
