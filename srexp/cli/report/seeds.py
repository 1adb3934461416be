"""Seeds as an axis: jobs that differ only in ``seed`` are one configuration, reported as mean ± std (n) with a 95%
interval, ranked by the mean, each compared with the best by Welch's t-test (scipy) so that differences within the
run-to-run noise are marked as such rather than ranked."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from srexp.cli.report.collect import Job, _stamp_key

ALPHA = 0.05  # a configuration is "within noise" of the best when Welch's test cannot tell them apart at 5%


@dataclass
class Config:
    key: str  # the job label less its seed
    jobs: list[Job]
    psnr: list[float] = field(default_factory=list)
    mean: float = math.nan
    std: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    p_vs_best: float | None = None  # Welch's two-sided p against the best configuration; None for the best itself
    within_noise: bool = False  # the best, or not distinguishable from it
    rank: int | None = None

    @property
    def n(self) -> int:
        return len(self.psnr)

    @property
    def seeds(self) -> list:
        """The finished runs' seeds (the ``seed=`` override, else the config's)."""
        out = []
        for j in self.jobs:
            if j.ok:
                over = next((o.split("=", 1)[1] for o in j.overrides if o.lstrip("+").startswith("seed=")), None)
                out.append(over if over is not None else j.config.get("seed"))
        return out

    def mean_of(self, key: str) -> float | None:
        vals = [j.metrics.get(key) for j in self.jobs if j.ok and j.metrics.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def first(self) -> Job:
        return self.jobs[0]


def config_key(job: Job) -> str:
    """The job's label (its own overrides) less the seed and what does not change the result (resume, caches,
    logging: :data:`srexp.training.runtime.NOT_CONFIG`)."""
    from srexp.training.runtime import config_key as key

    return key(job.label.split()) if "=" in job.label else job.label


def _stats(values: list[float]) -> tuple[float, float, tuple[float, float]]:
    from scipy import stats

    n, mean = len(values), sum(values) / len(values)
    if n < 2:
        return mean, math.nan, (math.nan, math.nan)
    std = stats.tstd(values)  # ddof = 1
    ci = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n)) if std > 0 else (mean, mean)
    return mean, std, (float(ci[0]), float(ci[1]))


def _welch(a: list[float], b: list[float]) -> float | None:
    """Two-sided p of Welch's t-test (unequal variances); None where it is undefined (fewer than 2 seeds)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if stats.tstd(a) == 0 and stats.tstd(b) == 0:
        return 1.0 if sum(a) / len(a) == sum(b) / len(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def group_seeds(jobs: list[Job]) -> list[Config]:
    """Configurations (one per protocol stamp and job label less ``seed``), ranked by mean validation PSNR within
    their protocol, with Welch's p against the best and the within-noise mark."""
    groups: dict[tuple[str, str], Config] = {}
    for j in sorted(jobs, key=lambda j: not j.ok):  # finished first: an unfinished seed joins its configuration
        key = config_key(j)
        stamp = _stamp_key(j.metrics.get("stamp")) if j.ok else next((s for s, k in groups if k == key), "")
        groups.setdefault((stamp, key), Config(key, [])).jobs.append(j)
    for c in groups.values():
        c.psnr = [j.metrics["psnr"] for j in c.jobs if j.ok and j.metrics.get("psnr") is not None]
        if c.psnr:
            c.mean, c.std, c.ci = _stats(c.psnr)
    by_stamp: dict[str, list[Config]] = {}
    for (stamp, _), c in groups.items():
        if c.psnr:
            by_stamp.setdefault(stamp, []).append(c)
    for cs in by_stamp.values():
        cs.sort(key=lambda c: -c.mean)
        best = cs[0]
        for r, c in enumerate(cs, start=1):
            c.rank = r
            c.p_vs_best = None if c is best else _welch(c.psnr, best.psnr)
            c.within_noise = c is best or (c.p_vs_best is not None and c.p_vs_best >= ALPHA)
    return sorted(groups.values(), key=lambda c: (c.rank is None, c.rank or 0))


def has_repeats(configs: list[Config]) -> bool:
    return any(c.n > 1 for c in configs)


def _f(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


HEADER = ["rank", "configuration", "strategy", "layer", "n", "seeds", "PSNR mean", "PSNR std", "95% CI low",
          "95% CI high", "Δ best", "p vs best (Welch)", "within noise", "SSIM mean", "params", "MACs/LR px",
          "MACs/HR px", "patches/s"]


def _mark(c: Config) -> str:
    if not c.psnr:
        return ""
    if c.rank == 1:
        return "best"
    if c.p_vs_best is None:
        return "n<2"  # one seed (here or in the best): no test
    return "yes" if c.within_noise else "no"


def seed_rows(configs: list[Config]) -> list[dict]:
    out = []
    best = {id(c): c for c in configs if c.rank == 1}
    top = next(iter(best.values()), None)
    for c in configs:
        j = c.first
        scale = j.config.get("scale") or 1
        macs = c.mean_of("macs_per_lr_px")
        out.append({"rank": c.rank, "configuration": c.key, "strategy": j.choices.get("net/strategy", ""),
                    "layer": j.choices.get("net/upsample", ""), "n": c.n, "seeds": " ".join(map(str, c.seeds)),
                    "PSNR mean": c.mean if c.psnr else None, "PSNR std": c.std, "95% CI low": c.ci[0],
                    "95% CI high": c.ci[1], "Δ best": (c.mean - top.mean) if top and c.psnr else None,
                    "p vs best (Welch)": c.p_vs_best, "within noise": _mark(c), "SSIM mean": c.mean_of("ssim"), "params": c.mean_of("params"),
                    "MACs/LR px": macs, "MACs/HR px": macs / scale**2 if macs else None,
                    "patches/s": c.mean_of("patches_per_s")})
    return out


def write_seed_tables(configs: list[Config], out: Path, title: str) -> Path:
    rows = seed_rows(configs)
    with (out / "leaderboard_seeds.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADER)
        w.writeheader()
        w.writerows(rows)
    lines = [f"# Leaderboard by configuration: {title}", "",
             f"{len(configs)} configurations; runs that differ only in `seed` are one configuration. Ranked by mean "
             f"validation PSNR (Y, shaved; dB); ± is the sample standard deviation over seeds, the interval a 95% "
             f"Student-t interval of the mean, p the two-sided Welch t-test against the best (scipy). "
             f"**within noise**: p ≥ {ALPHA} — not distinguishable from the best with these seeds.", "",
             "| rank | configuration | PSNR mean ± std (n) | 95% CI | Δ best | p vs best | within noise | params | "
             "MACs/HR px | patches/s |", "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        if r["PSNR mean"] is None:
            continue
        lines.append(f"| {r['rank']} | {r['configuration']} | {r['PSNR mean']:.3f} ± {_f(r['PSNR std'], '.3f')} "
                     f"({r['n']}) | {_f(r['95% CI low'], '.3f')}–{_f(r['95% CI high'], '.3f')} | "
                     f"{_f(r['Δ best'], '+.3f')} | {_f(r['p vs best (Welch)'], '.3f')} | {r['within noise']} | "
                     f"{_f(r['params'], ',.0f')} | {_f(r['MACs/HR px'], ',.0f')} | {_f(r['patches/s'], ',.0f')} |")
    failed = [c for c in configs if not c.psnr]
    if failed:
        lines += ["", "No finished run: " + ", ".join(c.key for c in failed) + "."]
    md = out / "leaderboard_seeds.md"
    md.write_text("\n".join(lines) + "\n")
    return md
