"""benchmark/allocator.py: glibc's malloc thresholds, the opt-out, and the CLI setting them at start-up.

That the numbers do not change is checked by ``benchmarks/cpu_speed.py`` (weights bit-identical after
training steps under both settings); the speed is a benchmark's business, not a test's.
"""

from __future__ import annotations

import platform

import pytest

import benchmark.cli as cli
from benchmark import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_thresholds_are_set_on_glibc() -> None:
    assert allocator.keep_freed_memory({}) is True


@pytest.mark.parametrize("value", ["system", "SYSTEM", " system "])
def test_system_keeps_the_defaults_and_calls_nothing(value, monkeypatch) -> None:
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called despite the opt-out"))
    assert allocator.keep_freed_memory({allocator.ENV_VAR: value}) is False


def test_another_c_library_is_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called on a non-glibc system"))
    assert allocator.keep_freed_memory({}) is False


def test_a_refused_setting_reports_false(monkeypatch) -> None:
    class Libc:
        class mallopt:  # noqa: N801 - stands in for the C function
            argtypes = restype = None

            def __new__(cls, parameter: int, value: int) -> int:
                return 0 if parameter == allocator.SETTINGS["M_TOP_PAD"][0] else 1

    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda path: Libc)
    assert allocator.keep_freed_memory({}) is False


def test_the_cli_sets_them_before_any_command(monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.main(["ls", "methods"]) == 0
    assert calls == [True]
