"""Experiment files: a TOML grid of methods x dbs x backbones x seeds x folds, read and checked for shape.

:mod:`benchmark.grid` expands a checked file into runs. Every problem in a file is collected and
reported at once, naming the file, the entry and the fix; nothing runs until the whole file is valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from benchmark.amp import PRECISIONS
from benchmark.config import ATTRIBUTE_LOSSES

TOP_KEYS = ("description", "seeds", "folds", "backbones", "preset", "execution", "resources", "methods", "dbs")
METHOD_KEYS = ("name", "options", "folds", "backbones")  # folds, backbones: run this entry on those only
DB_KEYS = ("name", "options", "data_root", "folds", "seeds", "preset", "optional")
BACKBONE_KEYS = ("name", "pretrained", "preset")  # preset: overrides for this backbone (over the dbs' and the file's)
PRESET_KEYS = {"epochs": int, "batch_size": int, "lr": float, "image_size": int, "precision": str,
               "attribute_loss": str, "patience": int}
#: The allowed values of a preset's string keys (each part of a run's identity).
PRESET_CHOICES = {"precision": PRECISIONS, "attribute_loss": ATTRIBUTE_LOSSES}
RESOURCE_KEYS = ("cpus", "gpus")
#: ``[execution]``: how every run of the file executes (``benchmark/train.py``'s TrainOptions); never part of a
#: run's identity, stored with each run (``environment.execution``).
EXECUTION_KEYS = ("channels_last",)


class ExperimentError(ValueError):
    """An experiment file that cannot be run as it is; the message lists every problem found."""


@dataclass(frozen=True)
class Entry:
    """A ``methods``, ``dbs`` or ``backbones`` entry, with its place in the file for messages."""

    label: str
    name: str
    fields: dict[str, Any]


@dataclass
class Experiment:
    """A parsed experiment file (checked for shape, not yet expanded)."""

    path: Path
    description: str
    seeds: list[int]
    folds: Any
    preset: dict[str, Any]
    resources: dict[str, float]
    methods: list[Entry]
    dbs: list[Entry]
    backbones: list[Entry]
    execution: dict[str, bool] = field(default_factory=dict)


class Problems:
    """Collects the problems of one file, each once, and raises them together."""

    def __init__(self, path: Path) -> None:
        self.path, self.items = path, []

    def add(self, where: str, message: str) -> None:
        text = f"{where}: {message}" if where else message
        if text not in self.items:
            self.items.append(text)

    def raise_if_any(self) -> None:
        if self.items:
            listing = "\n".join("  - " + item.replace("\n", "\n    ") for item in self.items)
            raise ExperimentError(f"{self.path}: {len(self.items)} problem(s), nothing was run:\n{listing}")


def load(path: str | Path) -> Experiment:
    """Read and shape-check an experiment file; raises :class:`ExperimentError` listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"{path}: no such experiment file; see experiments/*.toml for examples")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML ({exc}); fix the syntax at that place") from None
    problems = Problems(path)
    unknown_keys(problems, "top level", data, TOP_KEYS)
    preset = check_preset(problems, "preset", data.get("preset", {}))
    experiment = Experiment(
        path=path, description=str(data.get("description", "")),
        seeds=check_seeds(problems, "seeds", data.get("seeds", [0])), folds=data.get("folds"), preset=preset,
        resources=check_resources(problems, data.get("resources", {})),
        execution=check_execution(problems, data.get("execution", {})),
        methods=entries(problems, "methods", data.get("methods"), METHOD_KEYS, required=True),
        dbs=entries(problems, "dbs", data.get("dbs"), DB_KEYS, required=True),
        backbones=entries(problems, "backbones", data.get("backbones", ["smallcnn"]), BACKBONE_KEYS, required=True))
    for db in experiment.dbs:
        check_db_fields(problems, db)
    for method in experiment.methods:
        check_method_filters(problems, method, [b.name for b in experiment.backbones])
    for backbone in experiment.backbones:
        backbone.fields["preset"] = check_preset(problems, f"{backbone.label} preset", backbone.fields.get("preset", {}))
    problems.raise_if_any()
    return experiment


def check_method_filters(problems: Problems, entry: Entry, backbones: list[str]) -> None:
    """A method entry's ``folds`` (fold numbers) and ``backbones`` (names among the file's) restrict where it runs."""
    folds = entry.fields.get("folds")
    if folds is not None and not (isinstance(folds, list) and folds and all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in folds)):
        problems.add(entry.label, f"folds must be a non-empty list of fold numbers, e.g. folds = [0, 1, 2, 3]; "
                                  f"got {folds!r} (leave it out to run on every fold of each db)")
    chosen = entry.fields.get("backbones")
    if chosen is not None:
        if not (isinstance(chosen, list) and chosen and all(isinstance(b, str) for b in chosen)):
            problems.add(entry.label, f"backbones must be a non-empty list of backbone names, got {chosen!r}")
        else:
            for name in chosen:
                if name not in backbones:
                    problems.add(entry.label, f"backbone {name!r} is not in the file's backbones "
                                              f"({', '.join(backbones)}); add it there or fix the name")


