"""Mutation testing of the modules the benchmark's numbers rest on (cosmic-ray; see docs/mutation.md).

    .venv/bin/python -m mutation.run                      # every module in mutation/modules.toml, in order
    .venv/bin/python -m mutation.run benchmark/metrics.py # only these modules
    .venv/bin/python -m mutation.run --budget 600 --until 02:40   # per-module / overall wall-clock limits
    .venv/bin/python -m mutation.run --report-only        # rewrite the report (sessions here, else ledgers)

cosmic-ray mutates files in place. It never touches this checkout: every run copies the working tree
(tracked + untracked, not ignored files) to mutation/.work/tree and mutates the copy there; the test
command imports the copy (cwd and PYTHONPATH first), and each module's source is re-copied from the
checkout after its run, so a run killed mid-mutant leaves nothing behind. Sessions (SQLite) live in
mutation/.work/sessions and are resumable: a second run only executes the mutants not yet done. A
session is rebuilt when its module's source changed. The report goes to mutation/report.md.

Sessions live on one machine; the outcomes outlive it in mutation/ledger/ (committed, one JSON file per module:
the source digest, the mutant selection, each mutant's outcome, the survivors' diffs and the wall time). A new
session whose module source and selection equal its ledger's starts from the ledger's outcomes, so a fresh
clone continues where the last machine stopped, and the report renders modules that have no session here from
their ledgers.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import fnmatch
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tokenize
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "mutation"
WORK = HERE / ".work"
TREE = WORK / "tree"
SESSIONS = WORK / "sessions"
MODULES = HERE / "modules.toml"
EQUIVALENT = HERE / "equivalent.toml"
REPORT = HERE / "report.md"
LEDGER = HERE / "ledger"


def slug(path: str) -> str:
    return path.replace("/", "__").removesuffix(".py")


def load_modules() -> tuple[dict, list[dict]]:
    spec = tomllib.loads(MODULES.read_text())
    defaults = spec.get("defaults", {})
    return defaults, spec["module"]


def copy_tree() -> None:
    """Mirror the checkout's working tree (not ignored files) into TREE."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    wanted = {name for name in listed if name and not name.startswith("mutation/")}
    TREE.mkdir(parents=True, exist_ok=True)
    for name in sorted(wanted):
        source, target = REPO / name, TREE / name
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)


