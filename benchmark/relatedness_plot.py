"""Heat map of a relatedness matrix p(attribute | class) (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_heatmap(matrix: np.ndarray, classes: tuple[str, ...], attributes: tuple[str, ...], title: str,
                 out: str | Path) -> Path:
    """Write ``matrix`` (N, M) as a labelled heat map to ``out`` (PNG or PDF, by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = matrix.shape
    fig, ax = plt.subplots(figsize=(min(2 + 0.45 * m, 40), min(1.5 + 0.4 * n, 40)))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    if m <= 60:
        ax.set_xticks(range(m), attributes, rotation=90)
    if n <= 60:
        ax.set_yticks(range(n), classes)
    ax.set_xlabel("attribute i")
    ax.set_ylabel("class c")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="p(attribute i | class c)")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
