"""The mutation tool (docs/mutation.md). mutation/forkserver.py + forkclient.py: a forked test run sees the tree as
it is now (a mutant planted after the server started is what the tests import), reports pytest's exit code, dies
with its client, and the client runs pytest itself when no server listens. mutation/run.py: which mutants are
skipped as no mutation of behaviour (signature markers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

SERVER, CLIENT = REPO / "mutation" / "forkserver.py", REPO / "mutation" / "forkclient.py"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tiny project: a module and its test, in a folder of its own."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "arith.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "test_arith.py").write_text("from arith import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    return root


@pytest.fixture
def server(tree: Path, tmp_path: Path):
    sock = tmp_path / "fs.sock"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, str(SERVER), str(sock), "pytest"], cwd=tree, env=env)
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sock.exists(), "the fork server did not start"
    yield sock
    proc.kill()
    proc.wait()


def client(tree: Path, sock: Path | None, *args: str, timeout: float = 60) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MTLBENCH_FORKSERVER")}
    if sock is not None:
        env["MTLBENCH_FORKSERVER"] = str(sock)
    return subprocess.run([sys.executable, str(CLIENT), "-q", "-p", "no:cacheprovider", *args], cwd=tree, env=env,
                          timeout=timeout, capture_output=True).returncode


def test_each_run_imports_the_tree_as_it_is_now(tree, server):
    assert client(tree, server, "test_arith.py") == 0
    (tree / "arith.py").write_text("def add(a, b):\n    return a - b\n")  # a mutant, planted after the server started
    assert client(tree, server, "test_arith.py") == 1
    (tree / "arith.py").write_text("def add(a, b):\n    return a + b\n")
    assert client(tree, server, "test_arith.py") == 0


def test_a_child_outliving_its_client_is_killed(tree, server, tmp_path):
    marker = tmp_path / "still-running"
    (tree / "test_hang.py").write_text(
        "import time, pathlib\n\ndef test_hang():\n"
        f"    time.sleep(3)\n    pathlib.Path({str(marker)!r}).write_text('x')\n")
    with pytest.raises(subprocess.TimeoutExpired):
        client(tree, server, "test_hang.py", timeout=1)
    time.sleep(4)
    assert not marker.exists(), "the forked run went on after its client was gone"
    assert client(tree, server, "test_arith.py") == 0  # and the server serves the next one


def test_without_a_server_the_client_runs_pytest_itself(tree, tmp_path):
    assert client(tree, tmp_path / "nobody.sock", "test_arith.py") == 0
    (tree / "arith.py").write_text("def add(a, b):\n    return a * b\n")
    assert client(tree, None, "test_arith.py") == 1


def test_the_server_refuses_to_preload_a_project_module(tmp_path):
    run = subprocess.run([sys.executable, str(SERVER), str(tmp_path / "s.sock"), "json", "benchmark.allocator"],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode != 0 and "imported project modules (benchmark, benchmark.allocator)" in run.stderr


def test_only_the_bare_star_and_slash_of_signatures_are_markers(tmp_path):
    from mutation.run import signature_markers

    source = tmp_path / "m.py"
    source.write_text("def f(a, /, b, *, c=2 * 3):\n    return a * b / c\n\n\nx = [1, *range(2)]\n\n\n"
                      "def g(*args, **kw):\n    pass\n\n\nclass K:\n    def h(self, *,\n          d: int = 4 // 2) -> None:\n"
                      "        pass\n")
    assert signature_markers(source) == {(1, 9), (1, 15), (13, 16)}


def _session(path: Path, module: str, lines: dict[str, int]) -> Path:
    """A cosmic-ray session with one work item per ``operator#occurrence`` key, at the given lines."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import MutationSpec, WorkItem

    with use_db(str(path), WorkDB.Mode.create) as db:
        for n, (key, line) in enumerate(lines.items()):
            operator, occurrence = key.rsplit("#", 1)
            db.add_work_item(WorkItem(job_id=f"job{n}", mutations=[MutationSpec(
                module_path=module, operator_name=operator, occurrence=int(occurrence), start_pos=(line, 4),
                end_pos=(line, 9))]))
    return path