def restore(path: str) -> None:
    shutil.copy2(REPO / path, TREE / path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def function_ranges(path: Path, patterns: list[str]) -> list[tuple[int, int]]:
    """Line ranges of the functions whose qualified name (Class.method) matches one of `patterns`."""
    ranges: list[tuple[int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef) and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    ranges.append((first, child.end_lineno))
                else:
                    visit(child, name + ".")

    visit(ast.parse(path.read_text()), "")
    return ranges


def annotation_ranges(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of the annotations of a module under ``from __future__ import annotations``.

    There annotations are never evaluated (dataclasses read them as strings), so a mutant inside one
    (``float | None`` -> ``float & None``) is equivalent by construction; empty for other modules.
    """
    tree = ast.parse(path.read_text())
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                 and any(a.name == "annotations" for a in node.names) for node in tree.body)
    if not future:
        return []
    found = []
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            notes.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            notes.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        # ast columns are 0-based, cosmic-ray's (parso's) too; lines are 1-based in both
        found += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in notes]
    return found


def signature_markers(path: Path) -> set[tuple[int, int]]:
    """(line, column) of each bare ``*`` or ``/`` in a ``def``'s parameter list (the keyword-only and positional-only
    markers). cosmic-ray's binary-operator mutants take them for ``*`` and ``/`` operators: ``def f(self, *, a)`` ->
    ``def f(self, /, a)`` is no arithmetic, and callers passing options by keyword cannot tell the two apart."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    found: set[tuple[int, int]] = set()
    depth, in_def = 0, False
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME and tok.string == "def" and depth == 0:
            in_def = True
        elif in_def and tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif in_def and tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            in_def = depth > 0
        elif in_def and depth == 1 and tok.type == tokenize.OP and tok.string in ("*", "/"):
            after = next((t for t in tokens[i + 1:] if t.type not in (tokenize.NL, tokenize.COMMENT)), None)
            if after is not None and after.string in (",", ")"):
                found.add(tok.start)
    return found


def session_items(db: Any) -> Iterator[tuple[Any, Any, Any]]:
    """Each work item of an open cosmic-ray session with its (single) mutation and its result (None: pending)."""
    results = dict(db.results)
    for item in db.work_items:
        yield item, item.mutations[0], results.get(item.job_id)


def session_records(session: Path) -> list[dict]:
    """Every mutant of a session that is not skipped: its key (operator#occurrence), line, outcome
    (killed / survived / incompetent / pending) and, for a survivor, its diff."""
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    records = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, mutation, result in session_items(db):
            if result is not None and result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result is None:
                outcome = "pending"
            elif result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
                outcome = "incompetent"  # the mutant cannot even be applied/imported
            elif result.test_outcome == TestOutcome.KILLED:
                outcome = "killed"
            else:
                outcome = "survived"
            records.append(dict(key=f"{mutation.operator_name}#{mutation.occurrence}", line=mutation.start_pos[0],
                                operator=mutation.operator_name, occurrence=mutation.occurrence, outcome=outcome,
                                diff=(result.diff or "") if outcome == "survived" else "", job=item.job_id))
    return records


def ledger_path(path: str) -> Path:
    return LEDGER / f"{slug(path)}.json"


def read_ledger(path: str) -> dict | None:
    file = ledger_path(path)
    return json.loads(file.read_text()) if file.exists() else None


def write_ledger(path: str, state: dict, records: list[dict], wall: float) -> None:
    """The module's outcomes as a small committed JSON file (one mutant per line, so a diff shows what changed);
    left as it is, timestamp included, when the outcomes and the wall time are those it already holds."""
    rows = [json.dumps({k: r[k] for k in ("key", "line", "outcome", "diff") if r[k] != ""})
            for r in sorted(records, key=lambda r: (r["line"], r["key"]))]
    earlier = read_ledger(path)
    if earlier is not None and earlier["head"]["state"] == state and earlier["head"].get("wall_s") == round(wall, 1) \
            and [json.dumps(m) for m in earlier["mutants"]] == rows:
        return
    LEDGER.mkdir(parents=True, exist_ok=True)
    head = json.dumps(dict(module=path, state=state, wall_s=round(wall, 1),
                           written=f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"))
    body = ",\n  ".join(rows)
    ledger_path(path).write_text(f'{{"head": {head},\n "mutants": [\n  {body}\n]}}\n')


def seed_from_ledger(path: str, session: Path, state: dict) -> int:
    """Give a fresh session the outcomes its module's ledger recorded for the same source and selection.
    A mutant is matched by operator, occurrence and line; returns how many outcomes were taken over."""
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import TestOutcome, WorkResult, WorkerOutcome

    ledger = read_ledger(path)
    if ledger is None or ledger["head"]["state"] != state:
        return 0
    recorded = {m["key"]: m for m in ledger["mutants"] if m["outcome"] != "pending"}
    outcomes = {"killed": (WorkerOutcome.NORMAL, TestOutcome.KILLED),
                "survived": (WorkerOutcome.NORMAL, TestOutcome.SURVIVED),
                "incompetent": (WorkerOutcome.NORMAL, TestOutcome.INCOMPETENT)}
    seeded = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            mutation = item.mutations[0]
            entry = recorded.get(f"{mutation.operator_name}#{mutation.occurrence}")
            if entry is None or entry["line"] != mutation.start_pos[0]:
                continue
            worker, test = outcomes[entry["outcome"]]
            db.set_result(item.job_id, WorkResult(worker_outcome=worker, test_outcome=test,
                                                  diff=entry.get("diff"),
                                                  output=f"recorded in {ledger_path(path).relative_to(REPO)}"))
            seeded += 1
    return seeded


def skip_annotations(path: str, session: Path) -> int:
    """Mark the mutants inside annotations (see annotation_ranges) and of the ``*`` / ``/`` markers of signatures
    (see signature_markers) as skipped; returns how many."""
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import WorkResult, WorkerOutcome

    ranges = annotation_ranges(REPO / path)
    markers = signature_markers(REPO / path)
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, mutation, result in session_items(db):
            if result is not None and result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if any(a <= tuple(mutation.start_pos) and tuple(mutation.end_pos) <= b for a, b in ranges):
                db.set_result(item.job_id, WorkResult(output="in an annotation (never evaluated)",
                                                      worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
            elif tuple(mutation.start_pos) in markers and mutation.operator_name.startswith("core/ReplaceBinaryOperator"):
                db.set_result(item.job_id, WorkResult(output="a signature's * or / marker, not an operator",
                                                      worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
    return skipped


def cosmic_ray(*args: str, timeout: float | None = None) -> int:
    """Run the cosmic-ray CLI in TREE; on timeout interrupt it (SIGINT, then SIGKILL)."""
    command = [sys.executable, "-m", "cosmic_ray.cli", *args]
    proc = subprocess.Popen(command, cwd=TREE, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9


#: The fork server's socket (mutation/forkserver.py). The test command is always its client, which runs a plain
#: ``python -m pytest`` itself when nothing listens there (``--no-forkserver`` starts no server).
FORKSERVER = WORK / "forkserver.sock"
#: One thread per test process (the machine is shared); the fork server takes them before importing torch.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_command(module: dict, survivors: bool = False) -> str:
    """The pytest command a mutant of ``module`` runs: its ``tests``, and for a survivor also its ``survivor-tests``
    (slower files that exercise the module too: a mutant the quick list misses is tried against them before it
    counts as surviving)."""
    python = shlex.quote(sys.executable)
    files = [*module["tests"], *(module.get("survivor-tests", []) if survivors else [])]
    tests = " ".join(shlex.quote(t) for t in files)
    extra = " ".join(shlex.quote(a) for a in module.get("pytest-args", []))
    # env: the copy first on the import path (also for subprocesses the tests start), and the thread counts.
    env = f"env PYTHONPATH={shlex.quote(str(TREE))} " + " ".join(f"{k}={v}" for k, v in THREADS.items())
    client = f"MTLBENCH_FORKSERVER={shlex.quote(str(FORKSERVER))} {python} {shlex.quote(str(HERE / 'forkclient.py'))}"
    return f"{env} {client} -x -q -p no:cacheprovider --no-header -o addopts= {extra} {tests}"


@contextmanager
def fork_server(enabled: bool) -> Iterator[None]:
    """Run mutation/forkserver.py for the duration (heavy imports once, a forked child per test run)."""
    if not enabled:
        yield
        return
    FORKSERVER.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | THREADS  # nothing of the project on the path
    proc = subprocess.Popen([sys.executable, str(HERE / "forkserver.py"), str(FORKSERVER)], cwd=TREE, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not FORKSERVER.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"[mutation] fork server {'ready' if FORKSERVER.exists() else 'did not start: plain pytest runs'}",
              flush=True)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        FORKSERVER.unlink(missing_ok=True)


def prepare(module: dict, defaults: dict) -> Path | None:
    """Write the module's cosmic-ray config and (re)build its session when needed. Returns the session path."""
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import WorkResult, WorkerOutcome

    path = module["path"]
    SESSIONS.mkdir(parents=True, exist_ok=True)
    config, session, meta = (SESSIONS / f"{slug(path)}.toml", SESSIONS / f"{slug(path)}.sqlite",
                             SESSIONS / f"{slug(path)}.json")
    timeout = float(module.get("timeout", defaults.get("timeout", 60)))
    excluded = module.get("exclude-operators", defaults.get("exclude-operators", []))
    allowed = module.get("operators", defaults.get("operators", ["*"]))
    lines = ["[cosmic-ray]", f"module-path = {json.dumps(path)}", f"timeout = {timeout}",
             "excluded-modules = []", f"test-command = {json.dumps(test_command(module))}", "",
             "[cosmic-ray.distributor]", 'name = "local"', ""]
    config.write_text("\n".join(lines))
    state = {"source": digest(REPO / path), "functions": module.get("functions"), "excluded": excluded,
             "allowed": allowed}
    if session.exists() and meta.exists() and json.loads(meta.read_text()) == state:
        skip_annotations(path, session)
        seed_from_ledger(path, session, state)  # pending here, done on another machine
        return session
    session.unlink(missing_ok=True)
    if cosmic_ray("init", str(config), str(session)) != 0:
        print(f"[mutation] {path}: cosmic-ray init failed", flush=True)
        return None
    ranges = function_ranges(TREE / path, module["functions"]) if module.get("functions") else None
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            mutation = item.mutations[0]
            outside = ranges is not None and not any(a <= mutation.start_pos[0] <= b for a, b in ranges)
            name = mutation.operator_name.removeprefix("core/")
            filtered = (any(fnmatch.fnmatchcase(name, p) for p in excluded)
                        or not any(fnmatch.fnmatchcase(name, p) for p in allowed))
            if outside or filtered:
                db.set_result(item.job_id, WorkResult(output="outside the selection",
                                                      worker_outcome=WorkerOutcome.SKIPPED))
    meta.write_text(json.dumps(state))
    skip_annotations(path, session)
    seeded = seed_from_ledger(path, session, state)
    if seeded:
        print(f"[mutation] {path}: {seeded} outcomes taken from {ledger_path(path).relative_to(REPO)}", flush=True)
    return session


def baseline(module: dict) -> bool:
    started = time.monotonic()
    run = subprocess.run(shlex.split(test_command(module)), cwd=TREE, capture_output=True, text=True)
    print(f"[mutation] {module['path']}: baseline {'ok' if run.returncode == 0 else 'FAILED'} "
          f"in {time.monotonic() - started:.1f}s", flush=True)
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-2000:], flush=True)
    return run.returncode == 0


def recheck(module: dict, session: Path, budget: float | None, started: float) -> None:
    """Run the surviving mutants again with the module's current tests and its ``survivor-tests``; record the new
    outcome."""
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import TestOutcome

    timeout = float(module.get("timeout", load_modules()[0].get("timeout", 60)))
    here = os.getcwd()
    os.chdir(TREE)
    try:
        with use_db(str(session), WorkDB.Mode.open) as db:
            items = {item.job_id: item for item in db.work_items}
            equivalent = load_equivalent().get(module["path"], [])
            survivors = [job for job, result in db.results if result.test_outcome == TestOutcome.SURVIVED
                         and not is_equivalent(equivalent, items[job].mutations[0].operator_name,
                                               *changed_lines(result.diff or ""))]
            for job in survivors:
                if budget is not None and time.monotonic() - started > budget:
                    break
                result = mutate_and_test(mutations=items[job].mutations, test_command=test_command(module, True),
                                         timeout=timeout)
                db.set_result(job, result)
                print(f"[mutation] recheck {module['path']} {items[job].mutations[0].operator_name} "
                      f"line {items[job].mutations[0].start_pos[0]}: {result.test_outcome}", flush=True)
    finally:
        os.chdir(here)
        restore(module["path"])


# --- the report ---------------------------------------------------------------------------------------------

def changed_lines(diff: str) -> tuple[str, str]:
    old = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    new = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return " / ".join(old), " / ".join(new)


def load_equivalent() -> dict[str, list[dict]]:
    if not EQUIVALENT.exists():
        return {}
    out: dict[str, list[dict]] = {}
    for entry in tomllib.loads(EQUIVALENT.read_text()).get("mutant", []):
        out.setdefault(entry["module"], []).append(entry)
    return out


def squash(text: str) -> str:
    """The text without whitespace: cosmic-ray's rewriting may add a space before a replaced number."""
    return "".join(text.split())


def is_equivalent(entries: list[dict], operator: str, old: str, new: str) -> dict | None:
    for entry in entries:
        if entry["operator"] == operator and squash(entry["old"]) == squash(old) and squash(entry["new"]) == squash(new):
            return entry
    return None


def summarise(path: str, equivalent: dict[str, list[dict]]) -> dict | None:
    """Counts, survivors and equivalents of a module: from its session on this machine, else from its ledger.
    Stale: the module's source changed since those outcomes were recorded."""
    session, meta = SESSIONS / f"{slug(path)}.sqlite", SESSIONS / f"{slug(path)}.json"
    ledger = read_ledger(path)
    if session.exists():
        records = session_records(session)
        source = json.loads(meta.read_text()).get("source") if meta.exists() else None
    elif ledger is not None:
        records = []
        for m in ledger["mutants"]:
            operator, _, occurrence = m["key"].rpartition("#")
            records.append(dict(m, operator=operator, occurrence=int(occurrence), diff=m.get("diff", ""), job=None))
        source = ledger["head"]["state"]["source"]
    else:
        return None
    counts = dict(total=len(records), killed=0, survived=0, equivalent=0, incompetent=0, pending=0)
    survivors, equivalents = [], []
    for r in records:
        if r["outcome"] != "survived":
            counts[r["outcome"]] += 1
            continue
        old, new = changed_lines(r["diff"])
        row = dict(line=r["line"], operator=r["operator"], occurrence=r["occurrence"], old=old, new=new, job=r["job"])
        entry = is_equivalent(equivalent.get(path, []), r["operator"], old, new)
        if entry:
            counts["equivalent"] += 1
            equivalents.append(dict(row, why=entry.get("why", "")))
        else:
            counts["survived"] += 1
            survivors.append(row)
    done = counts["killed"] + counts["survived"]
    counts["score"] = counts["killed"] / done if done else None
    counts["stale"] = source != digest(REPO / path)
    return dict(path=path, counts=counts, survivors=sorted(survivors, key=lambda r: r["line"]),
                equivalents=sorted(equivalents, key=lambda r: r["line"]),
                wall=ledger["head"].get("wall_s") if ledger else None)


def record(path: str, elapsed: float) -> None:
    """Write the module's ledger from its session, adding ``elapsed`` to the wall time recorded for the same
    source and selection (a changed module starts counting again)."""
    session, meta = SESSIONS / f"{slug(path)}.sqlite", SESSIONS / f"{slug(path)}.json"
    if not (session.exists() and meta.exists()):
        return
    state = json.loads(meta.read_text())
    ledger = read_ledger(path)
    before = ledger["head"].get("wall_s", 0.0) if ledger and ledger["head"]["state"] == state else 0.0
    write_ledger(path, state, session_records(session), before + elapsed)


def write_report(modules: list[dict]) -> str:
    equivalent = load_equivalent()
    rows, details = [], []
    totals = dict(killed=0, survived=0)
    for module in modules:
        summary = summarise(module["path"], equivalent)
        if summary is None:
            rows.append(f"| {module['path']} | not run | | | | | | |")
            continue
        c = summary["counts"]
        totals["killed"] += c["killed"]
        totals["survived"] += c["survived"]
        score = "–" if c["score"] is None else f"{100 * c['score']:.1f}%"
        wall = summary["wall"]
        rows.append(f"| {module['path']}{' (stale)' if c['stale'] else ''} | {score} | {c['killed']} | "
                    f"{c['survived']} | {c['equivalent']} | {c['incompetent']} | {c['pending']} | "
                    f"{'' if wall is None else f'{wall:.0f}s'} |")
        for kind, items in (("Surviving", summary["survivors"]), ("Equivalent (mutation/equivalent.toml)",
                                                                   summary["equivalents"])):
            if items:
                details.append(f"\n### {module['path']}: {kind.lower()} mutants\n")
                for r in items:
                    why = f" — {r['why']}" if r.get("why") else ""
                    details.append(f"- line {r['line']} `{r['operator']}` #{r['occurrence']}: "
                                   f"`{r['old']}` → `{r['new']}`{why}")
    done = totals["killed"] + totals["survived"]
    overall = f"{100 * totals['killed'] / done:.1f}%" if done else "–"
    text = "\n".join([
        "# Mutation report (cosmic-ray)", "",
        f"Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m mutation.run`. "
        "Score = killed / (killed + surviving non-equivalent); equivalent mutants (mutation/equivalent.toml) "
        "and incompetent ones (cannot be applied or imported) are left out; pending = not run yet.", "",
        "| module | score | killed | survived | equivalent | incompetent | pending | wall (all runs) |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Overall over the modules run: {overall} ({totals['killed']} killed, {totals['survived']} surviving).",
        *details, ""])
    REPORT.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="module paths, run in the order given (default: all in mutation/modules.toml, in its order)")
    parser.add_argument("--budget", type=float, default=None, help="wall-clock seconds per module")
    parser.add_argument("--until", default=None, help="UTC HH:MM after which no module is started or continued")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--recheck", action="store_true",
                        help="run the surviving mutants of the selected modules again (after adding tests)")
    parser.add_argument("--init-only", action="store_true", help="build the sessions and count the mutants")
    parser.add_argument("--no-forkserver", action="store_true",
                        help="start no fork server (mutation/forkserver.py, which imports torch & co once): each "
                             "mutant's test command then runs a fresh python -m pytest")
    args = parser.parse_args(argv)
    defaults, modules = load_modules()
    unknown = set(args.modules) - {m["path"] for m in modules}
    if unknown:
        parser.error(f"not in {MODULES.relative_to(REPO)}: {sorted(unknown)}")
    by_path = {m["path"]: m for m in modules}
    selected = [by_path[path] for path in dict.fromkeys(args.modules)] if args.modules else modules
    if args.report_only:
        for module in selected:
            session = SESSIONS / f"{slug(module['path'])}.sqlite"
            if session.exists():
                skip_annotations(module["path"], session)
                record(module["path"], 0.0)
    else:
        deadline = None
        if args.until:
            now = dt.datetime.now(dt.timezone.utc)
            hh, mm = map(int, args.until.split(":"))
            deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
            if deadline < now:
                deadline += dt.timedelta(days=1)
        copy_tree()
        with fork_server(not args.no_forkserver and not args.init_only):
            for module in selected:
                left = None if deadline is None else (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()
                if left is not None and left < 30:
                    print(f"[mutation] {module['path']}: not started (past --until)", flush=True)
                    continue
                budget = min(x for x in (args.budget, module.get("budget"), left) if x is not None) \
                    if any(x is not None for x in (args.budget, module.get("budget"), left)) else None
                started = time.monotonic()
                if args.init_only:
                    session = prepare(module, defaults)
                    summary = summarise(module["path"], load_equivalent())
                    print(f"[mutation] {module['path']}: {summary['counts']['total'] if summary else '?'} mutants",
                          flush=True)
                    continue
                try:
                    copy_tree()  # the checkout as it is now: tests added or a module edited since the run began
                    if not baseline(module):
                        continue
                    session = prepare(module, defaults)
                    if session is None:
                        continue
                    cfg = SESSIONS / f"{slug(module['path'])}.toml"
                    if args.recheck:
                        recheck(module, session, budget, started)
                    remaining = None if budget is None else max(1.0, budget - (time.monotonic() - started))
                    cosmic_ray("exec", str(cfg), str(session), timeout=remaining)
                    if module.get("survivor-tests") and not args.recheck:  # the quick list's survivors, widened
                        recheck(module, session, budget, started)
                finally:
                    restore(module["path"])  # whatever happened, the copy's source is the checkout's again
                    record(module["path"], time.monotonic() - started)
                summary = summarise(module["path"], load_equivalent())
                c = summary["counts"] if summary else {}
                score = "–" if not c or c["score"] is None else f"{100 * c['score']:.1f}%"
                print(f"[mutation] {module['path']}: score {score} "
                      f"killed {c.get('killed')} survived {c.get('survived')} equivalent {c.get('equivalent')} "
                      f"pending {c.get('pending')} ({time.monotonic() - started:.0f}s)", flush=True)
    print(write_report(modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
