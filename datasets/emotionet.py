"""``emotionet``: EmotioNet action units (Benitez-Quiroz, Srinivasan & Martinez, CVPR 2016), release file formats."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from benchmark.tasks import TaskSpec
from datasets.affect import AffectDb, au_matrix, au_task
from datasets.base import DBS
from datasets.filedb import Labels, attribute_labels
from datasets.files import MissingDataError, first_existing, parse_fractions, stratified_parts

log = logging.getLogger(__name__)

#: The 11 AUs EmotioNet annotates (the canonical 17's other 6 are masked in every image).
AUS = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26)
UNKNOWN = 999
#: Names the manually annotated CSV has had (first found wins; ``manual_csv`` names another).
MANUAL_CSVS = ("EmotioNet_FACS_aws_2020_24600.csv", "EmotioNet_FACS.csv")


def au_number(column: str) -> int | None:
    """``"'AU 1'"``, ``"AU1"``, ``'"AU 12"'`` -> 1, 1, 12; None for other columns."""
    match = re.fullmatch(r"AU(\d+)", re.sub(r"[\s'\"_]", "", str(column)).upper())
    return int(match.group(1)) if match else None


def unquote(url: str) -> str:
    """A URL as the CSV writes it (``'https://...'``, padded) -> the bare URL."""
    return str(url).strip().strip("'\"").strip()


def decode_aus(values: pd.DataFrame, path: Path) -> dict[int, np.ndarray]:
    """AU columns of 1 / 0 / 999 -> {AU: (n,) 1 / 0 / NaN}; any other value is an error naming the file and column."""
    out = {}
    for column in values.columns:
        au = au_number(column) if not isinstance(column, int) else column
        if au not in AUS:
            continue
        raw = pd.to_numeric(values[column].astype(str).str.strip().str.strip("'\""), errors="coerce").to_numpy(float)
        bad = ~np.isin(raw, (0, 1, UNKNOWN))
        if bad.any():
            shown = sorted({str(v) for v in values[column][bad].tolist()})[:5]
            raise ValueError(f"{path}: column {column!r} must hold 1, 0 or {UNKNOWN} (unknown), found {shown}")
        out[au] = np.where(raw == UNKNOWN, np.nan, raw)
    return out


def read_manual(path: Path) -> tuple[list[str], dict[int, np.ndarray]]:
    """The manually annotated CSV: a URL column, then AU columns named like ``'AU 1'`` (quotes and spaces kept)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    url_column = next((c for c in table.columns if re.sub(r"[\s'\"]", "", c).lower() == "url"), table.columns[0])
    aus = decode_aus(table[[c for c in table.columns if au_number(c) is not None]], path)
    if not aus:
        raise ValueError(f"{path}: no AU columns of {AUS} (expected headers like 'AU 1'); columns are {list(table.columns)[:8]}")
    return [unquote(u) for u in table[url_column]], aus


def read_list(path: Path) -> tuple[list[str], dict[int, np.ndarray]]:
    """One tab-separated list of automatic annotations: url, original url, AU1 ... AU60 (no header)."""
    table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if table.shape[1] < 2 + max(AUS):
        raise ValueError(f"{path}: expected tab-separated lines 'url, original url, AU1 ... AU60', "
                         f"found {table.shape[1]} fields")
    values = table.iloc[:, 2:].copy()
    values.columns = range(1, values.shape[1] + 1)  # column k is AU k
    return [unquote(u) for u in table[0]], decode_aus(values, path)


