"""A small hand-made results store for the report tests: RunRecords built directly, no training.

db ``toy`` (fixed splits, seeds 0-2) holds every layout's methods; db ``cvtoy`` is cross-validated
(folds 0-2, seed 0). Values are chosen so that differences and Δm can be worked out by hand:

- single_task        classes acc .60 .62 .64, f1 .50 .52 .54; attributes f1 .80 .80 .83, acc .90 .91 .92
- no_coupling        classes acc .55 .58 .58 (worse), f1 .52 .53 .55; attributes f1 .82 .83 .85, acc .90 .92 .93
- dmsca (domain)     everything better; dmsca (db) only seeds 0 and 1
- fixed_weights      a plugin; its seed 3 has no single-task run
- adashare           a policy-search run (poor values, hidden) and the retraining run linking it
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from results import Metric, RunRecord

CLASSES = {"accuracy": True, "f1_macro": False}  # metric -> primary
ATTRIBUTES = {"f1_mean": True, "accuracy_mean": False}


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def record(method: str, seed: int, values: dict[str, tuple[float, float]], *, db: str = "toy", fold: int | None = None,
           options: dict[str, Any] | None = None, epochs: int = 2, links: dict[str, Any] | None = None,
           history: list[dict[str, Any]] | None = None, db_options: dict[str, Any] | None = None) -> RunRecord:
    """A completed run; ``values`` maps a task (``classes``/``attributes``) to its two test metrics in
    the order of :data:`CLASSES` / :data:`ATTRIBUTES`."""
    config = {"method": method, "db": db, "backbone": "tiny", "seed": seed, "epochs": epochs, "batch_size": 8,
              "lr": 0.001, "image_size": 16, "augmentation": "none", "label_smoothing": 0.0, "fold": fold,
              "pretrained": None, "method_options": dict(options or {}), "db_options": db_options or {"size": 10}}
    protocol = _digest({k: v for k, v in config.items() if k not in ("method", "method_options")})
    metrics = []
    for task, pair in values.items():
        names = CLASSES if task == "classes" else ATTRIBUTES
        metrics += [Metric("test", task, name, value, True, primary) for (name, primary), value in
                    zip(names.items(), pair)]
    return RunRecord(run_id=_digest(config), protocol_id=protocol, status="completed", method=method, db=db,
                     backbone="tiny", seed=seed, fold=fold, config=config, started_at=f"2024-01-01T00:00:{seed:02d}",
                     best_epoch=1, history=history or [], links=links or {}, metrics=metrics)


def single_tasks(seed: int, classes: tuple[float, float], attributes: tuple[float, float], **kw: Any) -> list[RunRecord]:
    return [record("single_task", seed, {"classes": classes}, options={"task": "classes"}, **kw),
            record("single_task", seed, {"attributes": attributes}, options={"task": "attributes"}, **kw)]


def training_history(seed: int, coupling: bool = False) -> list[dict[str, Any]]:
    """Three epochs of logged training terms (the chosen one, epoch 1, in the middle): classes 2.0 → 1.0 + seed/10,
    attributes 0.5 → 0.2; with ``coupling`` also coupling/dm 4.0 → 3.0 - seed."""
    def terms(epoch: int) -> dict[str, float]:
        out = {"classes": [2.0, 1.0 + seed / 10, 0.5][epoch], "attributes": [0.5, 0.2, 0.1][epoch]}
        return out | ({"coupling/dm": [4.0, 3.0 - seed, 2.0][epoch]} if coupling else {})
    return [{"epoch": e, "train_loss": terms(e)} for e in range(3)]


def toy_records(histories: bool = False) -> list[RunRecord]:
    """Every run of the hand-made store; with ``histories``, toy's no_coupling and dmsca (domain) runs log
    :func:`training_history` (the losses layout's input)."""
    runs = []
    st = {0: ((.60, .50), (.80, .90)), 1: ((.62, .52), (.80, .91)), 2: ((.64, .54), (.83, .92))}
    nc = {0: ((.55, .52), (.82, .90)), 1: ((.58, .53), (.83, .92)), 2: ((.58, .55), (.85, .93))}
    for seed in (0, 1, 2):
        runs += single_tasks(seed, *st[seed])
        runs.append(record("no_coupling", seed, dict(zip(("classes", "attributes"), nc[seed])),
                           history=training_history(seed) if histories else None))
        runs.append(record("dmsca", seed, {"classes": (.66 + seed / 100, .57), "attributes": (.86, .94)},
                           options={"relatedness": "domain", "lambda_dm": 1.0},
                           history=training_history(seed, coupling=True) if histories else None))
        runs.append(record("student_teacher", seed, {"classes": (.61 + seed / 50, .53), "attributes": (.81, .90)}))
    for seed in (0, 1):
        runs.append(record("dmsca", seed, {"classes": (.63, .55), "attributes": (.84, .93)},
                           options={"relatedness": "db", "lambda_dm": 1.0}))
        runs.append(record("fixed_weights", seed, {"classes": (.59, .51), "attributes": (.82, .91)}))
    runs.append(record("fixed_weights", 3, {"classes": (.60, .52), "attributes": (.81, .90)}))
    for method in ("dm_only", "sca_only"):
        runs.append(record(method, 0, {"classes": (.62, .52), "attributes": (.81, .91)},
                           options={"relatedness": "domain"}))
    policy = record("adashare", 0, {"classes": (.10, .10), "attributes": (.10, .10)}, options={"phase": "policy"})
    runs += [policy, record("adashare", 0, {"classes": (.61, .51), "attributes": (.79, .90)},
                            options={"phase": "retrain"}, links={"policy_run": {"run_id": policy.run_id}})]
    for fold in (0, 1, 2):
        runs += single_tasks(0, (.70 + fold / 100, .60), (.50, .70), db="cvtoy", fold=fold)
        runs.append(record("no_coupling", 0, {"classes": (.72, .61), "attributes": (.48 + fold / 100, .69)},
                           db="cvtoy", fold=fold))
        runs.append(record("dmsca", 0, {"classes": (.74, .62), "attributes": (.52, .71)}, db="cvtoy", fold=fold,
                           options={"relatedness": "domain", "lambda_dm": 1.0}))
    return runs
