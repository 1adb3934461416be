"""srexp-train: compose the experiment with Hydra and train it with Lightning.

With no arguments it runs the default experiment (a small post-upsampling net trained on images bundled with
scikit-image, validated on held-out ones, on CPU in a few minutes) and prints model vs bicubic PSNR/SSIM.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from srexp import CONF_DIR
from srexp.callbacks import ConfigInCheckpoint
from srexp.nets import build_net
from srexp.report_table import print_val_table
from srexp.runtime import build_loggers, one_line_errors, save_resolved_config

log = logging.getLogger("srexp.train")


def build_callbacks(cfg: DictConfig, run_dir: str) -> list[L.Callback]:
    callbacks = []
    for c in (cfg.get("callbacks") or {}).values():
        if c is None:
            continue
        cb = instantiate(c)
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
            cb.dirpath = str(Path(run_dir) / "checkpoints")  # in the run folder, not under a logger's folder
        callbacks.append(cb)
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: str, extra_callbacks: list = ()) -> L.Trainer:
    callbacks = build_callbacks(cfg, run_dir)
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    callbacks += [ConfigInCheckpoint(cfg, choices), *extra_callbacks]
    return instantiate(cfg.trainer, default_root_dir=run_dir, logger=build_loggers(cfg, run_dir), callbacks=callbacks)


def train_samples(cfg: DictConfig) -> int:
    """One long epoch: as many patches as the run will draw (every sample index is unique, so resumable)."""
    steps = cfg.trainer.get("max_steps", -1) or -1
    devices = cfg.trainer.get("devices", 1)
    world = devices if isinstance(devices, int) and devices > 0 else 1
    return steps * cfg.data.batch_size * world if steps > 0 else 10_000_000


def run(cfg: DictConfig, run_dir: str | None = None) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "outputs/run"
    save_resolved_config(cfg, run_dir)
    net = build_net(cfg.net)
    with open_dict(cfg):
        if cfg.data.get("samples") is None:
            cfg.data.samples = train_samples(cfg)
    dm = instantiate(cfg.data)
    task = instantiate(cfg.task, net=net)
    trainer = build_trainer(cfg, run_dir)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    log.info("net %s: %s trainable parameters; run folder %s", type(net).__name__, f"{n_params:,}", run_dir)
    if n_params and not cfg.get("validate_only", False):
        trainer.fit(task, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        ckpt = "best" if getattr(trainer.checkpoint_callback, "best_model_path", "") else None
    else:
        ckpt = None
    if trainer.fast_dev_run:
        return {}
    dm.setup("validate")
    trainer.validate(task, datamodule=dm, ckpt_path=ckpt, verbose=False)
    summary = print_val_table(task.val_rows, dm.val_pairs, title=f"validation ×{cfg.scale} ({cfg.protocol}, Y, shave {cfg.scale})")
    summary.update({"run_dir": str(run_dir), "params": n_params, "best_ckpt": ckpt and trainer.checkpoint_callback.best_model_path,
                    "stamp": task.protocol.stamp(cfg.scale, dm.val_hash)})
    if trainer.is_global_zero:
        (Path(run_dir) / "val_metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@one_line_errors("srexp-train")
def main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    summary = run(cfg)
    return summary.get("psnr")  # the Optuna sweeper's objective


if __name__ == "__main__":
    main()