@DBS.register("emotionet")
class EmotioNet(AffectDb):
    """EmotioNet: 11 action units of in-the-wild faces; score = mean of per-AU mean F1 and mean accuracy.

    Benitez-Quiroz, Srinivasan & Martinez, "EmotioNet: An accurate, real-time algorithm for the
    automatic annotation of a million facial expressions in the wild", CVPR 2016; used for AUs in
    Kollias, Sharmanska & Zafeiriou (AAAI-24, Tab. 2). Two file formats: the manually annotated CSV
    (header ``URL, URL orig, 'AU 1', 'AU 2', ...``) and the automatically annotated tab-separated lists
    (``url, original url, AU1 ... AU60``, no header); 1 = present, 0 = absent, 999 = unknown (missing).
    The release gives URLs: each image is read from ``images/`` under the data root, named by the
    URL's file name (``image_names=basename``) or its path (``url_path``). AUs 1, 2, 4, 5, 6, 9, 12,
    17, 20, 25, 26 fill the canonical 17; the other 6 are masked in every image.

    Args:
        data_root: the folder with the CSV, the lists and ``images/`` (else ``$MTLBENCH_EMOTIONET_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        training: ``manual``: the manual CSV split train:val:test by ``split_fractions``; ``automatic``:
            train on the automatic lists (less any URL of the manual CSV), the manual CSV split val:test
            in the proportions of the last two ``split_fractions``.
        manual_csv: the manual CSV's file name ("" = the first of :data:`MANUAL_CSVS` found).
        lists: glob (under the data root) of the automatic lists, read when ``training=automatic``.
        image_names: ``basename`` (``images/<file name of the URL>``) or ``url_path`` (``images/<URL path>``).
        missing_images: ``skip`` (URLs die; a downloaded copy lacks some images: logged) or ``error``.
        split_fractions: train:val:test shares. split_seed: seed of the split.
    """

    env_var = "MTLBENCH_EMOTIONET_ROOT"
    layout = (f"{MANUAL_CSVS[0]}  (URL, URL orig, 'AU 1', ...; 999 = unknown)",
              "lists/*.txt  (tab-separated: url, original url, AU1 ... AU60; with training=automatic)",
              "images/<file name of each URL>")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", training: Literal["manual", "automatic"] = "manual",
                 manual_csv: str = "", lists: str = "lists/*.txt",
                 image_names: Literal["basename", "url_path"] = "basename",
                 missing_images: Literal["skip", "error"] = "skip", split_fractions: str = "0.8:0.1:0.1",
                 split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        checks = {"training": (training, ("manual", "automatic")), "image_names": (image_names, ("basename", "url_path")),
                  "missing_images": (missing_images, ("skip", "error"))}
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"db 'emotionet': {key} must be one of {allowed}, got {value!r}")
        parse_fractions(split_fractions, 3, "split_fractions")
        self.augmentation = self.check_augmentation(augmentation)
        self.training, self.manual_csv, self.lists, self.image_names = training, manual_csv, lists, image_names
        self.missing_images, self.split_fractions, self.split_seed = missing_images, split_fractions, split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        return (au_task(primary="f1_acc_avg"),)

    def manual_path(self) -> Path:
        names = (self.manual_csv,) if self.manual_csv else MANUAL_CSVS
        return first_existing("emotionet", self.root(), names, "manually annotated CSV",
                              f"Point --data-root (or {self.env_var}) at the folder that holds it (or set manual_csv).")

    def local_name(self, url: str) -> str:
        """Where the image of ``url`` is under the data root."""
        path = urlparse(url).path
        return "images/" + (Path(path).name if self.image_names == "basename" else path.lstrip("/"))

    def read_table(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image files, (n, 17) AU values with NaN missing, source: 0 = automatic list, 1 = manual CSV)."""
        urls, aus = read_manual(self.manual_path())
        source = [np.ones(len(urls), dtype=np.int64)]
        blocks = [au_matrix(aus, len(urls))]
        if self.training == "automatic":
            blocks, source, urls = self.add_lists(urls, blocks, source)
        values, source = np.concatenate(blocks), np.concatenate(source)
        files = [self.local_name(u) for u in urls]
        keep = ~np.isnan(values).all(axis=1)  # an image with every AU unknown carries nothing
        if self.missing_images == "skip":
            root = self.root()
            present = np.array([(root / f).is_file() for f in files])
            if (~present & keep).any():
                log.warning("emotionet: %d of %d annotated images are not under %s/images; skipped (missing_images=skip)",
                            int((~present & keep).sum()), int(keep.sum()), root)
            keep &= present
        return [f for f, k in zip(files, keep) if k], values[keep], source[keep]

    def add_lists(self, urls: list[str], blocks: list[np.ndarray], source: list[np.ndarray]):
        """Append the automatic lists' rows, leaving out URLs of the manual CSV (they are validated/tested on)."""
        root = self.root()
        paths = sorted(root.glob(self.lists))
        if not paths:
            raise MissingDataError(f"db 'emotionet': training=automatic, but no list matches {root / self.lists}; "
                                   f"set lists=GLOB (relative to the data root) or training=manual")
        manual, urls = set(urls), list(urls)
        for path in paths:
            list_urls, aus = read_list(path)
            fresh = np.array([u not in manual for u in list_urls])
            urls += [u for u, f in zip(list_urls, fresh) if f]
            blocks.append(au_matrix(aus, len(list_urls))[fresh])
            source.append(np.zeros(int(fresh.sum()), dtype=np.int64))
        return blocks, source, urls

    def read_labels(self) -> Labels:
        files, values, _ = self.memo("table", self.read_table)
        target, mask = attribute_labels(values)
        return Labels(self.scan(self.root(), files), {"au": target}, {"au": mask})

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val, 2 = test: the manual CSV split seeded (val:test only with training=automatic)."""
        _, _, source = self.memo("table", self.read_table)
        fractions = parse_fractions(self.split_fractions, 3, "split_fractions")
        rng = np.random.default_rng(self.split_seed)
        parts = np.zeros(len(source), dtype=np.int64)
        manual = np.flatnonzero(source == 1)
        if self.training == "automatic":
            parts[manual] = 1 + stratified_parts(np.zeros(len(manual)), fractions[1:], rng)
        else:
            parts[manual] = stratified_parts(np.zeros(len(manual)), fractions, rng)
        return parts
