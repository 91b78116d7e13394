"""The Table 2 pairings on fixture trees: one task per image, each side's splits and metric, sampling, dmsca end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.data import make_loader
from datasets.affect_tables import affect_domain_prior
from datasets import DBS
from datasets.affect_pairs import AffectNetEmotioNet
from datasets.files import MissingDataError
from methods.dmsca import DMSCA
from results import ResultsStore
from tests.datasets.affect_fixtures import (abaw4_lsd_tree, affectnet_csv_tree, affwild2_tree, emotionet_tree,
                                            rafdb_tree)
from tests.datasets.fixture_trees import grey

WRITERS = {"affectnet": affectnet_csv_tree, "rafdb": rafdb_tree, "emotionet": emotionet_tree,
           "abaw4_lsd": abaw4_lsd_tree, "affwild2": affwild2_tree}
PAIRS = {"affectnet+emotionet": ("affectnet", "emotionet", "accuracy", "f1_acc_avg"),
         "rafdb+emotionet": ("rafdb", "emotionet", "mean_class_accuracy", "f1_acc_avg"),
         "abaw4_lsd+affwild2": ("abaw4_lsd", "affwild2", "f1_macro", "f1_mean")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("affect")
    for name, write in WRITERS.items():
        write(root / name)
    return root


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_each_image_carries_one_side_and_each_side_keeps_its_splits(data_root, name):
    side_a, side_b, primary_a, primary_b = PAIRS[name]
    db = DBS.get(name)(data_root=str(data_root), cache_dir="off")
    expression, au = db.tasks()
    assert (expression.name, expression.primary, au.name, au.primary) == ("expression", primary_a, "au", primary_b)
    labels = db.labels()
    has_expression = labels.masks["expression"].numpy()
    has_au = labels.masks["au"].numpy().any(axis=1)
    assert not (has_expression & has_au).any() and (has_expression | has_au).all(), "one task per image, none empty"
    a = DBS.get(side_a)(data_root=str(data_root / side_a), cache_dir="off")
    b = DBS.get(side_b)(data_root=str(data_root / side_b), cache_dir="off")
    if side_b == "affwild2":
        b.read_tasks = ("au",)  # the AU side follows the AU task's official partition (v4 trains here)
    for split in ("train", "val", "test"):
        joined = db.split(split, None, 8)
        n_expression = int(joined.masks["expression"].sum())
        assert n_expression == int(a.split(split, None, 8).masks["expression"].sum()), f"{side_a} {split} as is"
        own_b = b.split(split, None, 8)
        assert len(joined) - n_expression == int(own_b.masks["au"].any(dim=1).sum()), f"{side_b} {split}, AU-annotated"
    priors = db.priors()
    assert set(priors) == {"domain", "affwild2"} and db.binary_priors == {"domain"}
    assert np.array_equal(priors["domain"], affect_domain_prior())


def test_joined_images_decode_from_their_own_dataset(data_root):
    db = AffectNetEmotioNet(data_root=str(data_root), cache_dir="off")
    test = db.split("test", None, 8)
    files = db.labels().source.files
    for i in range(len(test)):
        name = files[int(test.rows[i])]
        if name.startswith("emotionet/images/m"):
            level = grey(int(name[len("emotionet/images/m"):-4]))
        else:
            level = grey(int(name.split("_")[-1][:-4]))
        assert test[i]["input"].mean().item() == pytest.approx(level / 127.5 - 1, abs=0.03), name


def test_abaw4_lsd_pairing_drops_affwild2_expressions(data_root):
    db = DBS.get("abaw4_lsd+affwild2")(data_root=str(data_root), cache_dir="off")
    labels = db.labels()
    affwild2 = [i for i, f in enumerate(labels.source.files) if f.startswith("affwild2/")]
    assert affwild2 and not labels.masks["expression"][affwild2].any(), "Aff-Wild2 images carry only AUs here"
    assert all(labels.masks["au"][i].any() for i in affwild2), "AU-less Aff-Wild2 frames are left out"


def test_balanced_sampling_draws_each_dataset_equally(data_root):
    db = AffectNetEmotioNet(data_root=str(data_root), cache_dir="off", sampling="balanced")
    train = db.split("train", None, 8)
    side = (~train.masks["expression"]).long()
    weights = train.sample_weights
    assert torch.bincount(side).tolist()[0] != torch.bincount(side).tolist()[1]
    assert float(weights[side == 0].sum()) == pytest.approx(1.0) and float(weights[side == 1].sum()) == pytest.approx(1.0)
    loader = make_loader(train, 16, train=True, generator=torch.Generator().manual_seed(0), workers=0)
    drawn = torch.cat([b.masks["expression"] for _ in range(20) for b in loader])
    assert len(drawn) == 20 * len(train) and 0.4 < float(drawn.float().mean()) < 0.6
    assert AffectNetEmotioNet(data_root=str(data_root), cache_dir="off").split("train", None, 8).sample_weights is None


def test_data_root_convention_and_errors(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLBENCH_AFFECT_ROOT", str(data_root))
    assert len(AffectNetEmotioNet(cache_dir="off").labels()) > 0, "MTLBENCH_AFFECT_ROOT/<db>/ is read"
    (tmp_path / "affectnet").mkdir()
    with pytest.raises(MissingDataError, match="reads affectnet from DATA_ROOT/affectnet/"):
        AffectNetEmotioNet(data_root=str(tmp_path), cache_dir="off").labels()


def test_dmsca_binarises_the_du_et_al_prior_for_distribution_matching(data_root):
    problem = AffectNetEmotioNet(data_root=str(data_root), cache_dir="off").problem()
    method = DMSCA()
    method.build(torch.nn.Identity(), torch.nn.ModuleDict(), problem)
    domain = torch.as_tensor(affect_domain_prior(), dtype=torch.float32)
    assert torch.equal(method.r_dm, (domain > 0).float()), "q(AU2) = p(surprise) + p(fear), as the paper's DM"
    assert torch.equal(method.w_sca, domain), "SCA keeps the graded weights"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dmsca", "student_teacher"])
def test_runs_end_to_end_on_a_fixture_pairing(data_root, tmp_path, monkeypatch, method):
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    args = ["run", "--db", "affectnet+emotionet", "--data-root", str(data_root), "--image-size", "16", "--epochs", "1",
            "--batch-size", "8", "--workdir", str(tmp_path / "w"), "--quiet", "--method", method]
    assert main(args) == 0
    run = next(r for r in ResultsStore(tmp_path / "w" / "results.sqlite").runs() if r.method == method)
    assert run.status == "completed" and run.config["augmentation"] == "mixaugment" and run.config["image_size"] == 16
    metrics = run.metric_values("test")
    assert {("expression", "accuracy"), ("au", "f1_acc_avg")} <= set(metrics)
    if method == "dmsca":
        assert run.method_options["relatedness"] == "domain"
        assert {"coupling/dm", "coupling/sca"} <= set(run.history[0]["train_loss"])
