"""The leaderboard: rows of the jobs, as Markdown and CSV."""
from __future__ import annotations

import csv
from pathlib import Path

from srexp.cli.report.collect import (PERCEPTUAL as LABELS, RANK_BY, Job, _stamp_key, bench_columns, describe_stamp,
                                      job_seconds, stamp_name, val_set)


def perceptual_columns(jobs: list[Job]) -> list[str]:
    """The perceptual metrics (LPIPS, DISTS) some finished job validated with, as their leaderboard columns."""
    return [m for m in LABELS if any(j.ok and j.metrics.get(m) is not None for j in jobs)]


def rows(jobs: list[Job]) -> tuple[list[str], list[dict]]:
    bench = bench_columns(jobs)
    extra = perceptual_columns(jobs)
    header = ["rank", "job", "arch", "strategy", "layer", "body", "params", "MACs/LR px", "patches/s", "val set",
              "scale", "PSNR", "SSIM", "gain dB", *[LABELS[m] for m in extra],
              *[f"{s} ×{k} {m}" for s, k in bench for m in ("PSNR", "SSIM")],
              "train s", "job s", "protocol", "status", "folder"]
    out = []
    for j in sorted(jobs, key=lambda j: (j.rank is None, _stamp_key(j.metrics.get("stamp")) if j.ok else "",
                                         j.rank or 0)):
        m = j.metrics or {}
        net = j.config.get("net") or {}
        row = {"rank": j.rank, "job": j.label, "arch": j.choices.get("arch", ""),
               "strategy": j.choices.get("net/strategy", str(net.get("_target_", "")).rsplit(".", 1)[-1]),
               "layer": j.choices.get("net/upsample", ""), "body": j.choices.get("net/body", ""),
               "params": m.get("params"), "MACs/LR px": m.get("macs_per_lr_px"), "patches/s": m.get("patches_per_s"),
               "val set": val_set(j.config), "scale": j.config.get("scale"), "PSNR": m.get("psnr"),
               "SSIM": m.get("ssim"), "gain dB": m.get("gain_db"), "train s": m.get("train_s"),
               "job s": job_seconds(j.folder), "protocol": stamp_name(m.get("stamp")),
               "status": j.status(), "folder": str(j.folder)}
        for name in extra:  # lower is better
            row[LABELS[name]] = m.get(name)
        for r in m.get("benchmark") or []:
            row[f"{r['set']} ×{int(r['scale'])} PSNR"], row[f"{r['set']} ×{int(r['scale'])} SSIM"] = r["psnr"], r["ssim"]
        out.append(row)
    return header, out


def _fmt(key: str, v) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        if "SSIM" in key or key in LABELS.values():
            return f"{v:.4f}"
        if key in ("params", "MACs/LR px"):
            return f"{v:,.0f}"
        if "PSNR" in key or key == "gain dB":
            return f"{v:+.3f}" if key == "gain dB" else f"{v:.3f}"
        return f"{v:,.1f}"
    if isinstance(v, int) and key in ("params",):
        return f"{v:,}"
    return str(v)


def write_tables(jobs: list[Job], out: Path, title: str, rank_by: str = "psnr") -> Path:
    header, table = rows(jobs)
    with (out / "leaderboard.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    ok, bad = [r for r in table if r["status"] == "ok"], [r for r in table if r["status"] != "ok"]
    shown = [h for h in header if h not in ("status", "folder")]
    shown = [h for h in shown if any(r.get(h) not in (None, "") for r in ok)] or shown
    stamps = {_stamp_key(j.metrics.get("stamp")): j.metrics.get("stamp") for j in jobs if j.ok}
    lines = [f"# Leaderboard: {title}", "",
             f"{len(ok)} of {len(table)} jobs finished; ranked by validation "
             + ("PSNR (Y, shaved; dB)." if rank_by == "psnr" else
                f"{RANK_BY[rank_by][0]} ({'higher' if RANK_BY[rank_by][1] else 'lower'} is better).")]
    extra = perceptual_columns(jobs)
    if extra:
        lines.append(f"{', '.join(LABELS[m] for m in extra)}: on the validation set's RGB (a Y net: Y), 8-bit SR, "
                     f"shaved as PSNR; lower is better.")
    if len(stamps) == 1:
        lines.append(f"Protocol (identical for every row): {describe_stamp(next(iter(stamps.values())))}.")
    else:
        lines.append("Mixed protocols (--allow-mixed), ranked apart: "
                     + "; ".join(describe_stamp(s) for s in stamps.values()) + ".")
    lines += ["", "| " + " | ".join(shown) + " |", "|" + "|".join("---:" if h not in ("job", "arch", "strategy",
              "layer", "body", "val set", "protocol") else "---" for h in shown) + "|"]
    lines += ["| " + " | ".join(_fmt(h, r.get(h)).replace("|", "\\|") for h in shown) + " |" for r in ok]
    if bad:
        lines += ["", "## Failed or unfinished", "", "| job | folder | status |", "|---|---|---|"]
        lines += [f"| {r['job']} | {r['folder']} | {r['status']} |" for r in bad]
    lines += ["", "Plots: psnr_vs_params.png, psnr_vs_macs.png (with the Pareto front), psnr_vs_throughput.png, loss_curves.png, crops.png.", ""]
    md = out / "leaderboard.md"
    md.write_text("\n".join(lines))
    return md
