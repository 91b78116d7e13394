"""Images from files: the checked list of a db's image files, decoding (crop, resize, [-1, 1]) and its TaskDataset."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from datasets.base import TaskDataset
from datasets.files import CorruptDataError, listing, missing_files_error

if TYPE_CHECKING:
    from datasets.cache import ImageCache

log = logging.getLogger(__name__)

#: How a (cropped) image becomes a square: ``stretch`` resizes it whole to S x S (the aspect ratio is
#: not kept, nothing is lost); ``center_crop`` resizes its shorter side to S and cuts the centre square.
Fit = Literal["stretch", "center_crop"]
FITS: tuple[str, ...] = ("stretch", "center_crop")


@dataclass(frozen=True)
class ImageSource:
    """A db's image files in row order, with optional crop boxes, checked to exist and fingerprinted once.

    Args:
        root: the folder the file names are relative to.
        files: one relative path per row.
        boxes: (n, 4) float crop boxes ``x, y, width, height`` in pixels (CUB's bounding boxes), or None.
        fingerprint: hash of every file's name, size, modification time and box (keys the decoded cache).
    """

    root: Path
    files: tuple[str, ...]
    boxes: np.ndarray | None
    fingerprint: str

    @classmethod
    def scan(cls, db: str, root: Path, files: Sequence[str], boxes: np.ndarray | None, env_var: str) -> ImageSource:
        """Stat every file once; absent ones are a :class:`~datasets.files.MissingDataError` naming them."""
        digest, missing = hashlib.sha256(), []
        for i, name in enumerate(files):
            try:
                st = os.stat(root / name)
            except OSError:
                missing.append(name)
                continue
            box = "" if boxes is None else ",".join(f"{v:.2f}" for v in boxes[i])
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{box}\n".encode())
        if missing:
            raise missing_files_error(db, root, missing, len(files), env_var)
        return cls(root, tuple(files), None if boxes is None else np.asarray(boxes, dtype=float), digest.hexdigest())

    def __len__(self) -> int:
        return len(self.files)


def source_region(width: int, height: int, box: Sequence[float] | None, fit: str) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) part of a width x height image that becomes the square input."""
    left, top, right, bottom = 0.0, 0.0, float(width), float(height)
    if box is not None:  # x, y, w, h, clipped to the image; a degenerate box falls back to the whole image
        x, y, w, h = (float(v) for v in box)
        cand = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
        if cand[2] - cand[0] >= 1 and cand[3] - cand[1] >= 1:
            left, top, right, bottom = cand
    if fit == "center_crop":
        side = min(right - left, bottom - top)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        left, top, right, bottom = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    elif fit != "stretch":
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    return left, top, right, bottom


def decode(path: Path, box: Sequence[float] | None, size: int, fit: str) -> np.ndarray:
    """Decode one image file to a (size, size, 3) uint8 RGB array: crop to ``box``, fit, resize (bilinear)."""
    with Image.open(path) as image:
        width, height = image.size
        left, top, right, bottom = source_region(width, height, box, fit)
        # Let libjpeg downscale by 1/2..1/8 while decoding, as long as the region keeps >= size pixels.
        wanted = (math.ceil(width * size / (right - left)), math.ceil(height * size / (bottom - top)))
        if image.format == "JPEG":
            image.draft("RGB", wanted)
        sx, sy = image.size[0] / width, image.size[1] / height
        # Crop first: resize(box=...) would let the filter read pixels outside the box.
        region = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
        out = image.convert("RGB").crop(region).resize((size, size), Image.Resampling.BILINEAR)
    return np.array(out, dtype=np.uint8)  # a writable copy (torch warns about read-only arrays)


def decode_row(source: ImageSource, row: int, size: int, fit: str) -> np.ndarray:
    """Decode row ``row`` of ``source``; a file that does not decode is a :class:`CorruptDataError` naming it."""
    box = None if source.boxes is None else source.boxes[row]
    path = source.root / source.files[row]
    try:
        return decode(path, box, size, fit)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # what PIL raises on bad files
        raise CorruptDataError(f"{path}: {unreadable(path, exc)}") from exc


def unreadable(path: Path, exc: BaseException) -> str:
    """What is wrong with an image file that did not decode, in a few words."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except OSError:
        return "missing or unreadable"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if "truncated" in str(exc):
        return f"truncated image data ({exc})"
    return f"does not decode ({type(exc).__name__}: {exc})"


def check_images(source: ImageSource, size: int, fit: str, cache: ImageCache | None = None, *,
                 progress: bool = False, label: str = "") -> list[str]:
    """Decode every image of ``source`` in full (filling ``cache`` on the way); ``"path: what is wrong"`` for each
    that fails, in row order (empty: every image decodes).

    With a cache, images it already holds were decoded when they went in and are not read again; the
    failing ones are never flagged, so the next check tries them again. Decoding runs on threads
    (PIL releases the GIL while it decodes).
    """
    rows = list(range(len(source))) if cache is None else cache.missing_rows()
    if not rows:
        return []

    def one(row: int) -> str | None:
        try:
            cache.get(row) if cache is not None else decode_row(source, row, size, fit)
        except CorruptDataError as exc:
            return str(exc)
        return None

    threads = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(tqdm(pool.map(one, rows), total=len(rows), desc=f"checking images{f' of {label}' if label else ''}",
                            unit="img", disable=not progress, leave=False, dynamic_ncols=True))
    bad = [r for r in results if r is not None]
    log.info("decoded %d images of %s at %dpx: %d unreadable", len(rows), label or source.root, size, len(bad))
    return bad


def unreadable_images_error(db: str, source: ImageSource, bad: Sequence[str], env_var: str) -> CorruptDataError:
    """The error for images that exist but do not decode (the first few named)."""
    head = (f"db {db!r}: {len(bad)} of {len(source)} image files do not decode" if len(bad) > 1 else
            f"db {db!r}: an image file does not decode")
    fix = (f"replace {'it' if len(bad) == 1 else 'them'} from the release, or point --data-root (or {env_var}) at a "
           f"complete copy; nothing was trained")
    return CorruptDataError(listing(head, bad, fix))


def to_tensor(pixels: np.ndarray) -> Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 in [-1, 1] (the paper's input normalisation)."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(127.5).sub_(1.0).contiguous()


class FileImageDataset(TaskDataset):
    """A :class:`TaskDataset` whose inputs are image files, decoded per item (or read from a decoded cache).

    Args:
        source: the db's image files (all splits); ``rows`` picks this split's.
        rows: (n,) row of ``source`` for each sample.
        targets, masks: per task, for the n samples (see :class:`TaskDataset`).
        size: side of the square input. fit: ``"stretch"`` or ``"center_crop"`` (see :data:`Fit`).
        cache: the decoded-image cache of ``source`` at ``size``, or None to decode every time.
        transform: applied to the float input tensor (the training loop sets the augmentation here).
    """

    def __init__(self, source: ImageSource, rows: np.ndarray, targets: dict[str, Tensor], masks: dict[str, Tensor],
                 size: int, fit: str, cache: ImageCache | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(targets, masks, transform)
        if len(rows) != len(self):
            raise ValueError(f"{len(rows)} image rows for {len(self)} labelled samples")
        if cache is not None and (cache.size, cache.fit) != (size, fit):
            raise ValueError(f"cache holds {cache.size}px/{cache.fit} images, dataset wants {size}px/{fit}")
        self.source, self.rows = source, np.asarray(rows, dtype=np.int64)
        self.size, self.fit, self.cache = size, fit, cache

    def load_input(self, index: int) -> Tensor:
        row = int(self.rows[index])
        if self.cache is not None:
            return to_tensor(self.cache.get(row))
        return to_tensor(decode_row(self.source, row, self.size, self.fit))
