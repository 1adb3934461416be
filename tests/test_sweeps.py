"""Sweeps: the compare_upsampling preset on the basic, joblib and submitit launchers with srexp-report on the result,
the matched parameter budget, DDP alone and inside a multirun (one run folder, one W&B run, each job once), the
W&B offline record, the Optuna objective, the SLURM preset."""
from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from PIL import Image

from conftest import run_cli, shrink
from srexp import CONF_DIR
from srexp.cli.budget import TOLERANCE, budget_table
from srexp.training.distributed import ENV, pin_ddp_child
from srexp.cli.report import report

# One intra-op thread per process: on 2 shared cores, two OpenMP threads spin against each other and a tiny conv
# takes ~100× longer (measured).
FAST = {"OMP_NUM_THREADS": "1"}
STRATEGIES = {"pre", "post", "progressive", "iterative"}
LAYERS = {"interpolate", "transposed", "reshape", "pixel_shuffle"}


def choices(job: Path) -> dict:
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]


def shows_data(png: Path, min_size: int = 200) -> None:
    """The PNG opens, is a real picture and is not blank."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert min(a.shape[:2]) >= min_size, (png, a.shape)
    assert a.std() > 10, png
    assert (a.mean(axis=2) < 200).mean() > 0.01, f"{png} is nearly blank"


def check_sweep(sweep: Path, target: int) -> None:
    jobs = sorted(p.parent for p in sweep.glob("*/val_metrics.json"))
    assert len(jobs) == 16, sorted(p.name for p in sweep.iterdir())
    combos = {(choices(j)["net/strategy"], choices(j)["net/upsample"]) for j in jobs}
    assert combos == {(s, u) for s in STRATEGIES for u in LAYERS}
    for j in jobs:
        m = json.loads((j / "val_metrics.json").read_text())
        assert abs(m["params"] / target - 1) <= TOLERANCE, (j, m["params"])
        assert m["steps"] == 2 and m["patches_per_s"] > 0 and m["macs_per_lr_px"] > 0


def check_report(sweep: Path) -> None:
    rows = list(csv.DictReader((sweep / "leaderboard.csv").open()))
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows)
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 17))
    psnr = [float(r["PSNR"]) for r in rows]
    assert psnr == sorted(psnr, reverse=True)
    assert {r["strategy"] for r in rows} == STRATEGIES and {r["layer"] for r in rows} == LAYERS
    assert all(float(r["params"]) > 0 and float(r["MACs/LR px"]) > 0 and float(r["patches/s"]) > 0 for r in rows)
    md = (sweep / "leaderboard.md").read_text()
    assert "16 of 16 jobs finished" in md and "Protocol (identical for every row): rgb_uint8, shave 4" in md
    assert sum(line.startswith("| ") and line.split("|")[1].strip().isdigit() for line in md.splitlines()) == 16
    for png in ("psnr_vs_params.png", "psnr_vs_throughput.png", "loss_curves.png", "crops.png"):
        shows_data(sweep / png)



@pytest.mark.slow  # builds the 32 nets of both sweep presets
def test_budget_presets_match_within_tolerance(one_thread):
    for sweep, target in (("compare_upsampling", 250_000), ("compare_upsampling_cpu", 26_000)):
        t, rows = budget_table(sweep)
        assert t == target and len(rows) == 16
        assert max(abs(r["off"]) for r in rows) <= TOLERANCE, [(r["strategy"], r["layer"], r["off"]) for r in rows]
        macs = {(r["strategy"], r["layer"]): r["macs_per_lr_pixel"] for r in rows}
        assert macs["pre", "pixel_shuffle"] > 4 * macs["post", "pixel_shuffle"]  # pre spends its budget at HR


@pytest.mark.slow  # builds the 32 nets of the study's two budgets
def test_upsampling_study_matches_both_budgets(one_thread):
    """The study's widths put every strategy × layer within ±10% of its parameter budget and, in the other half, of
    its compute budget (MACs per output pixel), where pre-upsampling then runs far narrower."""
    t, rows = budget_table("upsampling_study", by="params")
    assert t == 26_000 and len(rows) == 16 and max(abs(r["off"]) for r in rows) <= TOLERANCE, rows
    t, rows = budget_table("upsampling_study", by="macs")
    assert t == 4_000 and len(rows) == 16 and max(abs(r["off"]) for r in rows) <= TOLERANCE, rows
    width = {(r["strategy"], r["layer"]): r["num_feat"] for r in rows}
    assert width["pre", "pixel_shuffle"] * 2 < width["post", "interpolate"]
    from srexp.cli.budget import compose

    cfg = compose(["+sweep=upsampling_study", "sweep.budget=macs", "net/strategy=pre"])
    assert cfg.hydra.sweeper.params.seed == "0,1,2" and cfg.hydra.sweeper.params["sweep.budget"] == "params,macs"


def test_compare_archs_lists_every_preset():
    sweep = yaml.safe_load((CONF_DIR / "sweep" / "compare_archs.yaml").read_text())
    listed = sweep["hydra"]["sweeper"]["params"]["arch"].split(",")
    assert sorted(listed) == sorted(p.stem for p in (CONF_DIR / "arch").glob("*.yaml") if p.stem != "custom")


@pytest.mark.slow
def test_compare_upsampling_sweep_and_report(ddp_folders, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("srexp.cli.train", "-m", "+sweep=compare_upsampling_cpu", *shrink(*ddp_folders, steps=2, width=None),
                f"hydra.sweep.dir={sweep}", env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    check_sweep(sweep, 26_000)
    r = run_cli("srexp.cli.report", str(sweep), env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "16 of 16 jobs finished" in r.stdout
    check_report(sweep)


@pytest.mark.slow
def test_compare_upsampling_with_joblib(ddp_folders, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("srexp.cli.train", "-m", "+sweep=compare_upsampling_cpu", "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2", *shrink(*ddp_folders, steps=2, width=None), f"hydra.sweep.dir={sweep}",
                env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "n_jobs=2" in r.stdout + r.stderr  # the joblib launcher ran it
    check_sweep(sweep, 26_000)
    report([sweep])
    check_report(sweep)


@pytest.mark.slow
def test_submitit_local_two_jobs(ddp_folders, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("srexp.cli.train", "-m", "+sweep=compare_upsampling_cpu", "hydra/launcher=submitit_local",
                "net/strategy=post", "net/upsample=pixel_shuffle,transposed",
                *shrink(*ddp_folders, steps=2, width=None),
                f"hydra.sweep.dir={sweep}", env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (sweep / ".submitit").is_dir()
    jobs = sorted(p.parent.name for p in sweep.glob("*/val_metrics.json"))
    assert jobs == ["0", "1"]
    res = report([sweep])
    assert [j.short for j in sorted(res["jobs"], key=lambda j: j.folder.name)] == ["pixel_shuffle", "transposed"]


# ------------------------------------------------------------------------------------------------------------- DDP
def wandb_records(path: Path):
    """The records of an offline run's ``.wandb`` file (wandb 0.31 writes no config.yaml/summary offline): a 7-byte
    W&B header, then a LevelDB log of 32 KiB blocks holding protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is zero padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST (FIRST/MIDDLE continue the record)
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec
        elif kind == 0:
            buf = b""


