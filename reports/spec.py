"""The one place that says which stored runs fill which row of which table: change it here.

Rows of the paper's layouts (Kollias, Sharmanska & Zafeiriou, AAAI-24, Tables 2-5) are
``(label, method, option filter)``: a stored run belongs to the row when its method is ``method``
and each filtered hyperparameter equals the given value, or one of a tuple of them (compared as text). Runs of one row that
differ in other hyperparameters become sub-rows, labelled with the options that tell them apart.
A method not named here (a plugin, a new baseline) still appears in the negative-transfer table
and in Table 5, as an extra row under its registry name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RowSpec = tuple[str, str, dict[str, Any]]

#: The single-task reference method and the hyperparameter naming its task.
SINGLE_TASK, TASK_OPTION = "single_task", "task"

#: Rows of each paper layout, top to bottom.
LAYOUT_ROWS: dict[str, tuple[RowSpec, ...]] = {
    "table2": (
        ("ST", "single_task", {}),
        ("NC MT", "no_coupling", {}),
        ("S-T NC MT", "student_teacher", {}),
        ("C MT (DM)", "dmsca", {"relatedness": "domain"}),
        # dataset-driven relatedness: counted on the db ("db"), or the paper's table counted on Aff-Wild2
        ("C MT (DB)", "dmsca", {"relatedness": ("db", "affwild2")}),
    ),
    # "*": the row is repeated once per value found in the store (Table 3: per relatedness source)
    "table3": (
        ("NC MT", "no_coupling", {}),
        ("SCA only", "sca_only", {"relatedness": "*"}),
        ("DM only", "dm_only", {"relatedness": "*"}),
        ("DM + SCA", "dmsca", {"relatedness": "*"}),
    ),
    "table4": (
        ("2×ST", "single_task", {}),
        ("MT, no coupling", "no_coupling", {}),
        ("MT, coupling", "dmsca", {}),
    ),
    "table5": (
        ("ST", "single_task", {}),
        ("NC MT", "no_coupling", {}),
        ("S-T NC MT", "student_teacher", {}),
        ("MGDA-UB", "mgda_ub", {}),
        ("GradNorm", "gradnorm", {}),
        ("AdaShare", "adashare", {}),
        ("Task Routing", "task_routing", {}),
        ("C MT (DM+SCA)", "dmsca", {}),
    ),
}

#: Values a "*" row is shown for when the store has none of its runs (Table 3: relatedness sources).
EXPECTED_VALUES: dict[str, tuple[str, ...]] = {"relatedness": ("domain", "db")}
ANY = "*"

#: Hyperparameters the negative-transfer table always shows; others only where they tell rows apart.
SHOWN_OPTIONS: tuple[str, ...] = ("relatedness",)

#: Row order of the negative-transfer table (unknown methods follow, alphabetically).
METHOD_ORDER: tuple[str, ...] = ("single_task", "no_coupling", "student_teacher", "mgda_ub", "gradnorm",
                                 "adashare", "task_routing", "sca_only", "dm_only", "dmsca")

#: Multi-stage protocols: a run named by another run's ``links[role]`` is an earlier stage of that
#: run (AdaShare's policy search before its retraining) and is not a row of its own.
EARLIER_STAGE_LINKS: tuple[str, ...] = ("policy_run",)

#: Hyperparameters that differ run by run without making a different method (ids of linked runs).
RUN_SPECIFIC_OPTIONS: frozenset[str] = frozenset({"policy_run"})

#: Task roles of Tables 4 and 5: a task reports the role's metrics (Acc, F1) if it has them.
#: Class tasks come first, then attribute tasks.
TASK_ROLES: dict[str, tuple[str, str]] = {
    "classes": ("accuracy", "f1_macro"),
    "attributes": ("accuracy_mean", "f1_mean"),
}

#: Short metric names in the paper layouts' headers.
METRIC_LABELS: dict[str, str] = {
    "accuracy": "Acc", "f1_macro": "F1", "mean_class_accuracy": "mAcc", "accuracy_mean": "Acc", "f1_mean": "F1",
}


@dataclass(frozen=True)
class Baseline:
    """The variant the ``versus`` layout compares every other variant with: a method, and the hyperparameters
    (``key=value``, matched like a row's filter: :func:`same_value`) that pick one of its variants in each block."""

    method: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Baseline:
        """``METHOD`` or ``METHOD:KEY=VALUE,...`` with the values kept as text; they are matched as values
        (:func:`same_value`: ``1`` is ``1.0``, ``true`` is ``True``), as every row filter is."""
        name, _, sets = spec.partition(":")
        name = name.strip()
        if not name or not name.isidentifier():
            raise ValueError(f"--versus {spec!r}: expected METHOD or METHOD:KEY=VALUE,... (e.g. dmsca:lambda_dm=1.0)")
        pairs: dict[str, str] = {}
        for pair in (s for s in sets.split(",") if s.strip()):
            key, sep, text = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--versus {spec!r}: {pair.strip()!r} is not of the form key=value")
            if key.strip() in pairs:
                raise ValueError(f"--versus {spec!r}: {key.strip()!r} is given twice; give each option once")
            pairs[key.strip()] = text.strip()
        return cls(name, tuple(pairs.items()))

    @property
    def text(self) -> str:
        """``method`` or ``method:key=value,...``, as ``--versus`` takes it."""
        pairs = ",".join(f"{k}={v}" for k, v in self.options)
        return self.method + (f":{pairs}" if pairs else "")

    @property
    def spec(self) -> RowSpec:
        """The baseline as a row filter, for :func:`matches`."""
        return self.text, self.method, dict(self.options)


def matches(method: str, options: dict[str, Any], spec: RowSpec) -> bool:
    """Whether a run of ``method`` with ``options`` belongs to the row ``spec``."""
    _, wanted, selector = spec
    return method == wanted and all(_accepts(v, options, k) for k, v in selector.items())


def _accepts(value: Any, options: dict[str, Any], key: str) -> bool:
    """A filter value: ANY (the option is present), a tuple of alternatives, or one value (:func:`same_value`)."""
    if value == ANY:
        return key in options
    alternatives = value if isinstance(value, tuple) else (value,)
    return key in options and any(same_value(options[key], v) for v in alternatives)


def same_value(stored: Any, wanted: Any) -> bool:
    """Whether a stored option value is the one a filter names, written either way: as the value or as text
    (``1`` / ``"1"`` / ``1.0`` / ``"1.0"`` are one number; ``True`` / ``"true"`` one bool; other values by text)."""
    return _canonical(stored) == _canonical(wanted)


def _canonical(value: Any) -> str:
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        return repr(float(text))
    except ValueError:
        return text


def task_role(metrics: set[str]) -> str | None:
    """The role (``classes`` / ``attributes``) of a task reporting ``metrics``; None if neither."""
    for role, names in TASK_ROLES.items():
        if any(name in metrics for name in names):
            return role
    return None
