"""Perceptual metrics (LPIPS, DISTS): their defining properties on small random backbones in torchvision's key layout
(full-size files are 233 MB / 528 MB: the width is read from the file, so width-4 files stand in), where the weight
files are found and the one-line errors when they are not, and the columns they add to the validation table,
srexp-eval's table and metrics.json, and srexp-report's leaderboard. The match with the official lpips / DISTS_pytorch
code is measured outside the repository (docs/metrics.md)."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import compose_cfg, folder_overrides, shrink, write_images
from srexp.errors import ConfigError, SrexpError
from srexp.metrics import perceptual as P
from srexp.metrics.table import print_val_table
from srexp.tasks.benchmark import benchmark, markdown_table
from srexp.tasks.sr import Evaluator
from test_report import make_job

W = 4  # the stand-in files' width (torchvision's: 64)
ALEX = {0: (1, 0, 11), 3: (3, 1, 5), 6: (6, 3, 3), 8: (4, 6, 3), 10: (4, 4, 3)}  # index: (out, in) × W, kernel
VGG = {0: (1, 0, 3), 2: (1, 1, 3), 5: (2, 1, 3), 7: (2, 2, 3), 10: (4, 2, 3), 12: (4, 4, 3), 14: (4, 4, 3),
       17: (8, 4, 3), 19: (8, 8, 3), 21: (8, 8, 3), 24: (8, 8, 3), 26: (8, 8, 3), 28: (8, 8, 3)}


def tv_state_dict(convs: dict, seed: int) -> dict:
    """torchvision's ``features.N.weight/bias`` keys at width W (He-initialised), plus a classifier entry."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (co, ci, k) in convs.items():
        co, ci = co * W, ci * W or 3
        sd[f"features.{i}.weight"] = torch.randn(co, ci, k, k, generator=g) * math.sqrt(2 / (k * k * co))
        sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.01
    sd["classifier.1.weight"] = torch.zeros(2, 2)
    return sd


def heads(channels: list[int], seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(channels)}


ALEX_CH = [W * m for m in (1, 3, 6, 4, 4)]
VGG_CH = [W * m for m in (1, 2, 4, 8, 8)]


