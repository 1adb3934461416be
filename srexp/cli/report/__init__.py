"""srexp-report: the comparison report of a sweep (a multirun folder) or of any run folders.

    srexp-report outputs/multirun/2024-05-01_12-00-00_compare_upsampling
    srexp-report outputs/2024-05-01/10-00-00 outputs/2024-05-02/09-30-00 --out reports/ab

Writes into the folder (or ``--out``):

* ``leaderboard.md`` / ``leaderboard.csv``: one row per job — arch / strategy / upsample layer / body, params, MACs
  per LR pixel, train patches/s, PSNR/SSIM on the validation set (and on every ``test_sets`` set and scale the run
  measured), gain over bicubic, LPIPS/DISTS where the runs validated with them (``task.metrics``), train and job
  wall time, ranked by validation PSNR (``--rank-by lpips``: by LPIPS, lowest first). Jobs without
  ``val_metrics.json`` (failed, or still running) are listed with their overrides, never dropped.
* ``psnr_vs_params.png``, ``psnr_vs_throughput.png``, ``loss_curves.png`` (``csv/metrics.csv`` of every job, the
  failed ones too) and ``crops.png``: the same crop (LR | bicubic | HR, then every job's SR) from each ``grid_raw.png``.

Every row's protocol stamp (metric protocol, shave, how LR was made, validation-images hash) must be the same, or the
numbers are not comparable: a one-line error unless ``--allow-mixed``, which ranks each protocol apart.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srexp.cli.report.collect import (RANK_BY, ReportError, check_protocols, find_runs, label_jobs,  # noqa: F401
                                      load_job, rank_jobs)
from srexp.cli.report.plots import crops_plot, first_row_tiles, loss_plot, scatter  # noqa: F401
from srexp.cli.report.seeds import group_seeds, has_repeats, write_seed_tables
from srexp.cli.report.table import write_tables
from srexp.errors import SrexpError


# ------------------------------------------------------------------------------------------------------------- main
def report(paths: list[str | Path], out: str | Path | None = None, allow_mixed: bool = False,
           rank_by: str = "psnr") -> dict:
    """Collect the runs under ``paths``, write the leaderboard and plots into ``out`` (default: the one folder
    given), return ``{"jobs": [...], "files": [...]}``. ``rank_by``: the validation metric that ranks the
    leaderboard (psnr, ssim: higher first; lpips, lpips_vgg, dists: lower first)."""
    paths = [Path(p) for p in paths]
    jobs = [load_job(f) for f in find_runs(paths)]
    out = Path(out) if out else (paths[0] if len(paths) == 1 else Path("report"))
    out.mkdir(parents=True, exist_ok=True)
    label_jobs(jobs, paths[0] if len(paths) == 1 else None)
    check_protocols(jobs, allow_mixed)
    rank_jobs(jobs, rank_by)
    title = paths[0].name if len(paths) == 1 else f"{len(paths)} folders"
    files = [write_tables(jobs, out, title, rank_by), out / "leaderboard.csv"]
    configs = group_seeds(jobs)
    if has_repeats(configs):  # seeds as an axis: mean ± std (n), 95% interval, within-noise marks
        files += [write_seed_tables(configs, out, title), out / "leaderboard_seeds.csv"]
    scale = next((j.config.get("scale") for j in jobs if j.config.get("scale")), 1) or 1
    plots = [(scatter(configs, lambda c: c.mean_of("params"), "trainable parameters (log)",
                      out / "psnr_vs_params.png", f"{title}: PSNR vs parameters"), out / "psnr_vs_params.png"),
             (scatter(configs, lambda c: (c.mean_of("macs_per_lr_px") or 0) / scale**2,
                      "MACs per output (HR) pixel (log)", out / "psnr_vs_macs.png",
                      f"{title}: PSNR vs compute, with the Pareto front", frontier=True), out / "psnr_vs_macs.png"),
             (scatter(configs, lambda c: c.mean_of("patches_per_s"), "train patches / s (log)",
                      out / "psnr_vs_throughput.png", f"{title}: PSNR vs training throughput"),
              out / "psnr_vs_throughput.png"),
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
    ap.add_argument("--rank-by", default="psnr", choices=list(RANK_BY),
                    help="the validation metric that ranks the leaderboard (default psnr; lpips, lpips_vgg, dists: "
                         "lower first, for runs trained with task.metrics=[…])")
    args = ap.parse_args(argv)
    try:
        res = report(args.folders, args.out, args.allow_mixed, args.rank_by)
    except SrexpError as e:
        print(f"srexp-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    jobs = res["jobs"]
    ok = sum(j.ok for j in jobs)
    print(Path(res["files"][0]).read_text())
    seeds = next((f for f in res["files"] if Path(f).name == "leaderboard_seeds.md"), None)
    if seeds:
        print(Path(seeds).read_text())
    print(f"{ok} of {len(jobs)} jobs finished; wrote " + ", ".join(str(f) for f in res["files"]))


if __name__ == "__main__":
    main()
