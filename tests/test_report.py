"""srexp-report on hand-made run folders: ranking, failed jobs listed, protocol stamps checked, plots drawn, the
same crop cut from every grid.png."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from srexp.cli.report import first_row_tiles, main, report

STAMP = {"protocol": "rgb_uint8", "shave": 4, "lr": "MATLAB bicubic of uint8 RGB", "y": "BT.601 Y",
         "images_sha1": "abc123abc123"}


def grid_png(path: Path, side: int, sr_value: int, rows: int = 2, pad: int = 0) -> None:
    """An ImageGrid-like grid: rows of [LR | bicubic | SR | HR] tiles; the first row ``pad`` px smaller."""
    w = 4 * side
    g = np.zeros((rows * side, w, 3), np.uint8)
    s0 = side - pad
    for k, v in enumerate((60, 120, sr_value, 240)):
        g[:s0, k * s0 : (k + 1) * s0] = v
    g[side:, :] = 90
    Image.fromarray(g).save(path)


def make_job(root: Path, name: str, overrides: list[str], psnr: float | None, params: int = 1000,
             stamp: dict | None = None, steps: int = 10) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    strategy, layer = (dict(o.split("=", 1) for o in overrides).get(k, "") for k in ("net/strategy", "net/upsample"))
    hydra = {"hydra": {"runtime": {"choices": {"arch": "custom", "net/strategy": strategy, "net/upsample": layer,
                                                "net/body": "resblocks"}}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (job / ".hydra" / "config.yaml").write_text("scale: 4\n")
    (job / "config.yaml").write_text(yaml.safe_dump({"scale": 4, "data": {"val": ["Set5"]}}))
    (job / "csv").mkdir()
    lines = ["step,train/loss,val/psnr"] + [f"{s},{1.0 / (s + 1):.4f}," for s in range(steps)]
    (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    if psnr is not None:
        grid_png(job / "grid.png", 48, int(psnr * 5) % 256)
        (job / "val_metrics.json").write_text(json.dumps({
            "psnr": psnr, "ssim": 0.8, "bicubic_psnr": 25.0, "bicubic_ssim": 0.7, "gain_db": psnr - 25.0,
            "n_images": 5, "params": params, "macs_per_lr_px": params * 2.0, "patches_per_s": 1000.0 / params * 50,
            "train_s": 12.5, "steps": steps, "stamp": stamp or STAMP}))
    return job


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    common = ["+sweep=compare_upsampling_cpu", "trainer.max_steps=10"]
    make_job(root, "0", [*common, "net/strategy=pre", "net/upsample=interpolate"], 26.5, 5000)
    make_job(root, "1", [*common, "net/strategy=post", "net/upsample=pixel_shuffle"], 27.25, 4000)
    make_job(root, "2", [*common, "net/strategy=post", "net/upsample=transposed"], None, steps=4)  # failed
    make_job(root, "3", [*common, "net/strategy=iterative", "net/upsample=reshape"], 26.0, 4500)
    (root / "multirun.yaml").write_text("{}\n")
    return root


def test_leaderboard_ranks_and_lists_failed(sweep):
    res = report([sweep])
    rows = list(csv.DictReader((sweep / "leaderboard.csv").open()))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    assert [(r["rank"], r["strategy"], r["layer"]) for r in ok] == [
        ("1", "post", "pixel_shuffle"), ("2", "pre", "interpolate"), ("3", "iterative", "reshape")]
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 1 and failed[0]["job"] == "net/strategy=post net/upsample=transposed"
    assert "no val_metrics.json" in failed[0]["status"] and "last logged step 3" in failed[0]["status"]
    md = (sweep / "leaderboard.md").read_text()
    assert "3 of 4 jobs finished" in md and "## Failed or unfinished" in md
    assert "| 1 | net/strategy=post net/upsample=pixel_shuffle | custom | post | pixel_shuffle | resblocks | 4,000 |" in md
    assert "images sha1 abc123abc123" in md
    assert {p.name for p in res["files"]} == {"leaderboard.md", "leaderboard.csv", "psnr_vs_params.png", "psnr_vs_macs.png",
                                              "psnr_vs_throughput.png", "loss_curves.png", "crops.png"}
    for name in ("psnr_vs_params.png", "psnr_vs_throughput.png", "loss_curves.png", "crops.png"):
        a = np.asarray(Image.open(sweep / name).convert("L")).astype(float)
        assert a.std() > 10 and (a < 200).mean() > 0.01, name  # a picture, not a blank page


def test_mixed_protocols_refused_in_one_line_unless_allowed(sweep, capsys):
    make_job(sweep, "4", ["+sweep=compare_upsampling_cpu", "trainer.max_steps=10", "net/strategy=pre",
                          "net/upsample=reshape"], 30.0, stamp={**STAMP, "protocol": "y_float"})
    with pytest.raises(SystemExit) as e:
        main([str(sweep)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("srexp-report: error: the runs were measured under 2 different "
                                               "protocols (protocol: 'rgb_uint8' in 0 vs 'y_float' in 4)")
    main([str(sweep), "--allow-mixed", "--out", str(sweep / "mixed")])
    rows = list(csv.DictReader((sweep / "mixed" / "leaderboard.csv").open()))
    ranks = {(r["protocol"], r["rank"]) for r in rows if r["status"] == "ok"}
    assert ("y_float", "1") in ranks and ("rgb_uint8", "1") in ranks  # each protocol ranked apart


def test_test_sets_become_columns(sweep):
    rows = [{"set": "Set5", "scale": 4, "psnr": 30.125, "ssim": 0.8512, "n_images": 5, "protocol": STAMP}]
    (sweep / "1" / "benchmark.json").write_text(json.dumps({"rows": rows, "missing": []}))
    report([sweep])
    by_job = {r["job"]: r for r in csv.DictReader((sweep / "leaderboard.csv").open())}
    assert by_job["net/strategy=post net/upsample=pixel_shuffle"]["Set5 ×4 PSNR"] == "30.125"
    assert by_job["net/strategy=pre net/upsample=interpolate"]["Set5 ×4 PSNR"] == ""
    assert "| Set5 ×4 PSNR | Set5 ×4 SSIM |" in (sweep / "leaderboard.md").read_text()


def test_run_folders_listed_one_by_one(sweep, tmp_path):
    report([sweep / "1", sweep / "3"], out=tmp_path / "ab")
    rows = list(csv.DictReader((tmp_path / "ab" / "leaderboard.csv").open()))
    assert [r["job"] for r in rows] == ["net/strategy=post net/upsample=pixel_shuffle",
                                        "net/strategy=iterative net/upsample=reshape"]


def test_no_runs_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert capsys.readouterr().err.strip().startswith("srexp-report: error: no run folders in")


def test_crop_tiles_from_grid(tmp_path):
    grid_png(tmp_path / "g.png", 48, 200, pad=8)  # the first image's crop is smaller than the second's
    tiles = first_row_tiles(np.asarray(Image.open(tmp_path / "g.png").convert("RGB")))
    assert [t.shape[:2] for t in tiles] == [(40, 40)] * 4
    assert [int(t.mean()) for t in tiles] == [60, 120, 200, 240]
