"""benchmark/allocator.py: glibc's malloc thresholds, the opt-out, and the CLI setting them at start-up.

That the numbers do not change is checked by ``benchmarks/cpu_speed.py`` (weights bit-identical after
training steps under both settings); the speed is a benchmark's business, not a test's.
"""

from __future__ import annotations

import dataclasses
import platform

import pytest

import benchmark.cli as cli
from benchmark import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_thresholds_are_set_on_glibc() -> None:
    assert allocator.keep_freed_memory({}) is True


@pytest.mark.parametrize("value", ["system", "SYSTEM", " system ", "off", "0", "false", "no"])
def test_the_opt_out_keeps_the_defaults_and_calls_nothing(value, monkeypatch) -> None:
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called despite the opt-out"))
    assert allocator.keep_freed_memory({allocator.ENV_VAR: value}) is False


def test_another_c_library_is_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called on a non-glibc system"))
    assert allocator.keep_freed_memory({}) is False


def fake_glibc(monkeypatch, accepts) -> list[tuple[int, int]]:
    """glibc stood in for by a ``mallopt`` that accepts what ``accepts(parameter, value)`` says; the calls."""
    calls: list[tuple[int, int]] = []

    class Libc:
        class mallopt:  # noqa: N801 - stands in for the C function
            argtypes = restype = None

            def __new__(cls, parameter: int, value: int) -> int:
                calls.append((parameter, value))
                return int(accepts(parameter, value))

    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda path: Libc)
    return calls


def test_a_refused_setting_reports_false_and_the_others_are_still_set(monkeypatch) -> None:
    top_pad = allocator.SETTINGS["M_TOP_PAD"][0]
    calls = fake_glibc(monkeypatch, lambda parameter, value: parameter != top_pad)
    assert allocator.keep_freed_memory({}) is False
    assert [p for p, _ in calls] == [p for p, _ in allocator.SETTINGS.values()]  # each tried, none skipped


def test_an_older_glibc_gets_the_largest_mmap_threshold_it_takes(monkeypatch) -> None:
    mmap = allocator.SETTINGS["M_MMAP_THRESHOLD"][0]
    calls = fake_glibc(monkeypatch, lambda p, v: p != mmap or v <= allocator.MMAP_THRESHOLD_FALLBACK)
    assert allocator.keep_freed_memory({}) is True
    assert [v for p, v in calls if p == mmap] == [2**31 - 1, allocator.MMAP_THRESHOLD_FALLBACK]


def test_the_cli_sets_them_before_any_command(monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("allocator"))
    commands = tuple(dataclasses.replace(c, handle=lambda args: calls.append("ls") or 0) if c.name == "ls" else c
                     for c in cli.COMMANDS)
    monkeypatch.setattr(cli, "COMMANDS", commands)
    assert cli.main(["ls", "methods"]) == 0
    assert calls == ["allocator", "ls"]


def test_worker_processes_of_a_sweep_set_them_too(monkeypatch) -> None:
    from benchmark import sweep_backends

    calls = []
    monkeypatch.setattr(sweep_backends, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(sweep_backends.torch, "set_num_threads", lambda n: None)
    sweep_backends.worker_init(1, 30)
    assert calls == [True]