def make_weight_files(d: Path) -> dict[str, str]:
    """Stand-in weight files of every metric in ``d`` (width W backbones in torchvision's layout), by config key."""
    g = torch.Generator().manual_seed(5)
    files = {"alexnet": tv_state_dict(ALEX, 1), "vgg16": tv_state_dict(VGG, 2), "lpips_alex": heads(ALEX_CH, 3),
             "lpips_vgg": heads(VGG_CH, 4),
             "dists": {k: torch.rand(1, 3 + sum(VGG_CH), 1, 1, generator=g) for k in ("alpha", "beta")}}
    for name, sd in files.items():
        torch.save(sd, d / f"{name}.pth")
    return {name: str(d / f"{name}.pth") for name in files}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    return make_weight_files(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def metrics(weights) -> dict[str, nn.Module]:
    return {name: P.build_metric(name, weights) for name in P.METRICS}


def smooth(n: int = 3, size=(40, 48), seed: int = 0) -> torch.Tensor:
    """Smooth colour images in [0, 1]: an upsampled random field."""
    g = torch.Generator().manual_seed(seed)
    return nn.functional.interpolate(torch.rand(n, 3, 5, 6, generator=g), size=size, mode="bicubic",
                                     align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("name", P.METRICS)
def test_zero_for_identical_symmetric_per_image_and_gray(metrics, name):
    m = metrics[name]
    x, y = smooth(seed=0), smooth(seed=1)
    d = m(x, y)
    assert d.shape == (3,) and (d > 1e-3).all()
    assert m(x, x.clone()).abs().max() < 1e-6  # identical → 0
    assert torch.allclose(m(y, x), d, atol=1e-6)  # symmetric
    assert torch.allclose(torch.cat([m(x[k : k + 1], y[k : k + 1]) for k in range(3)]), d, atol=1e-6)  # per image
    gx, gy = x.mean(1, keepdim=True), y.mean(1, keepdim=True)  # a Y image counts as its grey RGB
    assert torch.allclose(m(gx, gy), m(gx.expand(-1, 3, -1, -1), gy.expand(-1, 3, -1, -1)), atol=1e-6)
    with pytest.raises(ConfigError, match="differ in shape"):
        m(x, y[..., :-1])
    with pytest.raises(ConfigError, match="too small"):
        m(x[..., :12, :12], y[..., :12, :12])


@pytest.mark.parametrize("name", P.METRICS)
def test_grows_with_distortion(metrics, name):
    x = smooth(n=2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    d = torch.stack([metrics[name](x, (x + s * noise).clamp(0, 1)) for s in (0.01, 0.03, 0.1, 0.3)])
    assert (d[1:] > d[:-1]).all(), d


def test_learned_weights_enter_as_the_definitions_say(weights, tmp_path):
    x, y = smooth(seed=0), smooth(seed=1)
    base = P.LPIPS("alex", weights["alexnet"], weights["lpips_alex"])(x, y)
    doubled = tmp_path / "heads2.pth"
    torch.save({k: 2 * v for k, v in torch.load(weights["lpips_alex"]).items()}, doubled)
    assert torch.allclose(P.LPIPS("alex", weights["alexnet"], str(doubled))(x, y), 2 * base)  # linear in the heads
    d = P.DISTS(weights["vgg16"], weights["dists"])(x, y)
    scaled = tmp_path / "ab3.pth"
    torch.save({k: 3 * v for k, v in torch.load(weights["dists"]).items()}, scaled)
    assert torch.allclose(P.DISTS(weights["vgg16"], str(scaled))(x, y), d, atol=1e-6)  # α, β normalised by their sum
    img_only = tmp_path / "img_only.pth"  # all weight on the image stage's structure term: 1 − mean SSIM-like ratio
    a = torch.zeros(1, 3 + sum(VGG_CH), 1, 1)
    a[0, :3] = 1
    torch.save({"alpha": a, "beta": torch.zeros_like(a)}, img_only)
    mx, my = x.mean(dim=(2, 3)), y.mean(dim=(2, 3))
    s1 = ((2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)).mean(1)
    assert torch.allclose(P.DISTS(weights["vgg16"], str(img_only))(x, y), 1 - s1, atol=1e-6)


def test_weights_found_in_the_hub_cache_and_the_wheels_without_importing_them(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    for kind in ("alexnet", "vgg16"):
        torch.save(torch.load(weights[kind]), cache / P.file_name(kind))
    assert P.hub_cache_path("vgg16") == cache / "vgg16-397923af.pth"
    site = tmp_path / "site"  # the two wheels' layout; importing either package would fail
    for pkg, rel, src in (("lpips", "weights/v0.1/alex.pth", "lpips_alex"), ("lpips", "weights/v0.1/vgg.pth",
                          "lpips_vgg"), ("DISTS_pytorch", "weights.pt", "dists")):
        (site / pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
        torch.save(torch.load(weights[src]), site / pkg / rel)
    monkeypatch.syspath_prepend(str(site))
    x, y = smooth(seed=0), smooth(seed=1)
    for name in P.METRICS:
        found = P.build_metric(name, {})
        assert torch.allclose(found(x, y), P.build_metric(name, weights)(x, y)), name
    assert "lpips" not in sys.modules and "DISTS_pytorch" not in sys.modules


def test_missing_or_wrong_files_are_one_line(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, **kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    cases = [
        (("lpips", {}, "task.metric_weights"), f"put torchvision's alexnet-owt-7be5be79.pth ({P.TORCHVISION['alexnet']}) "
         f"at {tmp_path / 'torch' / 'hub' / 'checkpoints' / 'alexnet-owt-7be5be79.pth'}, or set task.metric_weights.alexnet=PATH"),
        (("dists", {}, "eval.metric_weights"), "vgg16-397923af.pth"),
        (("lpips_vgg", {"vgg16": str(tmp_path / "nope.pth")}, "eval.metric_weights"),
         f"eval.metric_weights.vgg16={tmp_path / 'nope.pth'}: no such file (expected torchvision's vgg16-397923af.pth)"),
        (("lpips", {**weights, "lpips_alex": weights["lpips_vgg"]}, "k"), "lin1.model.1.weight is shape (1, 8, 1, 1), the alexnet backbone needs (1, 12, 1, 1)"),
        (("lpips", {**weights, "alexnet": weights["vgg16"]}, "k"), "features.0.weight is shape (4, 3, 3, 3), expected (4, 3, 11, 11)"),
        (("dists", {**weights, "dists": weights["lpips_vgg"]}, "k"), "alpha is missing"),
        (("lpips", {**weights, "alexnet": weights["lpips_alex"]}, "k"), "no features.0.weight"),
        (("dists", {"vgg16": weights["vgg16"], "dists": str(tmp_path)}, "k"), "k.dists="),
        (("lpips", {"alexnet": weights["alexnet"], "alex": "x"}, "k"), "k: unknown key(s) ['alex']"),
        (("ssim", {}, "k"), "metric 'ssim' is unknown (valid: lpips, lpips_vgg, dists)"),
    ]
    (tmp_path / "bad.pth").write_text("not a state dict")
    cases.append((("dists", {"vgg16": str(tmp_path / "bad.pth")}, "k"), "vgg16 weights " + str(tmp_path / "bad.pth")
                  + ": not loadable"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # neither wheel installed
    cases.append((("lpips", {"alexnet": weights["alexnet"]}, "task.metric_weights"),
                  "LPIPS alex heads: lpips is not installed; `pip install --no-deps lpips` (only its weights/v0.1/"
                  "alex.pth is read), or set task.metric_weights.lpips_alex=PATH"))
    cases.append((("dists", {"vgg16": weights["vgg16"]}, "k"), "DISTS_pytorch is not installed"))
    for (name, w, key), expected in cases:
        with pytest.raises(SrexpError) as e:
            P.build_metric(name, w, key)
        assert expected in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    with pytest.raises(ConfigError, match=r"metrics=\['lpips', 'niqe'\]: unknown \['niqe'\]"):
        P.PerceptualMetrics(["lpips", "niqe"], weights)


class Doubler(nn.Module):
    """A zero-parameter ×2 'net' (nearest): its output differs from bicubic's."""

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def test_validation_rows_table_eval_json_and_unchanged_when_off(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the table's headers on one line
    write_images(tmp_path / "val", n=2, size=(48, 40), seed=1)
    on = P.PerceptualMetrics(["lpips", "dists"], weights)
    rows, _ = benchmark({2: (Doubler(), 3)}, [str(tmp_path / "val")], "rgb_uint8", None, "cpu", metrics=on)
    row = rows[0]
    for k in ("lpips", "dists", "bicubic_lpips", "bicubic_dists"):
        assert 0 < row[k] < 1 and all(k in v for v in row["per_image"].values()), k
    assert row["lpips"] == pytest.approx(sum(v["lpips"] for v in row["per_image"].values()) / 2)
    table = markdown_table(rows, None)
    assert "| Δ PSNR | LPIPS ↓ | bicubic LPIPS | DISTS ↓ | bicubic DISTS |" in table
    assert f"| {row['lpips']:.4f} | {row['bicubic_lpips']:.4f} | {row['dists']:.4f} |" in table
    off, _ = benchmark({2: (Doubler(), 3)}, [str(tmp_path / "val")], "rgb_uint8", None, "cpu")
    assert set(off[0]) == set(row) - {"lpips", "dists", "bicubic_lpips", "bicubic_dists"}
    assert set(next(iter(off[0]["per_image"].values()))) == {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
    assert markdown_table(off, None).startswith("| set | scale | PSNR | SSIM | bicubic PSNR | paper PSNR | paper SSIM "
                                                "| Δ PSNR |\n|---|---|---|---|---|---|---|---|\n")
    assert off[0]["psnr"] == row["psnr"]

    ev = Evaluator(Doubler(), 2, "rgb_uint8", ["lpips"], weights)
    with pytest.raises(ConfigError, match="no HR image"):
        ev.measure(torch.rand(1, 3, 20, 24), torch.rand(1, 1, 40, 48) * 255, torch.tensor([0]))
    lr = torch.rand(2, 3, 20, 24)
    hr = (torch.rand(2, 3, 40, 48) * 255).to(torch.uint8)
    ev.measure(lr, torch.rand(2, 1, 40, 48) * 255, torch.tensor([0, 1]), hr=hr)
    means, per_image = ev.validation_result()
    sr = torch.round(Doubler()(lr).clamp(0, 1) * 255) / 255  # 8-bit SR against the HR, both shaved by the scale
    expected = ev.perceptual.nets["lpips"](sr[..., 2:-2, 2:-2], hr[..., 2:-2, 2:-2].float() / 255).double()
    assert torch.allclose(torch.tensor([r["lpips"] for r in per_image], dtype=torch.float64), expected)
    summary = print_val_table(per_image, None, "t")
    out = capsys.readouterr().out
    assert "model LPIPS" in out and "bicubic LPIPS" in out and summary["lpips"] == pytest.approx(expected.mean().item())
    print_val_table([{k: v for k, v in r.items() if "lpips" not in k} for r in per_image], None, "t")
    assert "LPIPS" not in capsys.readouterr().out


def test_training_logs_and_tables_the_metrics(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the table's headers on one line
    from srexp.cli.train import run

    root = tmp_path / "imgs"
    write_images(root / "train", n=2, size=(40, 40))
    write_images(root / "val", n=1, size=(48, 40), seed=1)
    cfg = compose_cfg("train", shrink(*folder_overrides(root), "task.metrics=[lpips_vgg,dists]",
                                      *(f"task.metric_weights.{k}={v}" for k, v in weights.items()),
                                      "callbacks.image_grid=null",
                                      "callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
                                      steps=2, val_every=2, width=4))
    summary = run(cfg, run_dir=str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "model LPIPS-VGG ↓" in out and "bicubic DISTS ↓" in out
    saved = json.loads((tmp_path / "run" / "val_metrics.json").read_text())
    for k in ("lpips_vgg", "dists", "bicubic_lpips_vgg", "bicubic_dists"):
        assert 0 < saved[k] < 1 and saved[k] == summary[k], k
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/lpips_vgg" in header and "val/dists" in header
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(k.startswith(("net.", "net_ema.")) for k in ckpt["state_dict"])  # no metric weights in checkpoints


def write_leaderboard(paths: list[Path], out: Path, rank_by: str = "psnr") -> None:
    """srexp-report's leaderboard without its plots (matplotlib: seconds)."""
    from srexp.cli.report import check_protocols, find_runs, label_jobs, load_job, rank_jobs
    from srexp.cli.report.table import write_tables

    jobs = [load_job(f) for f in find_runs(paths)]
    out.mkdir(parents=True, exist_ok=True)
    label_jobs(jobs, paths[0])
    check_protocols(jobs, False)
    rank_jobs(jobs, rank_by)
    write_tables(jobs, out, "t", rank_by)


def test_report_shows_and_ranks_by_the_metrics(tmp_path, capsys):
    from srexp.cli.report import main
    from srexp.cli.report.collect import PERCEPTUAL

    assert PERCEPTUAL == P.LABELS  # the report's copy (it does not import torch)
    root = tmp_path / "sweep"
    for name, psnr, lp in (("0", 27.0, 0.30), ("1", 26.0, 0.20), ("2", 25.0, None)):
        job = make_job(root, name, [f"seed={name}"], psnr)
        if lp is not None:
            m = json.loads((job / "val_metrics.json").read_text())
            (job / "val_metrics.json").write_text(json.dumps({**m, "lpips": lp, "bicubic_lpips": 0.5}))
    write_leaderboard([root], root)
    md = (root / "leaderboard.md").read_text()
    assert "| gain dB | LPIPS |" in md and "| 0.3000 |" in md and "LPIPS: on the validation set's RGB" in md
    rows = list(csv.DictReader((root / "leaderboard.csv").open()))
    assert [(r["job"], r["rank"]) for r in rows] == [("seed=0", "1"), ("seed=1", "2"), ("seed=2", "3")]
    write_leaderboard([root], tmp_path / "by_lpips", "lpips")
    rows = list(csv.DictReader((tmp_path / "by_lpips" / "leaderboard.csv").open()))
    assert [(r["job"], r["rank"], r["LPIPS"]) for r in rows] == [("seed=1", "1", "0.2"), ("seed=0", "2", "0.3"),
                                                                 ("seed=2", "3", "")]  # lowest first, none last
    assert "ranked by validation LPIPS (lower is better)" in (tmp_path / "by_lpips" / "leaderboard.md").read_text()
    capsys.readouterr()
    plain = tmp_path / "plain"
    make_job(plain, "0", ["seed=0"], 27.0)
    write_leaderboard([plain], plain)
    assert "LPIPS" not in (plain / "leaderboard.md").read_text()
    assert "LPIPS" not in (plain / "leaderboard.csv").read_text().splitlines()[0]
    with pytest.raises(SystemExit):
        main([str(plain), "--rank-by", "dists"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rank-by dists: no job has val/dists" in err[0]


def test_default_configs_keep_the_metrics_off():
    for name, key in (("train", "task"), ("eval", "eval")):
        cfg = compose_cfg(name)
        block = cfg[key]
        assert list(block.metrics) == [] and set(block.metric_weights) == set(P.WEIGHT_KEYS), name
    gan = compose_cfg("train", ["task=gan"])
    assert list(gan.task.metrics) == [] and set(gan.task.metric_weights) == set(P.WEIGHT_KEYS)
