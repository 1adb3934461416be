"""The report's plots: PSNR against params / throughput, loss curves, crops."""
from __future__ import annotations

import math
from pathlib import Path

from srexp.cli.report.collect import Job


# ------------------------------------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter(jobs: list[Job], x_key: str, x_label: str, path: Path, title: str) -> bool:
    pts = [(j, j.metrics.get(x_key), j.metrics.get("psnr")) for j in jobs if j.ok]
    pts = [(j, x, y) for j, x, y in pts if x and y is not None and x > 0]
    if not pts:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    layers = sorted({j.choices.get("net/upsample", "") for j, _, _ in pts})
    colors = {u: plt.cm.tab10(i % 10) for i, u in enumerate(layers)}
    seen = set()
    for j, x, y in pts:
        s, u = j.choices.get("net/strategy", ""), j.choices.get("net/upsample", "")
        name = f"{s} / {u}" if s and u else j.short
        ax.scatter([x], [y], marker=STRATEGY_MARKERS.get(s, "o"), color=colors.get(u, "C0"), s=60,
                   label=None if name in seen else name, edgecolors="black", linewidths=0.5)
        seen.add(name)
        ax.annotate(j.short[:24], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6)
    bic = [j.metrics.get("bicubic_psnr") for j, _, _ in pts if j.metrics.get("bicubic_psnr") is not None]
    if bic:
        ax.axhline(sum(bic) / len(bic), color="gray", linestyle="--", linewidth=1, label="bicubic")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def loss_plot(jobs: list[Job], path: Path, title: str) -> bool:
    curves = [j for j in jobs if j.curve]
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for k, j in enumerate(curves):
        steps, loss = zip(*j.curve)
        ax.plot(steps, loss, marker="." if len(steps) < 20 else None, linewidth=1, color=plt.cm.tab20(k % 20),
                linestyle=("-", "--", ":", "-.")[k // 20 % 4],
                label=(j.short if j.ok else f"{j.short} (failed/unfinished)")[:60])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("train/loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def first_row_tiles(grid):
    """ImageGrid's ``grid.png``: rows of [LR (nearest) | bicubic | SR | HR] square tiles, each row padded to the
    widest; the first row's tile side is where its content ends (the HR tile), over 4."""
    import numpy as np

    h, w = grid.shape[:2]
    side = w // 4
    row = grid[:side]
    cols = np.nonzero(row.reshape(side, w, -1).max(axis=(0, 2)))[0]
    if len(cols) and (cols[-1] + 1) % 4 == 0 and (cols[-1] + 1) // 4 < side:
        side = (cols[-1] + 1) // 4
    return [grid[:side, k * side : (k + 1) * side] for k in range(4)]


def crops_plot(jobs: list[Job], path: Path) -> bool:
    import numpy as np
    from PIL import Image

    tiles = []
    for j in jobs:
        g = j.folder / "grid.png"
        if j.ok and g.is_file():
            tiles.append((j, first_row_tiles(np.asarray(Image.open(g).convert("RGB")))))
    if not tiles:
        return False
    plt = _plt()
    lr, bic, _, hr = tiles[0][1]
    panels = [("LR (nearest)", lr), ("bicubic", bic), ("HR", hr)]
    panels += [(f"{j.short[:36]}\n{j.metrics['psnr']:.2f} dB", t[2]) for j, t in tiles]
    n = len(panels)
    cols = min(n, 6)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(2.4 * cols, 2.7 * rows_), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img) in zip(axes.flat, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=7)
    fig.suptitle("the same crop of the first validation image: references, then each job's SR", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


STRATEGY_MARKERS = {"pre": "o", "post": "s", "progressive": "^", "iterative": "D"}
