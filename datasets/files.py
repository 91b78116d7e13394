"""Helpers for file-based dbs: locating the data root, naming missing files, reading lists, seeded splits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class MissingDataError(FileNotFoundError):
    """A db's data root or some of its files are missing; the message lists what was expected where."""


class CorruptDataError(ValueError):
    """Some of a db's files exist but cannot be read (an empty or truncated image, a label file that does
    not parse or has the wrong shape); the message names each file and what is wrong with it."""


#: How many offending files an error lists by name (the rest are counted).
MAX_LISTED = 10


def listing(head: str, items: Sequence[str], fix: str = "", limit: int = MAX_LISTED) -> str:
    """``head: item; fix`` on one line for one item, else ``head:`` and up to ``limit`` items, one a line."""
    if len(items) == 1:
        return f"{head}: {items[0]}" + (f"; {fix}" if fix else "")
    shown = "".join(f"\n  {item}" for item in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{head}:{shown}{more}" + (f"\n{fix[0].upper()}{fix[1:]}." if fix else "")


def locate_root(db: str, data_root: str | None, env_var: str, expected: Sequence[str]) -> Path:
    """The data root: ``data_root``, else ``$env_var``; neither given is an error listing the layout.

    Args:
        db: the db's registry name (for messages).
        data_root: the ``--data-root`` value, or None.
        env_var: the per-db environment variable read when ``data_root`` is None.
        expected: paths, relative to the root, the db reads (shown in the error).
    """
    root = data_root or os.environ.get(env_var)
    if not root:
        listing = "\n".join(f"  DIR/{p}" for p in expected)
        raise MissingDataError(f"db {db!r} reads files from a data root: pass --data-root DIR or set {env_var}=DIR, "
                               f"where DIR holds:\n{listing}")
    return Path(root).expanduser()


def require(db: str, root: Path, relative: Sequence[str], env_var: str) -> None:
    """Raise :class:`MissingDataError` listing every path of ``relative`` (under ``root``) that does not exist."""
    missing = [p for p in relative if not (root / p).exists()]
    if not missing:
        return
    lines = "\n".join(f"  {root / p}{'  (missing)' if p in missing else ''}" for p in relative)
    where = "" if root.is_dir() else f" (the folder {root} itself does not exist)"
    raise MissingDataError(f"db {db!r}: {len(missing)} expected file(s) missing under {root}{where}; it reads:\n"
                           f"{lines}\nPoint --data-root (or {env_var}) at the folder that holds them.")


def first_existing(db: str, folder: Path, names: Sequence[str], what: str, hint: str) -> Path:
    """The first of ``names`` that is a file under ``folder``; otherwise an error listing every candidate."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise MissingDataError(f"db {db!r}: no {what} under {folder}; looked for\n"
                           + "\n".join(f"  {folder / n}" for n in names) + f"\n{hint}")


def missing_files_error(db: str, root: Path, missing: Sequence[str], total: int, env_var: str) -> MissingDataError:
    """The error for image files listed by the annotations but absent on disk (the first 10 named)."""
    shown = "\n".join(f"  {root / p}" for p in missing[:10])
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    return MissingDataError(f"db {db!r}: {len(missing)} of {total} image files named by the annotations are missing "
                            f"under {root}:\n{shown}{more}\nRestore them, or point --data-root (or {env_var}) at a "
                            f"complete copy.")


def read_columns(path: Path, min_fields: int) -> list[list[str]]:
    """Whitespace-separated lines of ``path`` (blank lines skipped); a line with too few fields is an error."""
    rows = []
    with path.open() as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise ValueError(f"{path}, line {number}: expected at least {min_fields} fields, got {line.strip()!r}")
            rows.append(fields)
    return rows


def allocate(n: int, fractions: Sequence[float], rng: np.random.Generator | None = None,
             carry: np.ndarray | None = None, every_part: bool = True) -> list[int]:
    """Split ``n`` items into parts of the given fractions: largest remainders, then one item per part if n allows.

    ``allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]``, ``allocate(3, ...) == [1, 1, 1]``, ``allocate(2, ...) == [2, 0, 0]``.

    Args:
        n: items to split. fractions: the parts' shares.
        rng: breaks equal remainders at random (else the earlier part wins).
        carry: (k,) what each part is owed from earlier strata, added to its remainder, so that rounding
            over many strata keeps the totals within one item of the shares.
        every_part: give each part with a share at least one item when ``n`` allows.
    """
    ideal = np.asarray(fractions, dtype=float) / float(sum(fractions)) * n
    counts = np.floor(ideal).astype(int)
    owed = np.round(ideal - counts + (0.0 if carry is None else carry), 9)  # equal claims must compare equal
    tie = rng.random(len(counts)) if rng is not None else -np.arange(len(counts))
    order = np.lexsort((-tie, -owed))
    counts[order[: n - counts.sum()]] += 1
    if every_part and n >= len(counts):  # every part with a share gets at least one item when there are enough
        for part in np.flatnonzero((counts == 0) & (ideal > 0)):
            counts[int(np.argmax(counts))] -= 1
            counts[part] += 1
    return counts.tolist()


def stratified_parts(strata: np.ndarray, fractions: Sequence[float], rng: np.random.Generator,
                     every_part: bool = False) -> np.ndarray:
    """Assign each item a part index so that every stratum is split in ``fractions`` (seeded shuffle within it).

    Rounding is carried from stratum to stratum, so the parts' totals also follow ``fractions``.

    Args:
        strata: (n,) stratum of each item (e.g. its class; -1 for "none" is a stratum of its own).
        fractions: the parts' shares, e.g. (0.8, 0.1, 0.1).
        rng: the generator that shuffles each stratum.
        every_part: put at least one item of each stratum in every part when it has enough (so that,
            e.g., every identity is seen in training, validation and test).
    Returns:
        (n,) int part index in 0..len(fractions)-1.
    """
    shares = np.asarray(fractions, dtype=float) / float(sum(fractions))
    parts, assigned = np.empty(len(strata), dtype=int), np.zeros(len(shares))
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        counts = allocate(len(members), fractions, rng, shares * assigned.sum() - assigned, every_part)
        bounds = np.cumsum([0, *counts])
        for part in range(len(fractions)):
            parts[members[bounds[part]: bounds[part + 1]]] = part
        assigned += counts
    return parts


def parse_fractions(text: str, parts: int, name: str) -> tuple[float, ...]:
    """``"0.8:0.1:0.1"`` -> (0.8, 0.1, 0.1); the wrong count, a negative part or a zero sum is an error."""
    try:
        values = tuple(float(x) for x in str(text).split(":"))
    except ValueError:
        values = ()
    if len(values) != parts or min(values) < 0 or sum(values) <= 0:
        raise ValueError(f"{name} must be {parts} non-negative numbers joined by ':' (e.g. '0.8:0.1:0.1'), got {text!r}")
    return values
