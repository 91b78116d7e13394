"""``ckplus`` on a fixture of the release layout: last K frames, emotion codes, FACS files, subject-independent folds."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS
from datasets.ckplus import CKPlus
from datasets.files import MissingDataError
from tests.datasets.affect_fixtures import ckplus_tree

#: CK+ codes: 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
CODES = {1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise"}


@pytest.fixture
def tree(tmp_path):
    return tmp_path / "ck", ckplus_tree(tmp_path / "ck")


def test_last_frames_carry_the_emotion_and_facs_labels(tree):
    root, written = tree
    db = CKPlus(data_root=str(root), cache_dir="off")
    expression, au = db.tasks()
    assert expression.labels == (*EXPRESSIONS, "contempt") and au.num_outputs == 17
    labels = db.labels()
    files = labels.source.files
    assert len(files) == 12 * 3, "K = 3 frames of each emotion-labelled sequence (FACS-only ones are left out)"
    assert files[:3] == tuple(f"cohn-kanade-images/S010/001/S010_001_0000000{z}.png" for z in (3, 4, 5))
    for row, name in enumerate(files):
        subject, seq = name.split("/")[1:3]
        code = written[(subject, seq)]["emotion"]
        assert expression.labels[int(labels.targets["expression"][row])] == CODES[code]
        coded = labels.targets["au"][row].numpy()
        assert labels.masks["au"][row].all(), "FACS codes every AU at the peak: all 17 annotated"
        assert {ACTION_UNITS[j] for j in np.flatnonzero(coded)} == {12, 25, 6}, "AU14 is not canonical"
    priors = db.priors()
    assert priors["domain"].shape == (8, 17) and not priors["domain"][7].any()


def test_options_contempt_extra_aus_neutral_frames_and_au_only_sequences(tree):
    root, written = tree
    no_contempt = CKPlus(data_root=str(root), cache_dir="off", keep_contempt=False)
    assert no_contempt.tasks()[0].labels == EXPRESSIONS
    target = no_contempt.labels().targets["expression"].numpy()
    contempt = sum(1 for (s, q), v in written.items() if v["emotion"] == 2)
    assert (target == -1).sum() == 3 * contempt > 0, "contempt frames keep only their AUs"
    extra = CKPlus(data_root=str(root), cache_dir="off", extra_aus=True, au_only_sequences=True, last_frames=2)
    au = extra.tasks()[1]
    assert au.labels[17:] == ("AU14", "AU27"), "coded AUs outside the canonical 17, kept as extra attributes"
    labels = extra.labels()
    assert len(labels) == 24 * 2
    facs_only = [i for i, f in enumerate(labels.source.files) if "/002/" in f]
    assert len(facs_only) == 24 and (labels.targets["expression"][facs_only] == -1).all()
    assert labels.targets["au"][facs_only[0], 17 + 1] == 1 and labels.targets["au"][facs_only[0], ACTION_UNITS.index(5)] == 1
    neutral = CKPlus(data_root=str(root), cache_dir="off", neutral_first_frame=True)
    labels = neutral.labels()
    first = [i for i, f in enumerate(labels.source.files) if f.endswith("_00000001.png")]
    assert len(first) == 12 and (labels.targets["expression"][first] == 0).all()
    assert not labels.masks["au"][first].any(), "the neutral first frame's AUs are not coded: missing"


def test_subject_independent_folds(tree):
    root, _ = tree
    db = CKPlus(data_root=str(root), cache_dir="off", folds=4)
    assert db.num_folds == 4 and CKPlus.num_folds == 10
    subjects = [f.split("/")[1] for f in db.labels().source.files]
    tested = []
    for fold in range(4):
        parts = db.parts(fold)
        for subject in set(subjects):
            assert len({int(p) for p, s in zip(parts, subjects) if s == subject}) == 1, "a subject's frames stay together"
        tested += sorted({s for p, s in zip(parts, subjects) if p == 2})
        assert (parts == 1).any() and (parts == 0).any()
    assert sorted(tested) == sorted(set(subjects)), "every subject is tested in exactly one fold"
    with pytest.raises(ValueError, match="pass --fold 0..3"):
        db.split("train", None, 8)
    other = CKPlus(data_root=str(root), cache_dir="off", folds=4, split_seed=1)
    assert any((other.parts(f) != db.parts(f)).any() for f in range(4))


def test_missing_layout_and_bad_codes(tree, tmp_path):
    root, _ = tree
    emotion = root / "Emotion" / "S010" / "001" / "S010_001_00000005_emotion.txt"
    emotion.write_text("   9.0000000e+00\n")
    with pytest.raises(ValueError, match="emotion codes are 0..7, got 9"):
        CKPlus(data_root=str(root)).labels()
    (tmp_path / "bare").mkdir()
    with pytest.raises(MissingDataError, match=r"FACS  \(missing\)"):
        CKPlus(data_root=str(tmp_path / "bare")).labels()
