"""The decoded-image cache: each image decoded once per size into a memory-mapped uint8 array on disk.

Decoding JPEGs dominates the cost of an epoch on small networks; the cache makes later epochs and later
runs read raw pixels instead. One cache holds every image of a db (all splits and folds share it) at one
size and fit, under ``<cache_dir>/images-<key>.u8.npy`` with a ``.done.npy`` flag per image; the key hashes
the cache format, the source files (names, sizes, modification times, crop boxes), the size and the fit,
so changing any of them starts a new cache. It is filled lazily by whichever process (or DataLoader
worker) first needs an image, and is safe to share between processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from datasets.images import ImageSource, decode_row

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder; ``off`` (or an empty value) disables caching.
CACHE_ENV = "MTLBENCH_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/mtlbench"
#: Bumped whenever decoding changes, so old caches are not reused.
CACHE_FORMAT = 1


def cache_folder(cache_dir: str | None) -> Path | None:
    """The cache folder: ``cache_dir``, else ``$MTLBENCH_CACHE_DIR``, else ``~/.cache/mtlbench``; None when ``off``."""
    value = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV, DEFAULT_CACHE_DIR)
    if value.strip().lower() in ("", "off", "none"):
        return None
    return Path(value).expanduser()


class ImageCache:
    """The images of one :class:`ImageSource` decoded at one size, in a memory-mapped (n, S, S, 3) uint8 array.

    Args:
        source: the db's image files.
        size: side of the decoded square images. fit: how an image becomes square (``datasets.images.Fit``).
        folder: where the cache files live.
    """

    def __init__(self, source: ImageSource, size: int, fit: str, folder: Path) -> None:
        self.source, self.size, self.fit, self.folder = source, size, fit, Path(folder)
        self.key = hashlib.sha256(f"{CACHE_FORMAT}|{source.fingerprint}|{size}|{fit}".encode()).hexdigest()[:24]
        self.decoded = 0  # images this process decoded (the tests and the loader benchmark read it)
        self._pixels: np.ndarray | None = None
        self._done: np.ndarray | None = None
        self._unusable = False

    @property
    def path(self) -> Path:
        """The pixel array file."""
        return self.folder / f"images-{self.key}.u8.npy"

    @property
    def done_path(self) -> Path:
        """The per-image flags (1 = decoded); its presence marks a fully created cache."""
        return self.folder / f"images-{self.key}.done.npy"

    def get(self, row: int) -> np.ndarray:
        """The (S, S, 3) uint8 pixels of ``row``: read from the cache, or decoded and stored on first use."""
        if not self._unusable and self._pixels is None:
            self._open()
        if self._pixels is not None and self._done is not None and self._done[row]:
            return self._pixels[row]
        pixels = decode_row(self.source, row, self.size, self.fit)
        self.decoded += 1
        if self._pixels is not None and self._done is not None:
            self._pixels[row] = pixels
            self._done[row] = 1  # written after the pixels: a flag never points at a half-written image
        return pixels

    def missing_rows(self) -> list[int]:
        """The rows the cache does not hold yet (every row when the cache folder is unusable); maps the cache."""
        if not self._unusable and self._pixels is None:
            self._open()
        if self._done is None:
            return list(range(len(self.source)))
        return np.flatnonzero(np.asarray(self._done) == 0).tolist()

    def filled(self) -> int:
        """How many images the cache holds (0 before it is created)."""
        if not self.done_path.exists():
            return 0
        return int(np.load(self.done_path, mmap_mode="r").sum())

    def _open(self) -> None:
        """Create the cache files (once, under a file lock) and map them; an unusable folder means no cache."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / f"images-{self.key}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent workers and runs create it once
                if not self.done_path.exists():
                    self._create()
            self._pixels = np.load(self.path, mmap_mode="r+")
            self._done = np.load(self.done_path, mmap_mode="r+")
        except OSError as exc:
            self._unusable = True
            log.warning("decoded-image cache in %s is unusable (%s); decoding every image each time. "
                        "Set %s to a writable folder, or to 'off'.", self.folder, exc, CACHE_ENV)

    def _create(self) -> None:
        n, s = len(self.source), self.size
        tmp = self.folder / f"images-{self.key}.{os.getpid()}.tmp.npy"
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, s, s, 3)).flush()  # sparse until filled
        os.replace(tmp, self.path)
        meta = {"format": CACHE_FORMAT, "root": str(self.source.root), "images": n, "size": s, "fit": self.fit,
                "fingerprint": self.source.fingerprint}
        (self.folder / f"images-{self.key}.json").write_text(json.dumps(meta, indent=1))
        np.save(tmp, np.zeros(n, dtype=np.uint8))
        os.replace(tmp, self.done_path)
        log.info("created decoded-image cache %s (%d images at %dpx)", self.path, n, s)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers re-map the files themselves; a pickled memmap would copy the pixels.
        state = dict(self.__dict__)
        state["_pixels"] = state["_done"] = None
        return state