def unknown_keys(problems: Problems, where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    """Note every key of ``table`` not in ``known``, with the closest known one."""
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            if key in TOP_KEYS and where != "top level":
                hint = f"a top-level {key!r} must come before the first [table] or [[table]] in TOML; "
            problems.add(where, f"unknown key {key!r}; {hint}the keys are {', '.join(known)}")


def entries(problems: Problems, key: str, value: Any, known: tuple[str, ...], required: bool) -> list[Entry]:
    """``[[key]]`` tables or plain names, as :class:`Entry` objects labelled ``key[i] 'name'``."""
    if value is None or value == []:
        if required:
            problems.add(key, f"the grid needs at least one; add e.g. {key} = [\"NAME\"] or [[{key}]] tables")
        return []
    if not isinstance(value, list):
        problems.add(key, f"must be a list of names or of [[{key}]] tables, got {value!r}")
        return []
    out = []
    for i, item in enumerate(value):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.add(f"{key}[{i}]", f"must be a name or a table with a string 'name', got {item!r}")
            continue
        label = f"{key}[{i}] {item['name']!r}"
        unknown_keys(problems, label, item, known)
        if not isinstance(item.get("options", {}), dict):
            problems.add(label, "options must be a table, e.g. options = { key = value }")
        out.append(Entry(label, item["name"], item))
    return out


def check_seeds(problems: Problems, where: str, value: Any) -> list[int]:
    """A seed or a non-empty list of seeds >= 0, duplicates dropped; [] (problem noted) otherwise."""
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                           for s in seeds):
        problems.add(where, f"seeds must be a non-empty list of integers >= 0, e.g. [0, 1, 2]; got {value!r}")
        return []
    return list(dict.fromkeys(seeds))


def check_preset(problems: Problems, where: str, preset: Any) -> dict[str, Any]:
    """Overrides of the dbs' presets: epochs, batch_size, lr, image_size, patience (positive numbers), precision, attribute_loss."""
    if not isinstance(preset, dict):
        problems.add(where, "must be a table, e.g. preset = { epochs = 2, image_size = 32 }")
        return {}
    unknown_keys(problems, where, preset, tuple(PRESET_KEYS))
    out: dict[str, Any] = {}
    for key, kind in PRESET_KEYS.items():
        if key not in preset:
            continue
        value = preset[key]
        if kind is str:
            if value not in PRESET_CHOICES[key]:
                problems.add(where, f"{key} must be one of {', '.join(PRESET_CHOICES[key])} (part of a run's "
                                    f"identity{', so not auto' if key == 'precision' else ''}), got {value!r}")
            else:
                out[key] = value
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not ok or (kind is int and not isinstance(value, int)):
                problems.add(where, f"{key} must be a positive {kind.__name__}, got {value!r}")
            else:
                out[key] = kind(value)
    return out


def check_resources(problems: Problems, resources: Any) -> dict[str, float]:
    """What one run asks of a Ray cluster: ``cpus`` (default 1) and ``gpus`` (default: 1 when the cluster has any)."""
    return check_flat_table(problems, "resources", resources, RESOURCE_KEYS, "resources = { cpus = 4, gpus = 1 }",
                            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, float,
                            "a number >= 0 (fractions share a device)")


def check_execution(problems: Problems, execution: Any) -> dict[str, bool]:
    """How the file's runs execute: ``channels_last`` (bool). Not part of any run's identity (like ``run
    --channels-last``): it changes the order of floating-point operations, not what a run is."""
    return check_flat_table(problems, "execution", execution, EXECUTION_KEYS, "execution = { channels_last = true }",
                            lambda v: isinstance(v, bool), bool, "true or false")


def check_flat_table(problems: Problems, name: str, table: Any, keys: tuple[str, ...], example: str,
                     valid: Callable[[Any], bool], convert: Callable[[Any], Any], expected: str) -> dict[str, Any]:
    """A table of scalar settings: every key known, every value ``valid`` (then ``convert``-ed); problems name
    the key, what it must be and what it is."""
    if not isinstance(table, dict):
        problems.add(name, f"must be a table, e.g. {example}")
        return {}
    unknown_keys(problems, name, table, keys)
    out = {}
    for key in keys:
        if key in table:
            if valid(table[key]):
                out[key] = convert(table[key])
            else:
                problems.add(name, f"{key} must be {expected}, got {table[key]!r}")
    return out


def check_db_fields(problems: Problems, db: Entry) -> None:
    """The shape of a ``[[dbs]]`` entry's own fields (its name, options and folds are checked on expansion)."""
    root = db.fields.get("data_root")
    if root is not None and not isinstance(root, str):
        problems.add(db.label, f"data_root must be a path string, got {root!r}")
    if not isinstance(db.fields.get("optional", False), bool):
        problems.add(db.label, "optional must be true or false")
    if "seeds" in db.fields:
        check_seeds(problems, db.label, db.fields["seeds"])
    check_preset(problems, f"{db.label} preset", db.fields.get("preset", {}))


def option_pairs(problems: Problems, entry: Entry) -> list[str]:
    """TOML option values as the ``key=value`` strings ``run --set`` takes, so parsing is the command line's."""
    pairs = []
    for key, value in entry.fields.get("options", {}).items():
        if isinstance(value, bool):
            pairs.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, (int, float, str)):
            pairs.append(f"{key}={value}")
        else:
            problems.add(entry.label, f"option {key} = {value!r} must be a string, number or boolean")
    return pairs
