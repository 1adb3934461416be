"""Regenerate the upsampling study (docs/upsampling_study.md) in one command: every strategy × upsample layer ×
budget × seed of ``+sweep=upsampling_study``, two jobs at a time with one thread each, then srexp-report.

    SREXP_DATA=/data python bench/upsampling_study.py              # train what is missing, then the report
    python bench/upsampling_study.py --report-only                 # the report and the page's figures only
    python bench/upsampling_study.py --seeds 0 1 --budgets params  # a subset

The same jobs as ``srexp-train -m +sweep=upsampling_study`` (a user's one-liner, Hydra's joblib launcher), run here
as separate processes so the study is resumable: a job whose folder (outputs/upsampling_study/<budget>/<strategy>_
<layer>/seed<k>) holds ``val_metrics.json`` is skipped, one with a ``last.ckpt`` continues from it. The report goes
to docs/upsampling_study/ (leaderboards, plots), with ``study.json`` (wall time, machine, command).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "outputs" / "upsampling_study"
DOCS = REPO / "docs" / "upsampling_study"
PAGE = REPO / "docs" / "upsampling_study.md"
STRATEGIES = ("pre", "post", "progressive", "iterative")
LAYERS = ("interpolate", "transposed", "reshape", "pixel_shuffle")
BUDGETS = ("params", "macs")
REPORT_FILES = ("leaderboard_seeds.md", "leaderboard_seeds.csv", "leaderboard.csv", "psnr_vs_params.png",
                "psnr_vs_macs.png", "psnr_vs_throughput.png", "loss_curves.png", "val_curves.png", "crops.png")


def job_dir(budget: str, strategy: str, layer: str, seed: int) -> Path:
    return RUNS / budget / f"{strategy}_{layer}" / f"seed{seed}"


def run_job(budget: str, strategy: str, layer: str, seed: int, threads: int, extra: list[str]) -> tuple[str, float, int]:
    out = job_dir(budget, strategy, layer, seed)
    over = ["+sweep=upsampling_study", f"sweep.budget={budget}", f"net/strategy={strategy}", f"net/upsample={layer}",
            f"seed={seed}", f"hydra.run.dir={out}", f"data.cache_dir={RUNS / 'cache'}", "logger=csv",
            "callbacks.progress_bar=null", *extra]  # the cache: T91 and Set5 decoded once for all jobs
    if (out / "checkpoints" / "last.ckpt").is_file():
        over.append("resume=true")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with (out.parent / f"seed{seed}.log").open("w") as log:
        rc = subprocess.call([sys.executable, "-m", "srexp.cli.train", *over], cwd=REPO, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    return str(out.relative_to(REPO)), time.perf_counter() - t0, rc


def report(budgets: list[str]) -> None:
    """srexp-report over each budget's jobs into docs/upsampling_study/<budget>/, plus the validation curves."""
    from srexp.cli.report import report as make_report

    for b in budgets:
        if not (RUNS / b).is_dir():
            continue
        dst = DOCS / b
        tmp = RUNS / f"report_{b}"
        res = make_report([RUNS / b], out=tmp)
        val_curves(res["jobs"], tmp / "val_curves.png", f"upsampling study, {b} budget: validation PSNR")
        dst.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            if (tmp / name).is_file():
                shutil.copy2(tmp / name, dst / name)
        table = tmp / "leaderboard_seeds.md"
        if table.is_file() and PAGE.is_file():  # the page embeds the table between its markers
            body = "\n".join(table.read_text().splitlines()[2:]).strip()  # without the title
            done = sum(j.ok for j in res["jobs"])
            body += f"\n\n{done} of {len(res['jobs'])} jobs of this budget finished when the table was written."
            text, mark = PAGE.read_text(), f"<!-- {b} table -->"
            if text.count(mark) == 2:
                head, _, rest = text.partition(mark)
                _, _, tail = rest.partition(mark)
                PAGE.write_text(f"{head}{mark}\n{body}\n{mark}{tail}")


def val_curves(jobs, path: Path, title: str) -> None:
    """Validation PSNR against step, one panel per strategy, the mean over seeds per upsample layer: has each
    configuration flattened?"""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), sharey=True)
    bic = [j.metrics.get("bicubic_psnr") for j in jobs if j.ok and j.metrics.get("bicubic_psnr") is not None]
    bicubic = sum(bic) / len(bic) if bic else None
    off: list[str] = []
    for ax, s in zip(axes, STRATEGIES):
        for k, u in enumerate(LAYERS):
            curves = []
            for j in jobs:
                if j.ok and j.choices.get("net/strategy") == s and j.choices.get("net/upsample") == u:
                    f = j.folder / "csv" / "metrics.csv"
                    pts = {}
                    if f.is_file():
                        for row in csv.DictReader(f.open()):
                            if row.get("val/psnr") not in (None, ""):
                                pts[int(float(row["step"]))] = float(row["val/psnr"])
                    if pts:
                        curves.append(pts)
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            mean = [sum(c[t] for c in curves) / len(curves) for t in steps]
            final = mean[-1] if mean else None
            if final is not None and bicubic is not None and final < bicubic - 3:  # collapsed (reshape): a note
                off.append(f"{s} / {u} {final:.1f} dB")
                continue
            ax.plot(steps, mean, marker=".", color=f"C{k}", label=f"{u} (n={len(curves)})")
        ax.set_title(s)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Set5 ×4 PSNR (dB), mean over seeds")
    if bicubic is not None:
        for ax in axes:
            ax.axhline(bicubic, color="gray", linestyle="--", linewidth=1)
    fig.suptitle(title + " (dashed: bicubic)" + (f"; off scale, more than 3 dB below bicubic: {', '.join(off)}"
                                                   if off else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=BUDGETS)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    ap.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2: one per core)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("extra", nargs="*", help="more srexp-train overrides for every job")
    args = ap.parse_args()
    if not args.report_only:
        todo = [(b, s, u, k) for b, k, s, u in itertools.product(args.budgets, args.seeds, args.strategies, args.layers)
                if not (job_dir(b, s, u, k) / "val_metrics.json").is_file()]
        print(f"{len(todo)} jobs to run ({args.jobs} at a time, {args.threads} thread(s) each)", flush=True)
        t0 = time.perf_counter()
        failed = []
        with ThreadPoolExecutor(args.jobs) as pool:
            for folder, secs, rc in pool.map(lambda t: run_job(*t, args.threads, args.extra), todo):
                print(f"{'ok' if rc == 0 else f'FAILED ({rc})'} {secs:6.0f} s  {folder}", flush=True)
                if rc:
                    failed.append(folder)
        wall = time.perf_counter() - t0
        DOCS.mkdir(parents=True, exist_ok=True)
        meta = DOCS / "study.json"
        record = json.loads(meta.read_text()) if meta.is_file() else {"sessions": []}
        record["sessions"].append({"date": str(date.today()), "jobs": len(todo), "wall_s": round(wall),
                                   "jobs_at_a_time": args.jobs, "threads": args.threads, "failed": failed,
                                   "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                                   "cpu": os.cpu_count()})
        meta.write_text(json.dumps(record, indent=2) + "\n")
        print(f"trained {len(todo)} jobs in {wall / 60:.1f} min; {len(failed)} failed", flush=True)
    report(args.budgets)
    print(f"report: {DOCS}")


if __name__ == "__main__":
    main()
