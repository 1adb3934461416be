"""srexp-report: the comparison report of a sweep (a multirun folder) or of any run folders.

    srexp-report outputs/multirun/2024-05-01_12-00-00_compare_upsampling
    srexp-report outputs/2024-05-01/10-00-00 outputs/2024-05-02/09-30-00 --out reports/ab

Writes into the folder (or ``--out``):

* ``leaderboard.md`` / ``leaderboard.csv``: one row per job — arch / strategy / upsample layer / body, params, MACs
  per LR pixel, train patches/s, PSNR/SSIM on the validation set (and on every ``test_sets`` set and scale the run
  measured), gain over bicubic, train and job wall time, ranked by validation PSNR. Jobs without
  ``val_metrics.json`` (failed, or still running) are listed with their overrides, never dropped.
* ``psnr_vs_params.png``, ``psnr_vs_throughput.png``, ``loss_curves.png`` (``csv/metrics.csv`` of every job, the
  failed ones too) and ``crops.png``: the same crop (LR | bicubic | HR, then every job's SR) from each ``grid.png``.

Every row's protocol stamp (metric protocol, shave, how LR was made, validation-images hash) must be the same, or the
numbers are not comparable: a one-line error unless ``--allow-mixed``, which ranks each protocol apart.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from srexp.errors import SrexpError

SKIP_DIRS = {"wandb", "csv", "checkpoints", ".hydra", ".submitit"}


class ReportError(SrexpError):
    pass


@dataclass
class Job:
    folder: Path
    overrides: list[str]
    choices: dict
    config: dict
    metrics: dict | None  # val_metrics.json; None = failed or unfinished
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, train/loss)
    label: str = ""  # the job's own overrides (what the sweep varied)
    short: str = ""  # their values only, for plots: "pre / pixel_shuffle"
    rank: int | None = None

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    def status(self) -> str:
        if self.ok:
            return "ok"
        last = self.curve[-1][0] if self.curve else None
        ckpt = (self.folder / "checkpoints" / "last.ckpt").is_file()
        return "failed or unfinished: no val_metrics.json" + (f"; last logged step {last}" if last is not None else "") \
            + ("; has checkpoints/last.ckpt (resume=true)" if ckpt else "")


# ----------------------------------------------------------------------------------------------------- collecting
def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders at or under ``paths``: a folder with ``.hydra/``, ``config.yaml`` or ``val_metrics.json``."""
    def is_run(d: Path) -> bool:
        return (d / ".hydra").is_dir() or (d / "config.yaml").is_file() or (d / "val_metrics.json").is_file()

    runs: list[Path] = []
    for p in paths:
        if not p.is_dir():
            raise ReportError(f"{p}: no such folder")
        if is_run(p):
            runs.append(p)
            continue
        found = [d for d in sorted(p.rglob("*")) if d.is_dir() and not SKIP_DIRS & set(d.relative_to(p).parts)
                 and is_run(d)]
        runs += [d for d in found if not any(o != d and o in d.parents for o in found)]  # outermost only
    if not runs:
        raise ReportError(f"no run folders in {' '.join(map(str, paths))} (a run folder has .hydra/, config.yaml or "
                          f"val_metrics.json)")

    def order(d: Path):
        return [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in d.parts]

    return sorted(dict.fromkeys(runs), key=order)


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None


def loss_curve(folder: Path, key: str = "train/loss") -> list[tuple[int, float]]:
    f = folder / "csv" / "metrics.csv"
    if not f.is_file():
        return []
    out = []
    with f.open(newline="") as fh:
        for row in csv.DictReader(fh):
            v = row.get(key)
            if v not in (None, "") and row.get("step", "") != "":
                out.append((int(float(row["step"])), float(v)))
    return out


