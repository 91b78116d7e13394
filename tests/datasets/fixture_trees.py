"""Tiny fixture trees in the official release formats of CAD, CelebA, CUB-200-2011 and the Shoes manifest.

Every image is a flat colour that encodes its row (grey level = 10 * (i % 25)), so a test can tell
which file a sample was decoded from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from datasets.cad import BINARY, RELEASE as CAD_RELEASE
from datasets.sadd import ATTRIBUTES as SHOE_ATTRIBUTES, TYPES as SHOE_TYPES


def grey(i: int) -> int:
    return 10 * (i % 25)


def write_image(path: Path, level: int, size: tuple[int, int] = (24, 20), fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level, level, level)).save(path, fmt, quality=95)


def two_colour_image(path: Path, size: tuple[int, int] = (40, 20)) -> None:
    """Left half red, right half blue."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2, 0] = 255
    pixels[:, size[0] // 2:, 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "PNG")


# ----- CAD -------------------------------------------------------------------------------
CAD_N = 24


def cad_labels(n: int = CAD_N) -> dict[str, np.ndarray]:
    """GT vectors as the release codes them: 1-based, binary 1 = no / 2 = yes, NaN = no agreement."""
    rng = np.random.default_rng(0)
    category = (np.arange(n) % 7 + 1).astype(float)
    category[::3] = np.nan  # about a third without category, as in the release (40%)
    gts = {"category": category, "sleevelength": (np.arange(n) % 3 + 1).astype(float),
           "neckline": ((np.arange(n) + 1) % 3 + 1).astype(float)}
    gts["neckline"][1] = np.nan
    for name in BINARY:
        values = rng.integers(1, 3, n).astype(float)
        values[rng.random(n) < 0.1] = np.nan
        gts[name] = values
    gts["necktie"][:4] = [1, 2, np.nan, 2]  # golden values for the decoding test
    return gts


def cad_tree(root: Path, n: int = CAD_N, gts: dict[str, np.ndarray] | None = None) -> Path:
    gts = cad_labels(n) if gts is None else gts
    labels = root / CAD_RELEASE / "labels"
    labels.mkdir(parents=True)
    for name, values in gts.items():
        scipy.io.savemat(labels / f"{name}_GT.mat", {"GT": values.reshape(-1, 1)})
    for i in range(1, n + 1):
        write_image(root / CAD_RELEASE / "images" / f"{i:06d}.jpg", grey(i - 1))
    return root


# ----- CelebA ----------------------------------------------------------------------------
CELEBA_ATTRIBUTES = ("Bald", "Eyeglasses", "Male", "Smiling")


def celeba_tree(root: Path, images_per_identity: dict[int, int], layout: str = "flat") -> dict[str, int]:
    """Write the three annotation files and images; returns {image name: identity}."""
    anno = root / ("Anno" if layout == "release" else "")
    img = root / ("Img" if layout == "release" else "") / "img_align_celeba"
    anno.mkdir(parents=True, exist_ok=True)
    names: dict[str, int] = {}
    for identity, count in images_per_identity.items():
        for _ in range(count):
            names[f"{len(names) + 1:06d}.jpg"] = identity
    rng = np.random.default_rng(1)
    lines = [str(len(names)), " ".join(CELEBA_ATTRIBUTES)]
    for i, name in enumerate(names):
        values = rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))
        lines.append(name + "  " + " ".join(f"{v:2d}" for v in values))  # the release pads with spaces
        write_image(img / name, grey(i), (18, 22))
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (anno / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, i in names.items()))
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in names))
    return names


# ----- CUB-200-2011 ----------------------------------------------------------------------
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
CUB_ATTRIBUTES = ("has_bill_shape::curved", "has_wing_color::blue", "has_size::small")


def cub_tree(root: Path, per_class: int = 6, attributes_beside: bool = False) -> dict[str, np.ndarray]:
    """Write a CUB release; image i is left red / right blue. Returns is_present and certainty (n, 3)."""
    cub = root / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True)
    n = per_class * len(CUB_CLASSES)
    rng = np.random.default_rng(2)
    present, certainty = rng.integers(0, 2, (n, 3)), rng.integers(1, 5, (n, 3))
    images, labels, split, boxes, attrs = [], [], [], [], []
    for i in range(n):
        c = i % len(CUB_CLASSES)
        name = f"{CUB_CLASSES[c]}/{CUB_CLASSES[c][4:]}_{i:04d}_{i}.jpg"
        two_colour_image(cub / "images" / name)
        images.append(f"{i + 1} {name}")
        labels.append(f"{i + 1} {c + 1}")
        split.append(f"{i + 1} {int(i < 2 * n // 3)}")
        boxes.append(f"{i + 1} 20.0 0.0 20.0 20.0")  # the right (blue) half
        for a in range(3):
            extra = " 0" if (i, a) == (4, 1) else ""  # the release has a few lines with an extra field
            attrs.append(f"{i + 1} {a + 1} {present[i, a]} {certainty[i, a]}{extra} 3.5")
    for file, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", split),
                        ("bounding_boxes.txt", boxes), ("attributes/image_attribute_labels.txt", attrs),
                        ("classes.txt", [f"{c + 1} {name}" for c, name in enumerate(CUB_CLASSES)])):
        (cub / file).write_text("\n".join(lines) + "\n")
    names = "".join(f"{a + 1} {name}\n" for a, name in enumerate(CUB_ATTRIBUTES))
    (root / "attributes.txt" if attributes_beside else cub / "attributes" / "attributes.txt").write_text(names)
    return {"present": present, "certainty": certainty}


# ----- Shoes (sadd) manifest -------------------------------------------------------------
def sadd_tree(root: Path, n: int = 40) -> list[dict[str, str]]:
    """A manifest with human-style type names and some missing values; returns its rows."""
    rows = []
    for i in range(n):
        shoe_type = SHOE_TYPES[i % len(SHOE_TYPES)].replace("_", " ").title() if i % 9 else ""
        row = {"image": f"images/{SHOE_TYPES[i % len(SHOE_TYPES)]}/img_{i:05d}.jpg", "type": shoe_type}
        for j, name in enumerate(SHOE_ATTRIBUTES):
            row[name] = "" if (i + j) % 7 == 0 else str((i + j) % 2)
        rows.append(row)
        write_image(root / row["image"], grey(i))
    header = list(rows[0])
    text = ",".join(header) + "\n" + "".join(",".join(r[h] for h in header) + "\n" for r in rows)
    (root / "manifest.csv").write_text(text)
    return rows
