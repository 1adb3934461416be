"""srexp-report with seeds as an axis, on hand-made run folders: jobs differing only in `seed` form one configuration
(mean, std, n, a 95% Student-t interval), ranked by the mean, each tested against the best (Welch); plots carry error
bars and the PSNR-vs-MACs Pareto front."""
from __future__ import annotations

import csv
import math

import pytest
from scipy import stats

from srexp.cli.report import main, report
from srexp.cli.report.plots import pareto
from srexp.cli.report.seeds import group_seeds
from test_report import make_job

COMMON = ["+sweep=upsampling_study", "trainer.max_steps=10"]
# (strategy, layer) → PSNR per seed: post/pixel_shuffle is best; post/transposed is 0.02 dB behind with a spread of
# 0.05 (noise); pre/interpolate is 1 dB behind with a tight spread (a real difference); iterative has one seed.
RUNS = {("post", "pixel_shuffle"): [27.30, 27.25, 27.35], ("post", "transposed"): [27.33, 27.22, 27.30],
        ("pre", "interpolate"): [26.30, 26.28, 26.31], ("iterative", "reshape"): [27.0]}


@pytest.fixture
def seeded(tmp_path):
    root, k = tmp_path / "study", 0
    for (s, u), values in RUNS.items():
        for seed, psnr in enumerate(values):
            make_job(root, str(k), [*COMMON, f"net/strategy={s}", f"net/upsample={u}", f"seed={seed}"], psnr,
                     params={"pre": 9000, "post": 4000, "iterative": 3000}[s])
            k += 1
    make_job(root, str(k), [*COMMON, "net/strategy=post", "net/upsample=reshape", "seed=0"], None, steps=3)  # failed
    return root


def test_seeds_group_into_configurations_with_interval_and_noise_marks(seeded):
    from srexp.cli.report.collect import find_runs, label_jobs, load_job

    jobs = [load_job(f) for f in find_runs([seeded])]
    label_jobs(jobs, seeded)
    configs = {c.key: c for c in group_seeds(jobs)}
    best = configs["net/strategy=post net/upsample=pixel_shuffle"]
    assert best.rank == 1 and best.n == 3 and best.within_noise and best.p_vs_best is None
    vals = RUNS[("post", "pixel_shuffle")]
    assert best.mean == pytest.approx(sum(vals) / 3) and best.std == pytest.approx(stats.tstd(vals))
    half = stats.t.ppf(0.975, 2) * stats.tstd(vals) / math.sqrt(3)  # the interval is Student-t with n-1 = 2 dof
    assert best.ci == pytest.approx((best.mean - half, best.mean + half))
    close = configs["net/strategy=post net/upsample=transposed"]
    assert close.rank == 2 and close.within_noise and close.p_vs_best > 0.05
    assert close.p_vs_best == pytest.approx(stats.ttest_ind(RUNS[("post", "transposed")], vals,
                                                            equal_var=False).pvalue)
    far = configs["net/strategy=pre net/upsample=interpolate"]
    assert far.rank == 4 and not far.within_noise and far.p_vs_best < 0.01
    one = configs["net/strategy=iterative net/upsample=reshape"]
    assert one.n == 1 and math.isnan(one.std) and one.p_vs_best is None and not one.within_noise
    failed = configs["net/strategy=post net/upsample=reshape"]
    assert failed.n == 0 and failed.rank is None


def test_report_writes_the_seed_leaderboard_and_error_bar_plots(seeded, capsys):
    res = report([seeded])
    names = {p.name for p in res["files"]}
    assert {"leaderboard_seeds.md", "leaderboard_seeds.csv", "psnr_vs_params.png", "psnr_vs_macs.png"} <= names
    rows = list(csv.DictReader((seeded / "leaderboard_seeds.csv").open()))
    assert [r["configuration"] for r in rows][:2] == ["net/strategy=post net/upsample=pixel_shuffle",
                                                      "net/strategy=post net/upsample=transposed"]
    assert [r["within noise"] for r in rows][:4] == ["best", "yes", "n<2", "no"]
    assert rows[0]["n"] == "3" and rows[0]["seeds"] == "0 1 2"
    md = (seeded / "leaderboard_seeds.md").read_text()
    assert "| 1 | net/strategy=post net/upsample=pixel_shuffle | 27.300 ± 0.050 (3) |" in md
    main([str(seeded)])
    out = capsys.readouterr().out
    assert "Leaderboard by configuration" in out and "within noise" in out


def test_no_seed_axis_no_seed_table(tmp_path):
    make_job(tmp_path / "s", "0", ["net/strategy=pre", "net/upsample=interpolate"], 26.5)
    make_job(tmp_path / "s", "1", ["net/strategy=post", "net/upsample=pixel_shuffle"], 27.0)
    assert "leaderboard_seeds.md" not in {p.name for p in report([tmp_path / "s"])["files"]}


def test_pareto_front():
    pts = [(10, 26.0), (5, 25.0), (20, 25.5), (40, 27.0), (5, 24.0)]
    assert pareto(pts) == [(5, 25.0), (10, 26.0), (40, 27.0)]


def test_config_key_drops_the_seed_and_hydra_keys():
    from srexp.training.runtime import config_key

    key = config_key(["seed=2", "net/strategy=pre", "hydra.run.dir=x", "+sweep=upsampling_study", "resume=true"])
    assert key == "+sweep=upsampling_study net/strategy=pre"
    assert config_key(["seed=1"]) == config_key(["seed=0"]) == "(defaults)"
    # a resumed job, or one pointed at another cache folder, is the same configuration
    assert config_key(["net/strategy=pre", "data.cache_dir=/a", "resume=true", "logger=csv"]) == "net/strategy=pre"
