"""Procedural rendering of the ``synthetic`` db's images: shapes (the classes) with visual attributes.

Everything is vectorised over the batch of images with NumPy, so a few thousand 32-48 px images
render in about a second, deterministically from the generator passed in.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")
#: Attributes that change the object; the first ones are the most visible.
OBJECT_ATTRIBUTES: tuple[str, ...] = ("red", "striped", "large", "outlined", "dotted", "tilted", "left")
#: Attributes that change the whole image and say nothing about the object.
IMAGE_ATTRIBUTES: tuple[str, ...] = ("bright_bg", "speckled", "blurred", "framed", "green_bg")
MAX_CLASSES = 2 * len(SHAPES)  # each shape alone or as a pair


def _shape_masks(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(len(SHAPES), n, S, S) masks of every shape in local coordinates (u, v), radius about 1."""
    r2 = u**2 + v**2
    au, av = np.abs(u), np.abs(v)
    return np.stack([
        r2 < 1.0,
        np.maximum(au, av) < 0.8,
        (v < 0.6) & (au < (v + 0.9) / 1.5),
        au + av < 1.0,
        ((au < 0.3) & (av < 0.95)) | ((av < 0.3) & (au < 0.95)),
        (r2 > 0.55**2) & (r2 < 1.0),
    ])


def _local(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, theta: np.ndarray,
           scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate and scale the image grid around each image's object centre: (n, S, S) each."""
    dx, dy = x[None] - cx[:, None, None], y[None] - cy[:, None, None]
    c, s, k = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None], scale[:, None, None]
    return (dx * c + dy * s) / k, (-dx * s + dy * c) / k


def _object(x, y, shape, pairs, cx, cy, theta, scale, grow: float = 1.0):
    """Object mask (n, S, S) and local u; a pair puts two half-size copies side by side."""
    n = len(shape)
    idx = np.arange(n)
    u, v = _local(x, y, cx, cy, theta, scale * grow)
    single = _shape_masks(u, v)[shape, idx]
    half = 0.55 * scale * grow
    ua, va = _local(x, y, cx - 0.55 * scale, cy, theta, half)
    ub, vb = _local(x, y, cx + 0.55 * scale, cy, theta, half)
    double = _shape_masks(ua, va)[shape, idx] | _shape_masks(ub, vb)[shape, idx]
    return np.where(pairs[:, None, None], double, single), np.where(pairs[:, None, None], ua, u)


def render(classes: np.ndarray, attributes: dict[str, np.ndarray], size: int,
           rng: np.random.Generator) -> np.ndarray:
    """Render one RGB image per sample.

    Args:
        classes: (n,) class indices; class c is shape ``c % 6``, drawn once (c < 6) or as a pair.
        attributes: the attributes to render, by name, each an (n,) bool array; any attribute not
            given is left off.
        size: image side in pixels.
        rng: source of the nuisance variation (position, colour jitter, pixel noise).

    Returns:
        (n, 3, size, size) float32 in [0, 1].
    """
    n = len(classes)
    on = lambda name: attributes.get(name, np.zeros(n, dtype=bool))  # noqa: E731
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(grid, grid, indexing="ij")
    jitter = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731

    if "left" in attributes:  # the attribute fixes the side; otherwise the object wanders a little
        cx = np.where(on("left"), -0.35, 0.35) + jitter(-0.08, 0.08)
    else:
        cx = jitter(-0.2, 0.2)
    cy = jitter(-0.15, 0.15)
    theta = np.where(on("tilted"), np.pi / 4, 0.0) + jitter(-0.12, 0.12)
    scale = np.where(on("large"), 0.62, 0.38) + jitter(-0.04, 0.04)
    shape, pairs = classes % len(SHAPES), classes >= len(SHAPES)

    mask, u = _object(x, y, shape, pairs, cx, cy, theta, scale)
    border = _object(x, y, shape, pairs, cx, cy, theta, scale, grow=1.3)[0] & ~mask & on("outlined")[:, None, None]

    bg_level = np.where(on("bright_bg"), 0.78, 0.22) + jitter(-0.07, 0.07)
    bg_tint = np.where(on("green_bg")[:, None], [0.6, 1.0, 0.6], [1.0, 1.0, 1.0])
    img = np.broadcast_to((bg_level[:, None] * bg_tint)[:, :, None, None], (n, 3, size, size)).copy()

    colour = np.where(on("red")[:, None], [0.85, 0.2, 0.15], [0.2, 0.35, 0.9]) + rng.uniform(-0.1, 0.1, (n, 3))
    shade = np.where(on("striped")[:, None, None] & (np.sin(6 * u) > 0), 0.45, 1.0)
    paint = lambda m, rgb: np.where(m[:, None], rgb, img)  # noqa: E731
    img = paint(mask, colour[:, :, None, None] * shade[:, None])
    img = paint(border, np.array([1.0, 0.95, 0.3])[None, :, None, None])
    dot = ((x - 0.72) ** 2 + (y + 0.72) ** 2 < 0.13**2)[None] & on("dotted")[:, None, None]
    img = paint(dot, np.array([0.9, 0.1, 0.9])[None, :, None, None])
    return _image_level(img, on, rng)


def _image_level(img: np.ndarray, on, rng: np.random.Generator) -> np.ndarray:
    """Frame, blur, speckle and pixel noise: changes that say nothing about the object."""
    n, _, size, _ = img.shape
    frame = np.zeros((size, size), dtype=bool)
    frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = True, True, True, True
    framed = frame[None] & on("framed")[:, None, None]
    img = np.where(framed[:, None], np.array([0.9, 0.6, 0.1])[None, :, None, None], img)
    blurred = on("blurred")
    if blurred.any():
        img[blurred] = uniform_filter(img[blurred], size=(1, 1, 3, 3), mode="nearest")
    speck = (rng.random((n, size, size)) < 0.08) & on("speckled")[:, None, None]
    img = np.where(speck[:, None], rng.random((n, 1, size, size)), img)
    img = img + rng.normal(0.0, 0.04, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
