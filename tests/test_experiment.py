"""Experiment files: expansion through ``run``'s code path (same run ids), folds, optional dbs, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.experiment import ExperimentError, load
from benchmark.grid import expand
from benchmark.runner import RunRequest, resolve_configs
from tests.conftest import REPO, TINY_DB
from tests.datasets.fixture_trees import cad_tree

TINY = "{ " + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in TINY_DB.items()) + " }"
HEAD = f"""
seeds = [0, 1]
[preset]
epochs = 1
[[dbs]]
name = "synthetic"
options = {TINY}
"""


def write(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def grid(tmp_path: Path, text: str, **kwargs) -> dict[str, list[str]]:
    """run id -> the entries asking for it."""
    return {r.cfg.run_id: r.sources for r in expand(load(write(tmp_path, text)), **kwargs)}


def request_ids(method: str, seeds=(0, 1), method_set=()) -> list[str]:
    """The run ids 'python -m benchmark run' gets for the same request."""
    db_set = [f"{k}={v}" for k, v in TINY_DB.items()]
    return [c.run_id for s in seeds for c in resolve_configs(RunRequest(method=method, db="synthetic", seed=s, epochs=1,
                                                                        db_set=db_set, method_set=method_set))[1]]


def test_expansion_gives_the_run_ids_of_run_and_merges_duplicates(tmp_path):
    runs = grid(tmp_path, """
methods = ["single_task", "dmsca", { name = "dmsca", options = { relatedness = "domain" } },
           { name = "student_teacher", options = { pseudo_weight = 0.5, balance = "separate" } }]
""" + HEAD)
    single, auto = request_ids("single_task"), request_ids("dmsca")
    domain = request_ids("dmsca", method_set=["relatedness=domain"])
    student = request_ids("student_teacher", method_set=["pseudo_weight=0.5", "balance=separate"])
    assert len(single) == 4 and auto == domain  # one run per task and seed; auto resolves to domain here
    assert list(runs) == [*single[:2], auto[0], student[0], *single[2:], auto[1], student[1]]  # seed by seed
    assert runs[auto[0]] == ["methods[1] 'dmsca' x dbs[0] 'synthetic'", "methods[2] 'dmsca' x dbs[0] 'synthetic'"]


def test_typed_toml_values_parse_as_the_command_line_does(tmp_path):
    runs = grid(tmp_path, HEAD.replace("seeds = [0, 1]", "seeds = 0") + """
[[methods]]
name = "student_teacher"
options = { pseudo_weight = 1, include_unannotated = false, temperature = 2 }
""")
    assert list(runs) == request_ids("student_teacher", seeds=[0], method_set=["pseudo_weight=1.0", "temperature=2"])


def test_cross_validated_db_folds_all_and_per_db_overrides(tmp_path):
    root = cad_tree(tmp_path / "data")
    text = f"""
