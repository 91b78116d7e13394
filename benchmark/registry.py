"""One small registry for methods and dbs: decorator for in-repo entries, entry points for plugins.

Third-party entries are *listed* from ``importlib.metadata`` without importing them and are
loaded on first lookup, as lm-evaluation-harness and timm do for their registries.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class RegistryError(KeyError):
    """An unknown or duplicate registry name; the message says what exists."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """One registry row: the name, where it comes from, and a one-line description."""

    name: str
    source: str  # "builtin" or "plugin:<distribution>"
    description: str


class Registry(Generic[T]):
    """Maps a name to a class; names are the CLI values and the names stored with results.

    Args:
        kind: what the entries are ("method", "db"), used in messages.
        group: the ``importlib.metadata`` entry-point group plugins declare.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._classes: dict[str, T] = {}
        self._plugins: dict[str, importlib.metadata.EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator for in-repo entries; a duplicate name is an error."""

        def decorate(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: already registered by "
                    f"{_qualname(self._classes[name])}; pick another name for {_qualname(cls)}"
                )
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorate

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._plugins is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for ep in importlib.metadata.entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise RegistryError(
                        f"duplicate {self.kind} plugin name {ep.name!r} in entry-point group "
                        f"{self.group!r}: {found[ep.name].value} and {ep.value}"
                    )
                found[ep.name] = ep
            self._plugins = found
        return self._plugins

    def names(self) -> list[str]:
        """Every name, built-in and plugin, sorted."""
        return sorted(set(self._classes) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The class registered as ``name``; plugins are imported here, on first use."""
        if name in self._classes:
            return self._classes[name]
        ep = self._entry_points().get(name)
        if ep is None:
            raise RegistryError(self._unknown_message(name))
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must say which one
            raise RegistryError(
                f"{self.kind} plugin {name!r} ({ep.value}) failed to import: {exc!r}"
            ) from exc
        if not isinstance(cls, type):
            raise RegistryError(f"{self.kind} plugin {name!r} ({ep.value}) is not a class")
        cls.name = name
        self._classes[name] = cls
        return cls

    def entries(self) -> list[Entry]:
        """Name, source and description of every entry, without importing a plugin not yet loaded:
        its description is its distribution's summary (the docstring once it is loaded)."""
        rows = []
        for name in self.names():
            ep = self._entry_points().get(name)
            if name in self._classes:
                source = "builtin" if ep is None else _plugin_source(ep)
                description = first_line(self._classes[name].__doc__)
            else:
                source = _plugin_source(ep)
                summary = ep.dist.metadata.get("Summary") if ep is not None and ep.dist is not None else None
                description = f"{summary or ep.value} (plugin, loaded on first use)"
            rows.append(Entry(name, source, description))
        return rows

    def _unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names) or '(none)'}."


def first_line(doc: str | None) -> str:
    """The first non-empty line of a docstring."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def _plugin_source(ep: importlib.metadata.EntryPoint | None) -> str:
    dist = getattr(ep, "dist", None)
    return f"plugin:{dist.name}" if dist is not None else "plugin"
