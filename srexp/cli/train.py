"""srexp-train: compose the experiment with Hydra and train it with Lightning.

With no arguments it runs the default experiment (a small post-upsampling net trained on images bundled with
scikit-image, validated on held-out ones, on CPU in a few minutes) and prints model vs bicubic PSNR/SSIM.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from srexp import CONF_DIR
from srexp.nets.stats import macs_per_lr_pixel
from srexp.training.callbacks import ConfigInCheckpoint, Throughput
from srexp.cli import command
from srexp.training.distributed import check_ddp_launch, end_ddp_job, pin_ddp_child, share_job_with_ddp_children
from srexp.metrics import get_protocol
from srexp.nets import build_net
from srexp.tasks.benchmark import benchmark_run
from srexp.metrics.table import print_val_table
from srexp.training.resume import AtomicCheckpointIO, RNGState, resume_checkpoint, resume_requested
from srexp.cli import check_missing, one_line_errors
from srexp.training.runtime import build_loggers, save_resolved_config

log = logging.getLogger("srexp.cli.train")
# Lightning chatter that says nothing about this run
warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*litlogger.*")
warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # val metrics are gathered by SRMetrics itself
warnings.filterwarnings("ignore", message=".*evaluated exactly once.*")  # SRMetrics counts a repeated image once
warnings.filterwarnings("ignore", message=".*Previous log files in this directory will be deleted.*")  # continue_csv
warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")  # the sampler is seeded per sample index


class _NoAdverts(logging.Filter):
    """Lightning's litlogger advert (an INFO record at start-up), which asks nothing of this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
# the srun hint, a warning on any machine with slurm-wlm installed (srexp-train under SLURM: docs/sweeps.md)
warnings.filterwarnings("ignore", message=".*`srun` command is available.*")


def build_trainer(cfg: DictConfig, run_dir: str, extra_callbacks: list = ()) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    callbacks += [ConfigInCheckpoint(cfg, choices), RNGState(), *extra_callbacks]
    return instantiate(cfg.trainer, default_root_dir=run_dir, logger=build_loggers(cfg, run_dir), callbacks=callbacks,
                       plugins=[AtomicCheckpointIO()])  # a kill during a save never leaves a broken last.ckpt


def train_samples(cfg: DictConfig, world_size: int = 1) -> int:
    """One long epoch: as many patches as the run will draw (every sample index is unique, so resumable).
    ``world_size``: processes, as the trainer resolved them (``devices=auto``/``-1``, SLURM tasks × nodes)."""
    steps = cfg.trainer.get("max_steps", -1) or -1
    return steps * cfg.data.batch_size * world_size if steps > 0 else 10_000_000


def run(cfg: DictConfig, run_dir: str | None = None, callbacks: list = ()) -> dict:
    """Train, validate the best checkpoint, and (``test_sets``) print the paper-vs-ours table. ``callbacks``: extra
    Lightning callbacks (bench/reproduce.py's timed evaluation)."""
    if HydraConfig.initialized():
        finish_wandb(exit_code=1)  # left open by an earlier job of this sweep (process) that failed
    get_protocol(cfg.protocol)  # an unknown name stops here, in one line, before any start-up chatter
    check_missing(cfg)
    L.seed_everything(cfg.seed, workers=True)
    if run_dir is not None:  # the run folder: ${paths.output_dir} (Hydra's), or the one given (tests, benches)
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
    run_dir = str(cfg.paths.output_dir)
    # resume=true / ckpt_path=last: continue this run folder from its last.ckpt (srexp.training.resume); a path: start from it
    ckpt_path = str(resume_checkpoint(run_dir)) if resume_requested(cfg) else cfg.get("ckpt_path")
    resuming = resume_requested(cfg) and (Path(run_dir) / "config.yaml").is_file()
    if rank_zero_only.rank == 0 and not resuming:  # a DDP child shares rank 0's folder; a resume keeps the saved one
        save_resolved_config(cfg, run_dir)
    net = build_net(cfg.net)
    trainer = build_trainer(cfg, run_dir, callbacks)
    check_ddp_launch(trainer)
    with open_dict(cfg):
        if cfg.data.get("samples") is None:
            cfg.data.samples = train_samples(cfg, trainer.world_size)
    dm = instantiate(cfg.data)
    task = instantiate(cfg.task, net=net)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    macs = macs_per_lr_pixel(net, cfg.channels)
    log.info("net %s: %s trainable parameters; run folder %s", type(net).__name__, f"{n_params:,}", run_dir)
    share_job_with_ddp_children(trainer, run_dir)
    t0 = time.perf_counter()
    if n_params and not cfg.get("validate_only", False):
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
        ckpt = "best" if getattr(trainer.checkpoint_callback, "best_model_path", "") else None
    else:
        ckpt = None
    train_s = time.perf_counter() - t0
    if trainer.fast_dev_run:
        end_ddp_job(trainer)
        return {}
    dm.setup("validate")
    trainer.validate(task, datamodule=dm, ckpt_path=ckpt, verbose=False)
    summary = print_val_table(task.val_rows, dm.val_pairs, title=f"validation ×{cfg.scale} ({cfg.protocol}, Y, shave {cfg.scale})",
                              quiet=not trainer.is_global_zero)
    telemetry = next((cb.summary for cb in trainer.callbacks if isinstance(cb, Throughput)), {})
    speed = telemetry.get("patches_per_s")
    summary.update({"run_dir": str(run_dir), "params": n_params, "best_ckpt": ckpt and trainer.checkpoint_callback.best_model_path,
                    "stamp": task.protocol.stamp(cfg.scale, dm.val_hash), "macs_per_lr_px": macs,
                    "patches_per_s": speed, "train_s": train_s, "steps": trainer.global_step,
                    "world_size": trainer.world_size, "data_wait_frac": telemetry.get("data_wait_frac"),
                    "peak_mem_gb": telemetry.get("peak_mem_gb")})
    if trainer.is_global_zero:
        (Path(run_dir) / "val_metrics.json").write_text(json.dumps(summary, indent=2))
        if cfg.get("test_sets"):
            choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
            method = choices.get("arch") if choices.get("arch") not in (None, "custom") else None
            summary["benchmark"] = benchmark_run(cfg, task.net, run_dir, method)["rows"]
    finish_wandb()
    if trainer.is_global_zero:
        print(f"run folder: {run_dir}  ({trainer.global_step} steps, {train_s:.0f} s of training)")
    end_ddp_job(trainer)
    return summary


def finish_wandb(exit_code: int = 0) -> None:
    """One W&B run per job: the next job of a sweep (same process) must not log into this one."""
    wandb = sys.modules.get("wandb")  # not imported: no run to finish
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


@command("srexp-train", resume=True)  # one-line errors for unknown group choices; finds the run to resume
@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@one_line_errors("srexp-train")
def train(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    summary = run(cfg)
    return summary.get("psnr")  # the Optuna sweeper's objective


def main() -> float | None:
    pin_ddp_child()  # a process Lightning's DDP started runs its parent's job, not the command line (srexp.training.distributed)
    return train()


if __name__ == "__main__":
    main()