def load_job(folder: Path) -> Job:
    hydra = _yaml(folder / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    overrides = _yaml(folder / ".hydra" / "overrides.yaml") or []
    config = _yaml(folder / "config.yaml") or _yaml(folder / ".hydra" / "config.yaml") or {}
    metrics = None
    try:
        if (folder / "val_metrics.json").is_file():
            metrics = json.loads((folder / "val_metrics.json").read_text())
        if metrics is not None and (folder / "benchmark.json").is_file():  # test_sets: the standard sets' rows
            metrics["benchmark"] = json.loads((folder / "benchmark.json").read_text()).get("rows", [])
    except json.JSONDecodeError:
        metrics = None
    return Job(folder, [str(o) for o in overrides], choices, config, metrics, loss_curve(folder))


def label_jobs(jobs: list[Job], root: Path | None) -> None:
    """A job's label: its overrides less those every job shares (the swept values), else its folder."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    for j in jobs:
        own = [o for o in j.overrides if o not in common]
        folder = str(j.folder.relative_to(root)) if root and root in j.folder.parents else j.folder.name
        j.label = " ".join(own) if own else folder
        j.short = " / ".join(o.split("=", 1)[-1] for o in own) if own else folder


# -------------------------------------------------------------------------------------------------------- the table
def describe_stamp(stamp: dict | None) -> str:
    if not stamp:
        return "none"
    return (f"{stamp.get('protocol')}, shave {stamp.get('shave')}, LR: {stamp.get('lr')}, Y: {stamp.get('y')}, "
            f"images sha1 {stamp.get('images_sha1')}")


def _stamp_key(stamp: dict | None) -> str:
    return json.dumps(stamp or {}, sort_keys=True)


def check_protocols(jobs: list[Job], allow_mixed: bool) -> None:
    stamps: dict[str, list[Job]] = {}
    for j in jobs:
        if j.ok:
            stamps.setdefault(_stamp_key(j.metrics.get("stamp")), []).append(j)
    if len(stamps) > 1 and not allow_mixed:
        (a, ja), (b, jb) = list(stamps.items())[:2]
        da, db = json.loads(a), json.loads(b)
        diff = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
        k = diff[0] if diff else "stamp"
        raise ReportError(f"the runs were measured under {len(stamps)} different protocols ({k}: {da.get(k)!r} in "
                          f"{ja[0].folder.name} vs {db.get(k)!r} in {jb[0].folder.name}); their numbers do not rank "
                          f"together (valid: runs with one protocol, or --allow-mixed to rank each protocol apart)")


def rank_jobs(jobs: list[Job]) -> None:
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        if j.ok:
            groups.setdefault(_stamp_key(j.metrics.get("stamp")), []).append(j)
    for group in groups.values():
        for r, j in enumerate(sorted(group, key=lambda j: -(j.metrics.get("psnr") or -math.inf)), start=1):
            j.rank = r


def val_set(cfg: dict) -> str:
    data = cfg.get("data") or {}
    specs = [*(data.get("val") or []), *([data["val_dir"]] if data.get("val_dir") else [])]
    names = [Path(str(s)).name if "/" in str(s) else str(s).split(":")[-1] for s in specs]
    return "+".join(names) if len(names) <= 3 else f"{'+'.join(names[:3])}+{len(names) - 3} more"


def bench_columns(jobs: list[Job]) -> list[tuple[str, int]]:
    cols = {(r["set"], int(r["scale"])) for j in jobs if j.ok for r in j.metrics.get("benchmark") or []}
    return sorted(cols)


def job_seconds(folder: Path) -> float | None:
    start = folder / ".hydra" / "config.yaml"
    end = folder / "val_metrics.json"
    if start.is_file() and end.is_file():
        return end.stat().st_mtime - start.stat().st_mtime
    return None


def rows(jobs: list[Job]) -> tuple[list[str], list[dict]]:
    bench = bench_columns(jobs)
    header = ["rank", "job", "arch", "strategy", "layer", "body", "params", "MACs/LR px", "patches/s", "val set",
              "scale", "PSNR", "SSIM", "gain dB", *[f"{s} ×{k} {m}" for s, k in bench for m in ("PSNR", "SSIM")],
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
               "job s": job_seconds(j.folder), "protocol": (m.get("stamp") or {}).get("protocol", ""),
               "status": j.status(), "folder": str(j.folder)}
        for r in m.get("benchmark") or []:
            row[f"{r['set']} ×{int(r['scale'])} PSNR"], row[f"{r['set']} ×{int(r['scale'])} SSIM"] = r["psnr"], r["ssim"]
        out.append(row)
    return header, out


def _fmt(key: str, v) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        if "SSIM" in key:
            return f"{v:.4f}"
        if key in ("params", "MACs/LR px"):
            return f"{v:,.0f}"
        if "PSNR" in key or key == "gain dB":
            return f"{v:+.3f}" if key == "gain dB" else f"{v:.3f}"
        return f"{v:,.1f}"
    if isinstance(v, int) and key in ("params",):
        return f"{v:,}"
    return str(v)


def write_tables(jobs: list[Job], out: Path, title: str) -> Path:
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
             f"{len(ok)} of {len(table)} jobs finished; ranked by validation PSNR (Y, shaved; dB)."]
    if len(stamps) == 1:
        lines.append(f"Protocol (identical for every row): {describe_stamp(next(iter(stamps.values())))}.")
    else:
        lines.append(f"Mixed protocols (--allow-mixed), ranked apart: "
                     + "; ".join(describe_stamp(s) for s in stamps.values()) + ".")
    lines += ["", "| " + " | ".join(shown) + " |", "|" + "|".join("---:" if h not in ("job", "arch", "strategy",
              "layer", "body", "val set", "protocol") else "---" for h in shown) + "|"]
    lines += ["| " + " | ".join(_fmt(h, r.get(h)).replace("|", "\\|") for h in shown) + " |" for r in ok]
    if bad:
        lines += ["", "## Failed or unfinished", "", "| job | folder | status |", "|---|---|---|"]
        lines += [f"| {r['job']} | {r['folder']} | {r['status']} |" for r in bad]
    lines += ["", "Plots: psnr_vs_params.png, psnr_vs_throughput.png, loss_curves.png, crops.png.", ""]
    md = out / "leaderboard.md"
    md.write_text("\n".join(lines))
    return md


# ------------------------------------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


STRATEGY_MARKERS = {"pre": "o", "post": "s", "progressive": "^", "iterative": "D"}


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


# ------------------------------------------------------------------------------------------------------------- main
def report(paths: list[str | Path], out: str | Path | None = None, allow_mixed: bool = False) -> dict:
    """Collect the runs under ``paths``, write the leaderboard and plots into ``out`` (default: the one folder
    given), return ``{"jobs": [...], "files": [...]}``."""
    paths = [Path(p) for p in paths]
    jobs = [load_job(f) for f in find_runs(paths)]
    out = Path(out) if out else (paths[0] if len(paths) == 1 else Path("report"))
    out.mkdir(parents=True, exist_ok=True)
    label_jobs(jobs, paths[0] if len(paths) == 1 else None)
    check_protocols(jobs, allow_mixed)
    rank_jobs(jobs)
    title = paths[0].name if len(paths) == 1 else f"{len(paths)} folders"
    files = [write_tables(jobs, out, title), out / "leaderboard.csv"]
    plots = [(scatter(jobs, "params", "trainable parameters (log)", out / "psnr_vs_params.png",
                      f"{title}: PSNR vs parameters"), out / "psnr_vs_params.png"),
             (scatter(jobs, "patches_per_s", "train patches / s (log)", out / "psnr_vs_throughput.png",
                      f"{title}: PSNR vs training throughput"), out / "psnr_vs_throughput.png"),
             (loss_plot(jobs, out / "loss_curves.png", f"{title}: training loss"), out / "loss_curves.png"),
             (crops_plot(jobs, out / "crops.png"), out / "crops.png")]
    files += [p for made, p in plots if made]
    return {"jobs": jobs, "files": files}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="srexp-report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="a multirun folder (outputs/multirun/DATE) or run folders")
    ap.add_argument("--out", help="where to write (default: the folder given; several folders: ./report)")
    ap.add_argument("--allow-mixed", action="store_true", help="rank runs of different protocols, each apart")
    args = ap.parse_args(argv)
    try:
        res = report(args.folders, args.out, args.allow_mixed)
    except SrexpError as e:
        print(f"srexp-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    jobs = res["jobs"]
    ok = sum(j.ok for j in jobs)
    print(Path(res["files"][0]).read_text())
    print(f"{ok} of {len(jobs)} jobs finished; wrote " + ", ".join(str(f) for f in res["files"]))


if __name__ == "__main__":
    main()
