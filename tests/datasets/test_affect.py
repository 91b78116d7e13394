"""The affect case's shared label space, priors, preset and the EmotioNet metric (``datasets/affect.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import AUGMENTATIONS as LOADER_AUGMENTATIONS
from benchmark.metrics import task_metrics
from datasets.affect_tables import ACTION_UNITS, AU_NAMES, EXPRESSIONS, affect_affwild2_prior, affect_domain_prior
from benchmark.tasks import METRIC_HIGHER_IS_BETTER
from datasets import DBS
from datasets.affect import (AUGMENTATIONS, affect_priors, au_matrix, au_task, canonical_expression,
                             expression_task)

AFFECT_DBS = ("affectnet", "rafdb", "emotionet", "affwild2", "abaw4_lsd", "ckplus",
              "affectnet+emotionet", "rafdb+emotionet", "abaw4_lsd+affwild2")


def test_every_affect_db_is_registered_with_a_one_line_description():
    entries = {e.name: e.description for e in DBS.entries()}
    for name in AFFECT_DBS:
        assert name in entries and entries[name] and "|" not in entries[name], name


def test_canonical_names_of_dataset_labels():
    cases = {"Happy": "happiness", "HAPPINESS": "happiness", "ANGERE": "anger", "Sad": "sadness", "Neutral": "neutral",
             "surprised": "surprise", "Other": "other", "contempt": "contempt"}
    assert {k: canonical_expression(k) for k in cases} == cases
    assert canonical_expression("bored") is None


def test_tasks_use_the_canonical_order_with_extras_appended():
    assert expression_task().labels == EXPRESSIONS
    assert expression_task(("other",)).labels == (*EXPRESSIONS, "other")
    assert au_task().labels == AU_NAMES and len(AU_NAMES) == 17
    assert au_task((14, 27)).labels[-2:] == ("AU14", "AU27")
    assert au_task(primary="f1_acc_avg").primary == "f1_acc_avg"


def test_au_matrix_masks_aus_a_dataset_does_not_code():
    values = au_matrix({1: np.array([1.0, 0.0]), 12: np.array([np.nan, 1.0]), 43: np.array([1.0, 1.0])}, 2)
    assert values.shape == (2, 17)
    assert values[:, ACTION_UNITS.index(1)].tolist() == [1.0, 0.0]
    assert np.isnan(values[0, ACTION_UNITS.index(12)]) and values[1, ACTION_UNITS.index(12)] == 1.0
    others = [j for j, a in enumerate(ACTION_UNITS) if a not in (1, 12)]
    assert np.isnan(values[:, others]).all(), "an AU the dataset does not code is missing, never 0"
    assert au_matrix({43: np.array([1.0])}, 1, (43,))[0, -1] == 1.0


def test_priors_are_reindexed_with_zero_rows_and_columns_for_extras():
    tasks = (expression_task(("contempt",)), au_task((14,)))
    priors = affect_priors(tasks)
    assert set(priors) == {"domain", "affwild2"}
    assert priors["domain"].shape == (8, 18)
    assert np.array_equal(priors["domain"][:7, :17], affect_domain_prior())
    assert np.array_equal(priors["affwild2"][:7, :17], affect_affwild2_prior())
    assert not priors["domain"][7].any() and not priors["domain"][:, 17].any()
    assert affect_priors((expression_task(),)) == {}, "no priors without both tasks"


def test_affect_augmentations_are_ones_the_loader_knows():
    assert set(AUGMENTATIONS) <= set(LOADER_AUGMENTATIONS)
    with pytest.raises(ValueError, match="augmentation must be one of"):
        DBS.get("rafdb")(augmentation="mixmax")


def test_emotionet_score_is_the_mean_of_mean_f1_and_mean_accuracy():
    assert METRIC_HIGHER_IS_BETTER["f1_acc_avg"] is True
    spec = au_task(primary="f1_acc_avg")
    target = np.zeros((4, 17))
    mask = np.zeros((4, 17), dtype=bool)
    mask[:, 0] = mask[:, 1] = True
    target[:, 0] = [1, 1, 0, 0]
    target[:, 1] = [1, 0, 0, 0]
    logits = np.full((4, 17), -1.0)
    logits[:, 0] = [1, -1, -1, -1]  # AU1: tp 1, fn 1 -> F1 2/3, accuracy 3/4
    logits[:, 1] = [1, 1, -1, -1]   # AU2: tp 1, fp 1 -> F1 2/3, accuracy 3/4
    values = task_metrics(spec, logits, target, mask)
    assert values["f1_mean"] == pytest.approx(2 / 3) and values["accuracy_mean"] == pytest.approx(3 / 4)
    assert values["f1_acc_avg"] == pytest.approx((2 / 3 + 3 / 4) / 2)
