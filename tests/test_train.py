"""End-to-end: the composed train config runs (fast_dev_run for every preset), a short run writes its folder,
checkpoints evaluate, and bad inputs are one-line errors."""
import json

import pytest
import torch

from conftest import BIG_PRESETS, compose_cfg, folder_overrides, run_cli, shrink, slow_for, write_images
from srexp import CONF_DIR
from srexp.cli.train import run

PRESETS = sorted(p.stem for p in (CONF_DIR / "arch").glob("*.yaml"))


@pytest.mark.parametrize("arch", slow_for(PRESETS, BIG_PRESETS))
def test_fast_dev_run_every_preset(arch, folders, tmp_path):
    scale = 4 if arch in ("lapsrn", "dbpn", "dbpn_small") else 2
    cfg = compose_cfg("train", shrink(*folder_overrides(folders), f"arch={arch}", f"scale={scale}", "debug=fdr",
                                      width=None))
    run(cfg, run_dir=str(tmp_path))


def test_free_composition_from_groups(folders, tmp_path):
    cfg = compose_cfg("train", shrink(*folder_overrides(folders), "net/strategy=progressive",
                                      "net/upsample=pixel_shuffle", "net/body=resblocks", "scale=4", "debug=fdr"))
    assert cfg.net._target_.endswith("ProgressiveUpsample")
    run(cfg, run_dir=str(tmp_path))


