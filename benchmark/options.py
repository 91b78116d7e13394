"""Parse ``--set key=value`` strings against a class's keyword-only ``__init__`` parameters."""

from __future__ import annotations

import difflib
import inspect
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


class OptionError(ValueError):
    """A ``key=value`` override that names no option or does not parse as the option's type."""


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def keyword_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword-only ``__init__`` parameters of ``cls``, by name."""
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Convert ``text`` to ``annotation`` (int, float, bool, str, Literal, X | None)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in {"none", "null"} and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, arg, key)
            except OptionError:
                continue  # the next type of the union may take it
        raise OptionError(f"{key}={text!r}: expected {_type_name(annotation)}")
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise OptionError(f"{key}={text!r}: expected one of {', '.join(map(repr, args))}")
    if annotation is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise OptionError(f"{key}={text!r}: expected a bool (true/false)")
    if annotation in (int, float):
        try:
            value = annotation(text)
        except ValueError:
            raise OptionError(f"{key}={text!r}: expected {annotation.__name__}") from None
        if annotation is float and not math.isfinite(value):  # NaN/inf would only surface as a NaN loss mid-run
            raise OptionError(f"{key}={text!r}: expected a finite float (NaN and inf are not allowed)")
        return value
    if annotation is str or annotation is inspect.Parameter.empty:
        return text
    raise OptionError(f"{key}: options of type {_type_name(annotation)} cannot be set from the command line")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def parse_overrides(cls: type, pairs: Iterable[str], what: str, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``["lr=0.1", ...]`` -> ``{"lr": 0.1}``, checked against ``cls``'s keyword-only options.

    Args:
        cls: the method or db class.
        pairs: ``key=value`` strings.
        what: how to name the class in errors (``"method 'dmsca'"``).
        exclude: options that cannot be set this way.
    """
    params = {n: p for n, p in keyword_parameters(cls).items() if n not in set(exclude)}
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"override {pair!r} is not of the form key=value")
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(f"{n} ({_type_name(hints.get(n, str))})" for n in params) or "none"
            raise OptionError(f"{what} has no option {key!r}.{hint} Its options: {known}.")
        try:
            out[key] = parse_value(text.strip(), hints.get(key, str), key)
        except OptionError as exc:
            raise OptionError(f"{what}: {exc}") from None
    return out


def resolve(cls: type, overrides: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """Every keyword-only option of ``cls``: the defaults updated by ``overrides``."""
    out = {n: p.default for n, p in keyword_parameters(cls).items() if n not in set(exclude)}
    out.update(overrides)
    return out


def changed_options(method_cls: type, options: Mapping[str, Any], sep: str = ", ") -> str:
    """``options`` that differ from ``method_cls``'s defaults, or that it has none for (``single_task``'s task)."""
    defaults = resolve(method_cls, {})
    return sep.join(f"{k}={v}" for k, v in options.items() if defaults.get(k, object()) != v)
