"""Printing metric tables (rich) for the commands."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from srexp.metrics.perceptual import LABELS, METRICS


def print_val_table(rows: list[dict], pairs, title: str, quiet: bool = False) -> dict:
    """Per-image and mean PSNR/SSIM of the model and of bicubic, and any perceptual metric the rows carry (LPIPS,
    DISTS: lower is better); returns the means. ``quiet``: no printing (a DDP rank other than 0)."""
    extra = [m for m in METRICS if rows and m in rows[0]]
    table = Table(title=title)
    cols = ["image", "bicubic PSNR", "bicubic SSIM", "model PSNR", "model SSIM", "gain dB"]
    cols += [f"{who} {LABELS[m]} ↓" for m in extra for who in ("bicubic", "model")]
    for col in cols:
        table.add_column(col, justify="left" if col == "image" else "right")

    def cells(r: dict) -> list[str]:
        return [f"{r['bicubic_psnr']:.3f}", f"{r['bicubic_ssim']:.4f}", f"{r['psnr']:.3f}", f"{r['ssim']:.4f}",
                f"{r['psnr'] - r['bicubic_psnr']:+.3f}", *(f"{r[k]:.4f}" for m in extra for k in (f"bicubic_{m}", m))]

    for r in rows:
        table.add_row(pairs[r["index"]].name if pairs else str(r["index"]), *cells(r))
    n = max(len(rows), 1)
    keys = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", *(k for m in extra for k in (m, f"bicubic_{m}")))
    mean = {k: sum(r[k] for r in rows) / n for k in keys}
    table.add_section()
    table.add_row("mean", *cells(mean), style="bold")
    Console(quiet=quiet).print(table)
    mean["gain_db"] = mean["psnr"] - mean["bicubic_psnr"]
    mean["n_images"] = len(rows)
    return mean
