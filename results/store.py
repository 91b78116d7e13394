"""The results store: SQLite (stdlib ``sqlite3``) in WAL mode, one transaction per state change.

A run row is keyed by the hash of its resolved config. A run is written as ``running`` when it
starts and becomes ``completed`` (with its metrics, in one transaction) or ``failed`` at the end,
so a crash or a kill never leaves a half-written run marked done.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from results.records import COMPLETED, FAILED, RUNNING, STATUSES, Metric, RunRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    protocol_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    method TEXT NOT NULL,
    db TEXT NOT NULL,
    backbone TEXT NOT NULL,
    seed INTEGER NOT NULL,
    fold INTEGER,
    config TEXT NOT NULL,
    environment TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    wall_time_s REAL,
    peak_memory_mb REAL,
    best_epoch INTEGER,
    history TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    links TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_by_db ON runs (db, method);
CREATE INDEX IF NOT EXISTS runs_by_protocol ON runs (protocol_id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    split TEXT NOT NULL,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    higher_is_better INTEGER NOT NULL,
    is_primary INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, split, task, metric)
);
"""
_JSON_COLUMNS = ("config", "environment", "history", "links")
_RUN_COLUMNS = ("run_id", "protocol_id", "status", "method", "db", "backbone", "seed", "fold", "config",
                "environment", "started_at", "finished_at", "wall_time_s", "peak_memory_mb", "best_epoch",
                "history", "error", "links")


class StoreError(RuntimeError):
    """The store file cannot be used as it is (newer schema, not an mtlbench store, ...)."""