def read_wandb_run(run_dir: Path) -> dict:
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    out = {"keys": set(), "config": {}}
    for rec in wandb_records(runs[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(name=rec.run.display_name, group=rec.run.run_group)
            out["config"] = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
        elif kind == "history":
            out["keys"] |= {i.key or "/".join(i.nested_key) for i in rec.history.item}
    return out


@pytest.mark.slow
def test_ddp_one_run_folder_one_wandb_run(ddp_folders, tmp_path):
    outputs = tmp_path / "outputs"
    r = run_cli("srexp.cli.train", "trainer=ddp", "trainer.devices=2", *shrink(*ddp_folders, logger="wandb"),
                env={**FAST, "SREXP_OUTPUTS": str(outputs)})
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p for p in outputs.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # the child joined the parent's ${now:} folder
    run = runs[0]
    assert (run / "ddp_rank_1.log").is_file()  # rank 1 ran there
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-4.ckpt", "last.ckpt"]
    m = json.loads((run / "val_metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 4 and m["n_images"] == 3  # the repeated image counted once
    assert r.stdout.count("model PSNR") == 1  # one table, rank 0's
    logged = [float(row["val/psnr"]) for row in csv.DictReader((run / "csv" / "metrics.csv").open()) if row["val/psnr"]]
    assert logged[-1] == pytest.approx(m["psnr"], abs=1e-4)  # the printed/saved mean is the logged val/psnr
    w = read_wandb_run(run)
    assert {"train/loss", "val/psnr", "val/ssim", "train/patches_per_s", "model/params", "model/macs_per_lr_px",
            "val/grid/_type"} <= w["keys"]
    assert w["config"]["trainer"]["strategy"] == "ddp" and w["config"]["net"]["num_feat"] == 8
    assert "net.num_feat=8" in w["name"] and w["group"] == ""


@pytest.mark.slow
def test_ddp_inside_multirun_runs_each_job_once(ddp_folders, tmp_path):
    sweep, outputs = tmp_path / "sweep", tmp_path / "outputs"
    r = run_cli("srexp.cli.train", "-m", "trainer=ddp", "trainer.devices=2",
                *shrink(*ddp_folders, "net.num_feat=4,8", steps=2, logger="wandb"), f"hydra.sweep.dir={sweep}",
                env={**FAST, "SREXP_OUTPUTS": str(outputs)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("Launching 2 jobs") == 1 and out.count("model PSNR") == 2  # no child re-ran the sweep
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    assert not outputs.exists()  # no stray run folder of a child
    for job, width in (("0", 4), ("1", 8)):
        m = json.loads((sweep / job / "val_metrics.json").read_text())
        assert m["world_size"] == 2 and m["steps"] == 2
        # rank 1 built the same net in the same folder: it joined this job, not the command line
        assert f"{m['params']:,} trainable parameters; run folder {sweep / job}" in \
            (sweep / job / "ddp_rank_1.log").read_text()
        w = read_wandb_run(sweep / job)
        assert w["group"] == "sweep" and f"net.num_feat={width}" in w["name"]
        assert w["config"]["net"]["num_feat"] == width and "val/psnr" in w["keys"]
        assert f"net.num_feat={width}" in w["config"]["config_key"] and "seed" not in w["config"]["config_key"]


def test_srmetrics_counts_a_repeated_image_once():
    """DistributedSampler pads 3 images on 2 ranks to 4 by repeating image 0: the mean must stay over 3."""
    import torch

    from srexp.metrics import SRMetrics

    hr = torch.full((1, 1, 16, 16), 100.0, dtype=torch.float64)
    m = SRMetrics(border=0)
    for idx, err in ((0, 1.0), (2, 2.0), (1, 4.0), (0, 1.0)):  # rank 0: [0, 2], rank 1: [1, 0 again]
        m.update(hr + err, hr, index=torch.tensor([idx]))
    out = m.compute()
    assert out["index"].tolist() == [0, 1, 2]
    expected = [10 * np.log10(255**2 / e**2) for e in (1.0, 4.0, 2.0)]
    assert out["psnr_per_image"].tolist() == pytest.approx(expected)
    assert out["psnr"].item() == pytest.approx(np.mean(expected))
    one = SRMetrics(border=0)
    one.update(hr + 1, hr, index=torch.tensor([0]))
    assert one.compute()["psnr_per_image"].reshape(-1).tolist() == pytest.approx([10 * np.log10(255**2)])


def test_ddp_child_is_pinned_to_its_job(monkeypatch):
    job = {"overrides": ["net.num_feat=8", "+sweep=compare_upsampling_cpu"], "run_dir": "/tmp/sweep/3"}
    monkeypatch.setenv(ENV, json.dumps(job))
    argv = ["srexp-train", "-m", "net.num_feat=4,8", "--config-name", "train", "hydra.run.dir=x"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    pin_ddp_child(argv)
    assert argv[1] == "-m"  # rank 0 keeps its command line
    monkeypatch.setenv("LOCAL_RANK", "1")
    pin_ddp_child(argv)
    assert argv == ["srexp-train", "--config-name", "train", "net.num_feat=8", "+sweep=compare_upsampling_cpu",
                    "hydra.mode=RUN", "hydra.run.dir='/tmp/sweep/3'", "hydra.output_subdir=null",
                    "hydra.job.name=ddp_rank_1"]


def test_unworkable_ddp_launches_are_one_line_errors(monkeypatch):
    import __main__
    from types import SimpleNamespace

    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    from srexp.training.distributed import check_ddp_launch
    from srexp.errors import ConfigError

    monkeypatch.setenv("LOCAL_RANK", "0")
    ddp = SimpleNamespace(strategy=SimpleNamespace(launcher=_SubprocessScriptLauncher(LightningEnvironment(), 2, 1),
                                                   strategy_name="ddp"))
    monkeypatch.setattr(__main__, "__spec__", SimpleNamespace(name="srexp.cli.train"))
    check_ddp_launch(ddp)  # srexp-train re-runs itself: fine
    monkeypatch.setattr(__main__, "__spec__", SimpleNamespace(name="joblib.externals.loky.backend.popen_loky_posix"))
    with pytest.raises(ConfigError, match=r"^trainer.strategy=ddp re-runs the command .* joblib worker"):
        check_ddp_launch(ddp)
    spawn = SimpleNamespace(strategy=SimpleNamespace(launcher=object.__new__(_MultiProcessingLauncher),
                                                     strategy_name="ddp_spawn"))
    with pytest.raises(ConfigError, match=r"^trainer.strategy=ddp_spawn: .*valid: trainer.strategy=ddp"):
        check_ddp_launch(spawn)


# ---------------------------------------------------------------------------------------------- Optuna, SLURM
@pytest.mark.slow
def test_optuna_maximises_val_psnr(ddp_folders, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("srexp.cli.train", "+hparams_search=lr_width", "hydra.sweeper.n_trials=2",
                *shrink(*ddp_folders, steps=2, width=None), f"hydra.sweep.dir={sweep}", env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    psnrs = [json.loads(p.read_text())["psnr"] for p in sweep.glob("*/val_metrics.json")]
    assert len(psnrs) == 2 and best["best_value"] == pytest.approx(max(psnrs))
    assert set(best["best_params"]) == {"task.optimizer.lr", "net.num_feat"}


def test_slurm_gpu_preset():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu", "hydra.launcher.gpus_per_node=4",
                                          "hydra.launcher.partition=gpu", "trainer=ddp"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.tasks_per_node == 4 and launcher.nodes == 1  # one process per GPU
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == "auto"  # = the GPUs SLURM gave