def test_the_ledger_carries_outcomes_to_a_fresh_session_of_the_same_source(tmp_path, monkeypatch):
    """mutation/ledger: outcomes recorded on one machine seed a new session (same source and selection only), and
    the report reads a module that has no session here from its ledger."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
    import mutation.run as run

    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "m.py").write_text("x = 1 + 2\n")
    for name, value in (("REPO", repo), ("LEDGER", repo / "mutation" / "ledger"), ("SESSIONS", tmp_path / "sessions")):
        monkeypatch.setattr(run, name, value)
    run.SESSIONS.mkdir()
    module, state = "pkg/m.py", {"source": run.digest(repo / "pkg" / "m.py"), "functions": None}
    lines = {"core/NumberReplacer#0": 1, "core/NumberReplacer#1": 1, "core/ReplaceBinaryOperator_Add_Sub#0": 1,
             "core/AddNot#0": 2}
    first = _session(tmp_path / "first.sqlite", module, lines)
    diff = "--- a\n+++ b\n-x = 1 + 2\n+x = 1 - 2\n"
    with use_db(str(first), WorkDB.Mode.open) as db:
        db.set_result("job0", WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=TestOutcome.KILLED))
        db.set_result("job2", WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=TestOutcome.SURVIVED,
                                         diff=diff))
        db.set_result("job3", WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    run.write_ledger(module, state, run.session_records(first), 12.0)
    ledger = run.read_ledger(module)
    assert {m["key"]: m["outcome"] for m in ledger["mutants"]} == {
        "core/NumberReplacer#0": "killed", "core/NumberReplacer#1": "pending",
        "core/ReplaceBinaryOperator_Add_Sub#0": "survived"}, "skipped mutants are left out, pending ones kept"

    # The report on a machine with no session: from the ledger, survivors with their changed line.
    summary = run.summarise(module, {})
    assert (summary["counts"]["killed"], summary["counts"]["survived"], summary["counts"]["pending"]) == (1, 1, 1)
    assert summary["survivors"][0]["old"] == "x = 1 + 2" and summary["survivors"][0]["new"] == "x = 1 - 2"
    assert summary["wall"] == 12.0 and not summary["counts"]["stale"]

    # A fresh session (job ids differ: cosmic-ray makes new ones) takes the recorded outcomes by operator,
    # occurrence and line; a mutant now on another line is not taken over.
    second = _session(tmp_path / "second.sqlite", module, {**lines, "core/NumberReplacer#0": 3})
    assert run.seed_from_ledger(module, second, state) == 1
    with use_db(str(second), WorkDB.Mode.open) as db:
        results = dict(db.results)
    assert set(results) == {"job2"} and results["job2"].test_outcome == TestOutcome.SURVIVED
    assert results["job2"].diff == diff

    # Another selection or source: nothing is taken over, and the report marks the ledger stale.
    third = _session(tmp_path / "third.sqlite", module, lines)
    assert run.seed_from_ledger(module, third, {**state, "functions": ["f"]}) == 0
    (repo / "pkg" / "m.py").write_text("x = 1 + 3\n")
    assert run.seed_from_ledger(module, third, {**state, "source": run.digest(repo / "pkg" / "m.py")}) == 0
    assert run.summarise(module, {})["counts"]["stale"]


def test_an_unchanged_ledger_is_not_rewritten(tmp_path, monkeypatch):
    """--report-only records every module's ledger again: one whose outcomes and wall time did not change keeps
    its file and its 'written' time, so a report run leaves no diff in the committed ledgers."""
    import mutation.run as run

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setattr(run, "REPO", repo)
    monkeypatch.setattr(run, "LEDGER", repo / "mutation" / "ledger")
    state = {"source": "abc", "functions": None}
    rows = [dict(key="core/AddNot#0", line=3, outcome="killed", diff="")]
    run.write_ledger("pkg/m.py", state, rows, 5.0)
    file = run.ledger_path("pkg/m.py")
    file.write_text(file.read_text().replace(run.read_ledger("pkg/m.py")["head"]["written"], "then"))
    run.write_ledger("pkg/m.py", state, rows, 5.0)
    assert run.read_ledger("pkg/m.py")["head"]["written"] == "then"
    run.write_ledger("pkg/m.py", state, rows, 6.0)
    assert run.read_ledger("pkg/m.py")["head"]["written"] != "then"
    run.write_ledger("pkg/m.py", state, [dict(rows[0], outcome="survived", diff="-a\n+b")], 6.0)
    assert run.read_ledger("pkg/m.py")["mutants"][0]["outcome"] == "survived"


def test_survivors_are_tried_with_the_survivor_tests_too():
    from mutation.run import test_command
    module = {"path": "m.py", "tests": ["tests/quick.py"], "survivor-tests": ["tests/slow.py"]}
    assert test_command(module).endswith(" tests/quick.py")
    assert test_command(module, True).endswith(" tests/quick.py tests/slow.py")
    assert test_command({"path": "m.py", "tests": ["tests/quick.py"]}, True).endswith(" tests/quick.py")


def test_every_test_file_named_in_modules_toml_exists():
    from mutation.run import load_modules
    _, modules = load_modules()
    named = {f for m in modules for f in [*m["tests"], *m.get("survivor-tests", [])]}
    assert named and not sorted(f for f in named if not (REPO / f).is_file())
    assert all((REPO / m["path"]).is_file() for m in modules)
