"""The base of dbs read from image files: data root, memoised annotations, the decoded cache, split datasets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

from datasets.base import SPLITS, Db, Split, TaskDataset
from datasets.cache import ImageCache, cache_folder
from datasets.files import CorruptDataError, MissingDataError, locate_root, require
from datasets.images import FITS, FileImageDataset, ImageSource, check_images, unreadable_images_error

T = TypeVar("T")


@dataclass(frozen=True)
class Labels:
    """Every image's labels, in the rows of ``source``: per task a target and an annotation mask.

    Class targets are (n,) int64 with -1 where missing (mask False); attribute targets are (n, M)
    float in {0, 1} with mask False where missing (the target there is 0 and means nothing).
    """

    source: ImageSource
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]

    def __len__(self) -> int:
        return len(self.source)


def class_labels(values: np.ndarray) -> tuple[Tensor, Tensor]:
    """(n,) class indices with -1 for missing -> (target, mask)."""
    target = torch.from_numpy(np.array(values, dtype=np.int64))
    return target, target >= 0


def attribute_labels(values: np.ndarray) -> tuple[Tensor, Tensor]:
    """(n, M) float with 1 = present, 0 = absent, NaN = missing -> (target in {0, 1}, mask)."""
    values = np.asarray(values, dtype=np.float32)
    known = ~np.isnan(values)
    return torch.from_numpy(np.where(known, values, 0.0).astype(np.float32)), torch.from_numpy(known)


class ImageDb(Db):
    """A db whose inputs are image files under a data root, decoded through the shared cache.

    Subclasses name their ``env_var`` and ``layout`` (for messages), and implement :meth:`read_labels`.

    Args:
        data_root: folder of the dataset's official release (else ``$<env_var>``).
        cache_dir: folder of the decoded-image cache (else ``$MTLBENCH_CACHE_DIR``, else
            ``~/.cache/mtlbench``; ``off`` disables it). Where, not what: not part of a run's identity.
        fit: how an image becomes a square input: ``stretch`` (whole image, aspect not kept) or
            ``center_crop`` (shorter side to the size, centre square).
    """

    #: The per-db environment variable read when ``data_root`` is None.
    env_var: ClassVar[str] = ""
    #: Paths under the data root the db reads (shown when the root is not given).
    layout: ClassVar[tuple[str, ...]] = ()
    location_options: ClassVar[tuple[str, ...]] = ("data_root", "cache_dir")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch") -> None:
        super().__init__(data_root=data_root)
        if fit not in FITS:
            raise ValueError(f"db {self.name!r}: fit must be one of {FITS}, got {fit!r}")
        self.cache_dir, self.fit = cache_dir, fit
        self._memo: dict[Any, Any] = {}

    def root(self) -> Path:
        """The data root (``data_root``, else the environment variable); neither is an error naming both."""
        return locate_root(self.name, self.data_root, self.env_var, self.layout)

    def require(self, root: Path, relative: Sequence[str]) -> None:
        """Fail listing every expected path under ``root`` that is missing."""
        require(self.name, root, relative, self.env_var)

    def memo(self, key: Any, make: Callable[[], T]) -> T:
        """``make()`` once per db instance and key (annotations are parsed once, not per split)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def labels(self) -> Labels:
        """Every image's labels, parsed once; annotations that do not parse are a :class:`CorruptDataError`."""
        return self.memo("labels", self._parse_labels)

    def _parse_labels(self) -> Labels:
        try:
            return self.read_labels()
        except (MissingDataError, CorruptDataError):
            raise
        except Exception as exc:  # a parser's own error (pandas, scipy, numpy) may not say which db or folder
            raise CorruptDataError(f"db {self.name!r}: its annotation files under {self.root()} do not parse: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def verify(self, image_size: int | None = None, progress: bool = False) -> None:
        """Check the db's files before anything trains: the annotations parse, every image they name exists and
        decodes in full. Done once per db instance and size; with the decoded cache the check fills it, so it
        costs what the first epoch would have, and images the cache already holds are not read again.
        A broken file is a :class:`CorruptDataError` (a missing one :class:`MissingDataError`) naming it."""
        size = image_size or self.preset().image_size
        if ("verified", size) in self._memo:
            return
        labels = self.labels()
        folder = cache_folder(self.cache_dir)
        cache = None if folder is None else self.memo(("cache", size), lambda: ImageCache(labels.source, size, self.fit, folder))
        bad = check_images(labels.source, size, self.fit, cache, progress=progress, label=f"db {self.name!r}")
        if bad:
            raise unreadable_images_error(self.name, labels.source, bad, self.env_var)
        self._memo[("verified", size)] = True

    def read_labels(self) -> Labels:
        """Parse the annotation files and check the image files (subclasses)."""
        raise NotImplementedError

    def parts(self, fold: int | None) -> np.ndarray:
        """(n,) split of every row of :meth:`labels`: 0 = train, 1 = val, 2 = test (subclasses)."""
        raise NotImplementedError

    def split(self, split: Split, fold: int | None = None, image_size: int | None = None) -> TaskDataset:
        self.check_fold(fold)
        parts = self.memo(("parts", fold), lambda: self.parts(fold))
        return self.image_split(np.flatnonzero(parts == SPLITS.index(split)), image_size)

    def scan(self, root: Path, files: Sequence[str], boxes: np.ndarray | None = None) -> ImageSource:
        """The checked :class:`ImageSource` of ``files`` under ``root``."""
        return ImageSource.scan(self.name, root, files, boxes, self.env_var)

    def image_split(self, rows: np.ndarray, image_size: int | None) -> FileImageDataset:
        """The dataset of ``rows`` (of :meth:`labels`) at ``image_size`` (default: the preset's)."""
        labels = self.labels()
        size = image_size or self.preset().image_size
        folder = cache_folder(self.cache_dir)
        cache = None if folder is None else self.memo(("cache", size), lambda: ImageCache(labels.source, size, self.fit, folder))
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return FileImageDataset(labels.source, np.asarray(rows), {t: v[index] for t, v in labels.targets.items()},
                                {t: m[index] for t, m in labels.masks.items()}, size, self.fit, cache)