class ResultsStore:
    """Runs and metrics in one SQLite file; safe for several processes writing at once.

    Args:
        path: the database file; created with its folder if missing.
        timeout: seconds a writer waits for another writer's lock before failing.
        create: False for a command that only reads: a missing file is then a :class:`StoreError`, and
            nothing is created or written (no folder, no file, no schema).
    """

    def __init__(self, path: str | Path, timeout: float = 60.0, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}{missing_store_hint(self.path)}")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            found = self._initialise(timeout) if create else self._schema_version()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"{self.path} is not a usable mtlbench store ({exc}); pass another --workdir") from exc
        if found > SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(f"{self.path} has schema version {found}, newer than this mtlbench "
                             f"({SCHEMA_VERSION}); upgrade mtlbench or use another --workdir")

    def _initialise(self, timeout: float) -> int:
        """Switch to WAL and create the schema; returns the file's schema version.

        Switching the journal mode can answer "locked" at once, without waiting, while another
        process creates the same file, so it is retried until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                with self._transaction() as cur:
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        cur.execute(statement)
                    cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    return int(cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _schema_version(self) -> int:
        """The file's schema version, read without writing anything."""
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError as exc:  # no meta table: some other SQLite file
            raise sqlite3.DatabaseError(f"no mtlbench schema ({exc})") from exc
        if row is None:
            raise sqlite3.DatabaseError("no schema version")
        return int(row[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")  # take the write lock now: concurrent writers queue, never lose rows
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")

    # ----- writing ----------------------------------------------------------------------
    def start_run(self, record: RunRecord) -> None:
        """Write ``record`` as running, replacing any earlier row (and metrics) with its id."""
        record.status = RUNNING
        with self._transaction() as cur:
            cur.execute("DELETE FROM runs WHERE run_id = ?", (record.run_id,))
            self._insert(cur, record)

    def complete_run(self, run_id: str, *, metrics: Iterable[Metric], history: list[dict[str, Any]],
                     best_epoch: int, wall_time_s: float, peak_memory_mb: float | None, finished_at: str,
                     links: dict[str, Any] | None = None) -> None:
        """Mark a running run completed and write its metrics, all in one transaction."""
        with self._transaction() as cur:
            row = cur.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or row["status"] != RUNNING:
                raise StoreError(f"run {run_id} is not running in {self.path} (status: {row and row['status']})")
            cur.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            cur.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(run_id, m.split, m.task, m.metric, m.value, int(m.higher_is_better), int(m.primary))
                             for m in metrics])
            cur.execute("UPDATE runs SET status=?, history=?, best_epoch=?, wall_time_s=?, peak_memory_mb=?, "
                        "finished_at=?, error=NULL, links=COALESCE(?, links) WHERE run_id=?",
                        (COMPLETED, json.dumps(history), best_epoch, wall_time_s, peak_memory_mb, finished_at,
                         json.dumps(links) if links is not None else None, run_id))

    def fail_run(self, run_id: str, error: str, *, history: list[dict[str, Any]] | None = None,
                 wall_time_s: float | None = None, finished_at: str | None = None) -> None:
        """Mark a running run failed with the reason; its partial history is kept for diagnosis."""
        with self._transaction() as cur:
            row = cur.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or row["status"] != RUNNING:
                raise StoreError(f"run {run_id} is not running in {self.path} (status: {row and row['status']})")
            cur.execute("UPDATE runs SET status=?, error=?, history=COALESCE(?, history), wall_time_s=?, "
                        "finished_at=? WHERE run_id=?",
                        (FAILED, error, json.dumps(history) if history is not None else None, wall_time_s,
                         finished_at, run_id))

    def put(self, record: RunRecord, *, replace: bool = False) -> bool:
        """Insert a whole record (import); an existing completed run is kept unless ``replace``.

        Returns whether the record was written.
        """
        with self._transaction() as cur:
            return self._put(cur, record, replace)

    def _put(self, cur: sqlite3.Cursor, record: RunRecord, replace: bool) -> bool:
        row = cur.execute("SELECT status FROM runs WHERE run_id = ?", (record.run_id,)).fetchone()
        if row is not None and row["status"] == COMPLETED and not replace:
            return False
        cur.execute("DELETE FROM runs WHERE run_id = ?", (record.run_id,))
        self._insert(cur, record)
        cur.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(record.run_id, m.split, m.task, m.metric, m.value, int(m.higher_is_better),
                          int(m.primary)) for m in record.metrics])
        return True

    def delete(self, run_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def _insert(self, cur: sqlite3.Cursor, record: RunRecord) -> None:
        values = record.to_json()
        row = [json.dumps(values[c]) if c in _JSON_COLUMNS else values[c] for c in _RUN_COLUMNS]
        cur.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})", row)

    # ----- reading ----------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        """The run with id ``run_id``, or None."""
        rows = self._select("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(self, *, db: str | None = None, method: str | None = None, status: str | None = None,
             protocol_id: str | None = None) -> list[RunRecord]:
        """Runs matching every given filter, oldest first."""
        clauses, args = [], []
        for column, value in (("db", db), ("method", method), ("status", status), ("protocol_id", protocol_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._select(where + " ORDER BY started_at, run_id", tuple(args))

    def _select(self, where: str, args: tuple) -> list[RunRecord]:
        rows = self._conn.execute(f"SELECT * FROM runs {where}", args).fetchall()
        records = []
        for row in rows:
            data = {c: (json.loads(row[c]) if c in _JSON_COLUMNS else row[c]) for c in _RUN_COLUMNS}
            metrics = self._conn.execute(
                "SELECT split, task, metric, value, higher_is_better, is_primary FROM metrics WHERE run_id = ? "
                "ORDER BY split, task, metric", (row["run_id"],)).fetchall()
            # SQLite stores a NaN float as NULL; read it back as the NaN it was
            data["metrics"] = [Metric(m[0], m[1], m[2], float("nan") if m[3] is None else m[3], bool(m[4]),
                                      bool(m[5])) for m in metrics]
            records.append(RunRecord(**data))
        return records

    # ----- JSON lines ---------------------------------------------------------------------
    def export_jsonl(self, out: TextIO, records: Iterable[RunRecord] | None = None) -> int:
        """Write runs (default: all) as one JSON object per line; returns how many."""
        count = 0
        for record in self.runs() if records is None else records:
            out.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
            count += 1
        return count

    def import_jsonl(self, lines: Iterable[str], *, replace: bool = False) -> tuple[int, int]:
        """Merge runs from JSON lines; returns (written, kept because already completed here).

        Every line is parsed and checked before anything is written, so a bad file changes nothing.
        """
        records = read_jsonl(lines)
        try:
            with self._transaction() as cur:  # all or nothing
                written = sum(self._put(cur, r, replace) for r in records)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a record breaks the store's schema ({exc}); nothing was imported") from exc
        return written, len(records) - written


def missing_store_hint(path: Path) -> str:
    """What to do about a store that is not there: the folders nearby that hold one, or how one is made."""
    parent, here = path.parent, Path.cwd()
    near = sorted({p.parent.resolve() for base in (here, parent.parent) if base.is_dir()
                   for p in base.glob(f"*/{path.name}")} - {parent.resolve()})
    shown = [str(p.relative_to(here)) if p.is_relative_to(here) else str(p) for p in near[:5]]
    if shown:
        return f"; stores found nearby: {', '.join(shown)} (pass one with --workdir)"
    return f" (--workdir {parent} holds none); 'run' or 'sweep' with --workdir {parent} creates one"


def read_jsonl(lines: Iterable[str], source: str = "") -> list[RunRecord]:
    """Run records from JSON lines (``export``'s format), every line checked; a bad line is a
    :class:`StoreError` naming it (and ``source``, a file name, when given)."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = RunRecord.from_json(json.loads(line))
            if record.status not in STATUSES:
                raise KeyError(f"status {record.status!r} is not one of {STATUSES}")
            records.append(record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            where = f"{source} line {number}" if source else f"line {number}"
            raise StoreError(f"{where} is not an mtlbench run record ({exc}); nothing was imported") from exc
    return records