seeds = [0, 1, 2]
[preset]
image_size = 16
[[dbs]]
name = "cad"
data_root = "{root}"
folds = "all"
seeds = [3]
preset = {{ epochs = 1 }}
[[methods]]
name = "no_coupling"
"""
    runs = expand(load(write(tmp_path, text)))
    assert [(r.cfg.fold, r.cfg.seed, r.cfg.epochs, r.cfg.image_size) for r in runs] == [
        (k, 3, 1, 16) for k in range(12)]
    assert runs[0].db.data_root == str(root)
    folds = expand(load(write(tmp_path, text.replace('folds = "all"', "folds = [1, 5]"))))
    assert [r.cfg.fold for r in folds] == [1, 5]


def test_an_optional_db_without_data_is_left_out(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MTLBENCH_CAD_ROOT", raising=False)
    text = HEAD + '[[dbs]]\nname = "cad"\nfolds = "all"\noptional = true\n[[methods]]\nname = "no_coupling"\n'
    runs = expand(load(write(tmp_path, text)))
    assert {r.cfg.db for r in runs} == {"synthetic"} and "dbs[1] 'cad' left out" in caplog.text
    with_data = expand(load(write(tmp_path, text)), data_roots={"cad": str(cad_tree(tmp_path / "data"))})
    assert {r.cfg.db for r in with_data} == {"synthetic", "cad"} and len(with_data) == 2 + 24
    with pytest.raises(ExperimentError, match="dbs\\[1\\] 'cad': .*missing"):  # a wrong root is no missing root
        expand(load(write(tmp_path, text)), data_roots={"cad": str(tmp_path / "nowhere")})


@pytest.mark.parametrize("text, expected", [
    ("seed = [0]\nmethods = ['no_coupling']\n" + HEAD, ["top level: unknown key 'seed'; did you mean 'seeds'?"]),
    ("methods = ['no_couplin']\n" + HEAD, ["methods[0] 'no_couplin'", "Did you mean 'no_coupling'", "ls methods"]),
    ("methods = [{ name = 'dmsca', options = { relatednes = 'db' } }]\n" + HEAD,
     ["methods[0] 'dmsca'", "no option 'relatednes'", "Did you mean relatedness"]),
    ("methods = [{ name = 'dmsca', options = { lambda_dm = 'x' } }]\n" + HEAD,
     ["methods[0] 'dmsca'", "expected float"]),
    ("methods = ['no_coupling']\n" + HEAD.replace("synthetic", "affectnet+emotionet2"),
     ["dbs[0] 'affectnet+emotionet2'", "unknown db", "Did you mean 'affectnet+emotionet'", "ls dbs"]),
    ("methods = ['no_coupling']\n" + HEAD.replace('"synthetic"', '"synthetic"\nfolds = [0]'),
     ["dbs[0] 'synthetic'", "fixed train/val/test splits; remove 'folds'"]),
    ("[[dbs]]\nname = 'cad'\ndata_root = '/x'\n[[methods]]\nname = 'no_coupling'",
     ["dbs[0] 'cad'", 'cross-validated with 12 folds: set folds = "all"']),
    ("[[dbs]]\nname = 'cad'\nfolds = 'all'\ndata_root = 'nowhere'\n[[methods]]\nname = 'no_coupling'",
     ["dbs[0] 'cad'", "missing", "data_root = \"DIR\"", "--data-root cad=DIR"]),
    ("methods = ['no_coupling']\n" + HEAD.replace("epochs = 1", "epochs = 0"),
     ["preset: epochs must be a positive int"]),
    ("backbones = ['resnet5']\nmethods = ['no_coupling']\n" + HEAD,
     ["backbones[0] 'resnet5'", "Did you mean resnet50"]),
    ("methods = [{ name = 'dmsca', options = { relatedness = 'db' } }]\n"
     + HEAD.replace('"1:3"', '"1:3", overlap = 0.0'),
     ["methods[0] 'dmsca' on dbs[0] 'synthetic'", "no co-annotated image", "relatedness=domain"]),
    (HEAD, ["methods: the grid needs at least one"]),
    (HEAD + "methods = ['no_coupling']", ["dbs[0] 'synthetic': unknown key 'methods'", "before the first [table]"]),
    ("methods = ['no_coupling'\n\n" + HEAD, ["not valid TOML"]),
])
def test_validation_names_the_file_the_entry_and_the_fix(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ExperimentError) as error:
        expand(load(path))
    message = str(error.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, message


def test_every_problem_is_reported_at_once_and_nothing_runs(tmp_path, capsys):
    path = write(tmp_path, "methods = ['no_couplin', 'dmsca']\nbackbones = ['nosuchnet']\n"
                 + HEAD.replace("synthetic", "synthetc"))
    assert main(["sweep", str(path), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s), nothing was run" in err
    assert "'synthetc'" in err and "'no_couplin'" in err and "'nosuchnet'" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("table", ["table2", "table3", "table4", "table5", "cpu_small"])
def test_shipped_experiment_files_parse(table):
    experiment = load(REPO / "experiments" / f"{table}.toml")
    assert experiment.methods and experiment.dbs and experiment.seeds


@pytest.mark.parametrize("table", ["table2", "table3", "table4", "table5"])
def test_a_paper_table_without_its_data_fails_clearly_on_dry_run(table, tmp_path, monkeypatch, capsys):
    for name in ("CELEBA", "CUB", "SADD", "CAD", "AFFECT", "AFFECTNET", "RAFDB", "EMOTIONET", "AFFWILD2", "ABAW4_LSD"):
        monkeypatch.delenv(f"MTLBENCH_{name}_ROOT", raising=False)
    assert main(["sweep", str(REPO / "experiments" / f"{table}.toml"), "--dry-run", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for i, db in enumerate(load(REPO / "experiments" / f"{table}.toml").dbs):  # unknown db, or where its data goes
        assert f"dbs[{i}] '{db.name}': " in err and ("unknown db" in err or f"--data-root {db.name}=DIR" in err), err


def test_precision_in_a_preset_is_part_of_the_runs_identity(tmp_path):
    text = "methods = ['no_coupling']\n" + HEAD
    fp32 = expand(load(write(tmp_path, text)))
    bf16 = expand(load(write(tmp_path, text.replace("epochs = 1", 'epochs = 1\nprecision = "bf16"'))))
    assert [r.cfg.precision for r in fp32 + bf16] == ["fp32"] * 2 + ["bf16"] * 2
    assert {r.cfg.run_id for r in fp32}.isdisjoint(r.cfg.run_id for r in bf16)
    with pytest.raises(ExperimentError, match="precision must be one of fp32, bf16, fp16 .*got 'auto'"):
        load(write(tmp_path, text.replace("epochs = 1", 'epochs = 1\nprecision = "auto"')))
