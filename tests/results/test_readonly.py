"""Reading never writes: a store opened to read is never created or changed; a failure's cause is one line."""

from __future__ import annotations

import sqlite3

import pytest

from results import ResultsStore, StoreError
from results.records import error_cause


def test_reading_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no results store at .*typo/results.sqlite"):
        ResultsStore(tmp_path / "some" / "typo" / "results.sqlite", create=False)
    assert not (tmp_path / "some").exists()


def test_reading_an_existing_store_leaves_its_bytes_alone(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    before = path.read_bytes()
    with ResultsStore(path, create=False) as store:
        assert store.runs() == []
    assert path.read_bytes() == before


def test_reading_another_sqlite_file_is_a_clear_error_and_adds_no_table(tmp_path):
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="is not a usable mtlbench store"):
        ResultsStore(path, create=False)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["other"]


def test_the_cause_of_a_failure_is_its_first_line():
    stored = "ValueError: bad thing\n\nTraceback (most recent call last):\n  File \"x\", line 1\nValueError: bad thing"
    assert error_cause(stored) == "ValueError: bad thing"
    assert error_cause("interrupted") == "interrupted"
    assert error_cause("X: " + "y" * 300).endswith("...") and len(error_cause("X: " + "y" * 300)) == 160


def test_the_cause_of_a_dataloader_worker_failure_is_the_worker_exception():
    worker = ("OSError: Caught OSError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
              "  File \"images.py\", line 9, in decode\nOSError: image file is truncated\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "Traceback (most recent call last):\n  File \"images.py\", line 12, in decode_row\n"
              "datasets.files.CorruptDataError: /d/000005.jpg: truncated image data")
    assert error_cause(worker) == "datasets.files.CorruptDataError: /d/000005.jpg: truncated image data"
    appended = worker + "\n\nTraceback (most recent call last):\n  File \"runner.py\"\nOSError: something else"
    assert error_cause(appended) == "datasets.files.CorruptDataError: /d/000005.jpg: truncated image data"
