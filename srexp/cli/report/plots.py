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


FAR_BELOW_DB = 3.0  # configurations this far below bicubic are listed, not plotted on the PSNR axis


def _short(c) -> str:
    """A configuration's swept values: ``pre / interpolate`` (its key less the names)."""
    return " / ".join(o.split("=", 1)[-1] for o in c.key.split()) or c.key


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The frontier of (cost, PSNR) points: each point that no cheaper-or-equal point beats, sorted by cost."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def scatter(configs, x_of, x_label: str, path: Path, title: str, frontier: bool = False) -> bool:
    """Mean validation PSNR of each configuration against ``x_of(config)`` (log axis), marker = strategy, colour =
    upsample layer, error bars = std over seeds where a configuration has several; ``frontier``: the Pareto line."""
    pts = [(c, x_of(c), c.mean) for c in configs if c.psnr]
    pts = [(c, x, y) for c, x, y in pts if x and x > 0 and not math.isnan(y)]
    if not pts:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 6))
    layers = sorted({c.first.choices.get("net/upsample", "") for c, _, _ in pts})
    colors = {u: plt.cm.tab10(i % 10) for i, u in enumerate(layers)}
    seen = set()
    for c, x, y in pts:
        s, u = c.first.choices.get("net/strategy", ""), c.first.choices.get("net/upsample", "")
        name = f"{s} / {u}" if s and u else _short(c)
        err = c.std if c.n > 1 and not math.isnan(c.std) else None
        ax.errorbar([x], [y], yerr=None if err is None else [err], fmt=STRATEGY_MARKERS.get(s, "o"),
                    color=colors.get(u, "C0"), markersize=8, markeredgecolor="black", markeredgewidth=0.5,
                    capsize=3, elinewidth=1, label=None if name in seen else name)
        seen.add(name)
    bic = [c.mean_of("bicubic_psnr") for c, _, _ in pts if c.mean_of("bicubic_psnr") is not None]
    bicubic = sum(bic) / len(bic) if bic else None
    floor = bicubic - FAR_BELOW_DB if bicubic is not None else -math.inf  # nets this far below are listed, not drawn
    if frontier:
        front = pareto([(x, y) for _, x, y in pts if y >= floor]) or pareto([(x, y) for _, x, y in pts])
        ax.plot(*zip(*front), color="black", linewidth=1, drawstyle="steps-post", alpha=0.6, label="Pareto front")
    if bicubic is not None:
        ax.axhline(bicubic, color="gray", linestyle="--", linewidth=1, label="bicubic")
        low = [(c, y) for c, _, y in pts if y < floor]
        if low and len(low) < len(pts):
            ax.set_ylim(min(y for _, _, y in pts if y >= floor) - 0.3, max(y for _, _, y in pts) + 0.3)
            ax.text(0.01, 0.01, "off scale (more than %g dB below bicubic): " % FAR_BELOW_DB
                    + ", ".join(f"{_short(c)} {y:.1f} dB" for c, y in low), transform=ax.transAxes, fontsize=7,
                    va="bottom", wrap=True)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")  # 2,000 rather than 2×10³
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel(x_label)
    ax.set_ylabel("validation PSNR (dB)" + (", mean ± std over seeds" if any(c.n > 1 for c, _, _ in pts) else ""))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def loss_plot(jobs: list[Job], path: Path, title: str) -> bool:
    """Training loss, smoothed (running mean), one curve per configuration (the mean over its seeds); with
    configurations named ``a / b`` and 2–6 values of ``a`` (a strategy), one panel per ``a`` so that no panel holds
    more than a handful of curves."""
    import numpy as np

    groups: dict[str, list[Job]] = {}
    for j in jobs:
        if j.curve:
            groups.setdefault(_job_name(j, seed=False), []).append(j)
    if not groups:
        return False
    curves = {}
    for name, js in groups.items():
        common = sorted(set.intersection(*(set(s for s, _ in j.curve) for j in js)))
        if not common:
            continue
        mean = np.mean([[dict(j.curve)[s] for s in common] for j in js], axis=0)
        w = max(1, len(common) // 40)  # ~40 windows over the run
        smooth = np.convolve(mean, np.ones(w) / w, mode="valid") if len(mean) > w else mean
        failed = any(not j.ok for j in js)
        curves[name] = (np.asarray(common[w - 1:] if len(mean) > w else common), smooth, len(js), failed)
    heads = sorted({n.split(" / ", 1)[0] for n in curves})
    panels = heads if 2 <= len(heads) <= 6 and all(" / " in n for n in curves) else [None]
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) if len(panels) > 1 else 9, 4.6),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, head in zip(axes[0], panels):
        mine = [n for n in curves if head is None or n.split(" / ", 1)[0] == head]
        for k, name in enumerate(sorted(mine)):
            steps, loss, n, failed = curves[name]
            label = name.split(" / ", 1)[1] if head is not None else name
            label = f"{label[:40]}" + (f" (n={n})" if n > 1 else "") + (" (failed/unfinished)" if failed else "")
            ax.plot(steps, loss, linewidth=1.2, color=plt.cm.tab10(k % 10), linestyle=("-", "--", ":")[k // 10 % 3],
                    label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(head if head is not None else title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("train/loss (running mean" + (", mean over seeds)" if any(
        c[2] > 1 for c in curves.values()) else ")"))
    if panels != [None]:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _job_name(j: Job, seed: bool = True) -> str:
    """A job's swept values that change its result (no cache folders, no resume flags), its seed last (``seed``)."""
    from srexp.training.runtime import config_key

    over = j.label.split() if "=" in j.label else []
    if not over:
        return j.short
    key = config_key(over)
    s = next((o.split("=", 1)[1] for o in over if o.lstrip("+").startswith("seed=")), None)
    name = " / ".join(o.split("=", 1)[-1] for o in key.split()) if key != "(defaults)" else ""
    if not seed:
        return name or j.short
    return " / ".join(x for x in (name, f"seed {s}" if s is not None else "") if x) or j.short


def first_row_tiles(grid):
    """ImageGrid's ``grid_raw.png`` (``grid.png`` before labels): rows of [LR (nearest) | bicubic | SR | HR] square tiles, each row padded to the
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
        g = j.folder / "grid_raw.png"  # the bare tiles; runs before it existed: grid.png was bare
        g = g if g.is_file() else j.folder / "grid.png"
        if j.ok and g.is_file():
            tiles.append((j, first_row_tiles(np.asarray(Image.open(g).convert("RGB")))))
    if not tiles:
        return False
    plt = _plt()
    lr, bic, _, hr = tiles[0][1]
    panels = [("LR (nearest)", lr), ("bicubic", bic), ("HR", hr)]
    panels += [(f"{_job_name(j)[:40]}\n{j.metrics['psnr']:.2f} dB", t[2]) for j, t in tiles]
    n = len(panels)
    cols = min(n, 6)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(2.4 * cols, 2.7 * rows_ + 0.3), squeeze=False,
                             layout="constrained")  # the title above the first row's labels, not on them
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img) in zip(axes.flat, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=7)
    fig.suptitle("the same crop of the first validation image: references, then each job's SR", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


STRATEGY_MARKERS = {"pre": "o", "post": "s", "progressive": "^", "iterative": "D"}
