"""Relatedness p(attribute | class): built-in affect priors, the empirical estimator, CSV files, sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.relatedness import RelatednessError, estimate, load_csv, save_csv
from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS, affect_affwild2_prior, affect_domain_prior
from datasets.synthetic import SyntheticDb
from methods.dmsca import resolve_relatedness


def test_affect_priors_in_the_canonical_space():
    domain, affwild2 = affect_domain_prior(), affect_affwild2_prior()
    assert domain.shape == affwild2.shape == (7, 17)
    row = dict(zip(ACTION_UNITS, domain[EXPRESSIONS.index("sadness")]))
    assert {a: v for a, v in row.items() if v} == {1: 0.6, 4: 1.0, 6: 0.5, 11: 0.26, 15: 1.0, 17: 0.67}
    assert affwild2[EXPRESSIONS.index("disgust"), ACTION_UNITS.index(10)] == 0.85
    assert not domain[0].any() and not affwild2[0].any(), "neutral has no row"
    assert set(np.flatnonzero(domain.any(axis=0))) == set(range(17)), "the 17 AUs are the union of the table"


def test_estimator_counts_co_annotated_images_only():
    # 6 images, 2 classes, 2 attributes. Image 4 has no class label, image 5 no attribute labels,
    # image 3 lacks attribute 1's label.
    cls = torch.tensor([0, 0, 1, 1, -1, 1])
    cls_mask = cls >= 0
    att = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1], [1, 1], [1, 1]], dtype=torch.float32)
    att_mask = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 0], [1, 1], [0, 0]], dtype=torch.bool)
    r = estimate(cls, cls_mask, att, att_mask, n_classes=3)
    # class 0: images 0, 1 -> attr0 2/2, attr1 1/2; class 1: images 2, 3 -> attr0 1/2, attr1 1/1 (image 3 unlabelled)
    np.testing.assert_allclose(r, [[1.0, 0.5], [0.5, 1.0], [0.0, 0.0]])


def test_estimator_without_co_annotation_names_the_db_and_split():
    with pytest.raises(RelatednessError, match="no co-annotated image .* in db 'x', training split"):
        estimate(torch.tensor([0, -1]), torch.tensor([True, False]), torch.zeros(2, 3),
                 torch.tensor([[False] * 3, [True] * 3]), 2, where="db 'x', training split")


def test_csv_round_trip_reorders_and_rejects_bad_files(tmp_path):
    r = np.array([[0.1, 0.9], [0.5, 0.25]])
    save_csv(r, tmp_path / "r.csv", ("a", "b"), ("x", "y"))
    np.testing.assert_allclose(load_csv(tmp_path / "r.csv", ("b", "a"), ("y", "x")), r[::-1, ::-1])
    with pytest.raises(RelatednessError, match=r"no entry for \['c'\]"):
        load_csv(tmp_path / "r.csv", ("a", "c"), ("x", "y"))
    (tmp_path / "bad.csv").write_text("class,x\na,lots\n")
    with pytest.raises(RelatednessError, match="not a number"):
        load_csv(tmp_path / "bad.csv", ("a",), ("x",))
    (tmp_path / "big.csv").write_text("class,x\na,1.5\n")
    with pytest.raises(RelatednessError, match=r"\[0, 1\]"):
        load_csv(tmp_path / "big.csv", ("a",), ("x",))


def test_synthetic_sources_domain_db_and_csv(tmp_path):
    disjoint = SyntheticDb(n_train=200, n_val=10, n_test=10, image_size=8)
    assert resolve_relatedness(disjoint.problem(), "auto")[0] == "domain"
    with pytest.raises(RelatednessError, match="db 'synthetic', training split"):
        resolve_relatedness(disjoint.problem(), "db")
    co = SyntheticDb(n_train=4000, n_val=10, n_test=10, image_size=8, overlap=1.0, ratio="1:1")
    source, counted = resolve_relatedness(co.problem(), "db")
    assert source == "db" and np.abs(counted - co.relatedness()).max() < 0.08
    classes, attributes = co.problem().pair()
    save_csv(counted, tmp_path / "r.csv", classes.labels, attributes.labels)
    np.testing.assert_allclose(resolve_relatedness(co.problem(), str(tmp_path / "r.csv"))[1], counted, atol=1e-5)
    with pytest.raises(ValueError, match="neither a source"):
        resolve_relatedness(co.problem(), "affwild2")
