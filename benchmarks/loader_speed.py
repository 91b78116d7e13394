"""Images per second through the training loader: decoding every time vs the decoded-image cache.

    python benchmarks/loader_speed.py --db cad --data-root ../shared/data/cad --fold 0 --image-size 64
    python benchmarks/loader_speed.py --db celeba --data-root ../shared/data/celeba --image-size 112 --workers 2

Passes over the same images: ``decode`` (cache off: every image decoded, cropped and resized each time,
as without the cache; run twice, the first with the files maybe not yet in the OS page cache), ``cache-fill`` (the first epoch with the cache: decode and store) and
``cache-warm`` (later epochs and later runs: read from the memory-mapped array). The cache goes to a
fresh temporary folder (removed at the end) unless ``--cache-dir`` is given. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

from benchmark.data import make_loader  # noqa: E402
from benchmark.options import parse_overrides  # noqa: E402
from datasets import DBS  # noqa: E402


def images_per_second(dataset, batch_size: int, workers: int) -> tuple[float, float]:
    """(images/s, seconds) of one full pass of a loader over ``dataset``."""
    loader = make_loader(dataset, batch_size, train=False, workers=workers)
    started, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch)
    seconds = time.perf_counter() - started
    return seen / seconds, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--db-set", action="append", default=[], help="a db option KEY=VALUE (repeatable)")
    parser.add_argument("--fold", type=int)
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1000, help="how many images of the split (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default %(default)s)")
    parser.add_argument("--cache-dir", help="default: a fresh temporary folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="mtlbench-cache-") as tmp:
        cache_dir = args.cache_dir or tmp
        rows = []
        cls = DBS.get(args.db)
        options = parse_overrides(cls, args.db_set, f"db {args.db!r}", exclude=cls.location_options)
        passes = (("decode (files cold)", "off"), ("decode", "off"), ("cache-fill", cache_dir), ("cache-warm", cache_dir))
        for label, where in passes:
            db = cls(data_root=args.data_root, cache_dir=where, **options)  # a fresh db: no memoised cache
            split = db.split(args.split, args.fold, args.image_size)
            subset = Subset(split, range(min(args.images, len(split))))
            rate, seconds = images_per_second(subset, args.batch_size, args.workers)
            rows.append([label, len(subset), f"{seconds:.2f}", f"{rate:.0f}"])
        print(f"db={args.db} split={args.split} fold={args.fold} size={args.image_size}px "
              f"batch={args.batch_size} workers={args.workers} torch threads=1")
        print(tabulate(rows, headers=["loader", "images", "seconds", "images/s"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