@pytest.mark.slow
def test_short_run_writes_run_folder_and_evaluates(folders, tmp_path):
    out = tmp_path / "run"
    r = run_cli("srexp.cli.train", *shrink(*folder_overrides(folders), logger="wandb"), f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "model PSNR" in r.stdout and "bicubic PSNR" in r.stdout
    assert (out / "config.yaml").is_file() and (out / "grid.png").is_file()
    from PIL import Image

    raw, shown = Image.open(out / "grid_raw.png"), Image.open(out / "grid.png")
    assert shown.width >= 4 * 192 and shown.width % raw.width == 0  # tiles enlarged (nearest) for people
    assert shown.height > raw.height * shown.width // raw.width  # plus a header and a caption per row
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best") for n in ckpts)
    csv = (out / "csv" / "metrics.csv").read_text()
    assert "val/psnr" in csv and "train/loss" in csv
    # telemetry (issue 8): throughput, data-wait fraction, peak memory in the CSV record and the summary
    for key in ("train/patches_per_s", "train/data_wait_frac", "train/peak_mem_gb"):
        assert key in csv.splitlines()[0], key
    assert list((out / "wandb").glob("offline-run-*"))
    summary = json.loads((out / "val_metrics.json").read_text())
    assert summary["n_images"] == 2 and summary["stamp"]["name"] == "rgb_uint8"
    assert 0 <= summary["data_wait_frac"] < 1 and summary["peak_mem_gb"] > 0 and summary["patches_per_s"] > 0
    assert "telemetry:" in r.stdout and "waiting for data" in r.stdout

    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["srexp_config"]["scale"] == 2
    ev = tmp_path / "eval"
    r = run_cli("srexp.cli.evaluate", f"ckpt={out / 'checkpoints' / 'last.ckpt'}", f"eval.sets=[{folders / 'val'}]",
                f"hydra.run.dir={ev}", f"eval.json={tmp_path / 'm.json'}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "m.json").read_text())
    assert rows == json.loads((ev / "metrics.json").read_text())
    assert rows[0]["scale"] == 2 and rows[0]["n_images"] == 2 and rows[0]["protocol"]["name"] == "rgb_uint8"
    assert rows[0]["protocol"]["shave"] == 2 and len(rows[0]["protocol"]["images_sha1"]) == 12


@pytest.mark.slow
def test_eval_reproduces_published_bicubic(shared_data, tmp_path):
    r = run_cli("srexp.cli.evaluate", "arch=bicubic", "eval.sets=[Set5,Set14]", "eval.scales=[2,3,4]",
                "eval.protocol=y_float", f"eval.root={shared_data}", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| Set5 | ×2 | 33.662" in r.stdout  # the Markdown table
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert len(rows) == 6
    for row in rows:
        assert abs(row["psnr"] - row["paper_psnr"]) <= 0.01, row
        assert abs(row["ssim"] - row["paper_ssim"]) <= 0.001, row
        assert row["protocol"]["name"] == "y_float"


@pytest.mark.slow
def test_missing_folder_is_one_line_error(tmp_path):
    r = run_cli("srexp.cli.train", *shrink(), "data=folder", f"data.train_dir={tmp_path / 'nope'}",
                f"data.val_dir={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1] == f"srexp-train: error: image folder {tmp_path / 'nope'} does not exist"
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # a config error leaves no run folder


@pytest.mark.slow
def test_unreadable_image_is_skipped_with_count_and_all_bad_is_error(tmp_path, folders):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"garbage")
    r = run_cli("srexp.cli.train", *shrink(), "data=folder", f"data.train_dir={bad}", f"data.val_dir={folders / 'val'}",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("srexp-train: error: no usable images") and "broken.png" in last

    mixed = tmp_path / "mixed"
    write_images(mixed, n=2, size=(64, 56))
    (mixed / "broken.png").write_bytes(b"garbage")
    r = run_cli("srexp.cli.train", *shrink(), "debug=fdr", "data=folder", f"data.train_dir={mixed}",
                f"data.val_dir={folders / 'val'}", f"hydra.run.dir={tmp_path / 'run2'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 of 3 images" in r.stdout + r.stderr and "broken.png" in r.stdout + r.stderr


@pytest.mark.slow
def test_progressive_x3_is_one_line_config_error(tmp_path):
    r = run_cli("srexp.cli.train", *shrink(), "net/strategy=progressive", "scale=3", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("srexp-train: error: net.strategy=progressive") and "3" in last


def test_every_trainer_argument_is_a_config_key():
    """`trainer.X=` works for every Lightning Trainer argument (no "Key is not in struct"), except the four that
    srexp-train builds itself."""
    import inspect

    import lightning as L

    cfg = compose_cfg("train", [])
    built = {"self", "logger", "callbacks", "plugins", "default_root_dir"}
    args = set(inspect.signature(L.Trainer.__init__).parameters) - built
    assert args == set(cfg.trainer) - {"_target_"}


@pytest.mark.slow
def test_lightning_habits_work_from_the_command_line(tmp_path):
    """fast_dev_run and limit_val_batches as a Lightning user types them."""
    # not shrink(): the default data loaders (batch 16, 2 workers) and accelerator, only patch and width made small
    r = run_cli("srexp.cli.train", "trainer.fast_dev_run=true", "logger=csv", f"hydra.run.dir={tmp_path / 'fdr'}",
                "data.patch_size=16", "net.num_feat=8")
    assert r.returncode == 0, r.stderr[-1500:]
    r = run_cli("srexp.cli.train", *shrink("trainer.limit_val_batches=1", steps=2),
                f"hydra.run.dir={tmp_path / 'lim'}")
    assert r.returncode == 0, r.stderr[-1500:]
    assert (tmp_path / "lim" / "val_metrics.json").is_file()


def test_the_readme_and_help_example_composes_at_scale_3():
    """`srexp-train arch=vdsr scale=3` (README, --help): the default HR patch follows the scale (64 → 63), so the
    data module accepts it instead of stopping at 'must be a multiple of scale'."""
    from hydra.utils import instantiate

    cfg = compose_cfg("train", ["arch=vdsr", "scale=3"])
    assert cfg.data.patch_size == 63 and instantiate(cfg.data).patch_size == 63
    assert compose_cfg("train", []).data.patch_size == 64  # the default experiment unchanged


def test_loss_is_a_group_and_the_dotted_form_is_one_line():
    from srexp.cli import check_choices
    from srexp.errors import ConfigError

    assert compose_cfg("train", []).task.loss._target_ == "torch.nn.L1Loss"
    assert compose_cfg("train", ["task/loss=mse"]).task.loss._target_ == "torch.nn.MSELoss"
    assert compose_cfg("train", ["task/loss=charbonnier"]).task.loss.eps == 1e-3
    assert compose_cfg("train", ["experiment=srcnn_x3_t91"]).task.loss._target_ == "torch.nn.MSELoss"
    with pytest.raises(ConfigError, match=r"task/loss=mse"):
        check_choices(["task.loss=mse"])
    with pytest.raises(ConfigError, match=r"valid: .*charbonnier"):
        check_choices(["task/loss=nope"])


def test_missing_mandatory_values_stop_in_one_line_before_training(tmp_path):
    """data=folder without data.val_dir, srexp-upscale without output=: a ConfigError naming the key, raised before
    any net, logger or W&B run is made (the CLI prints it as one line)."""
    from srexp.cli.upscale import run as upscale
    from srexp.errors import ConfigError

    cfg = compose_cfg("train", ["data=folder", f"data.train_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^data.val_dir is not set"):
        run(cfg, run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"^output is not set"):
        upscale(compose_cfg("upscale", [f"input={tmp_path}"]))


def test_progress_bar_counts_steps_not_epochs():
    from hydra.utils import instantiate

    bar = instantiate(compose_cfg("train", ["trainer.max_steps=600"]).callbacks.progress_bar)

    class T:
        max_steps = 600

    bar._trainer = T()
    assert bar._get_train_description(0) == "train (max_steps 600)"


@pytest.mark.slow
def test_cfg_job_resolve_prints_the_resolved_config(tmp_path):
    r = run_cli("srexp.cli.train", "--cfg", "job", "--resolve", "scale=3", f"hydra.run.dir={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "\nscale: 3\n" in "\n" + r.stdout and "${" not in r.stdout and f"output_dir: {tmp_path / 'r'}" in r.stdout
