"""Printing metric tables (rich) for the commands."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_val_table(rows: list[dict], pairs, title: str, quiet: bool = False) -> dict:
    """Per-image and mean PSNR/SSIM of the model and of bicubic; returns the means. ``quiet``: no printing (a DDP
    rank other than 0)."""
    table = Table(title=title)
    for col in ("image", "bicubic PSNR", "bicubic SSIM", "model PSNR", "model SSIM", "gain dB"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in rows:
        name = pairs[r["index"]].name if pairs else str(r["index"])
        table.add_row(name, f"{r['bicubic_psnr']:.3f}", f"{r['bicubic_ssim']:.4f}", f"{r['psnr']:.3f}",
                      f"{r['ssim']:.4f}", f"{r['psnr'] - r['bicubic_psnr']:+.3f}")
    n = max(len(rows), 1)
    mean = {k: sum(r[k] for r in rows) / n for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
    table.add_section()
    table.add_row("mean", f"{mean['bicubic_psnr']:.3f}", f"{mean['bicubic_ssim']:.4f}", f"{mean['psnr']:.3f}",
                  f"{mean['ssim']:.4f}", f"{mean['psnr'] - mean['bicubic_psnr']:+.3f}", style="bold")
    Console(quiet=quiet).print(table)
    mean["gain_db"] = mean["psnr"] - mean["bicubic_psnr"]
    mean["n_images"] = len(rows)
    return mean
