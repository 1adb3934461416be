"""Callbacks: the config travels inside every checkpoint, and a PNG grid of crops (LR | bicubic | SR | HR)."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from srexp.data.images import save_image
from srexp.ops.resize import imresize
from srexp.tasks.sr import to_float


class ConfigInCheckpoint(L.Callback):
    """Stores the resolved run config in the checkpoint, so ``srexp-eval ckpt=…`` rebuilds net and protocol."""

    def __init__(self, config: DictConfig | dict, choices: dict | None = None):
        self.config = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
        self.choices = {k: v for k, v in (choices or {}).items() if isinstance(v, str)}  # e.g. {"arch": "vdsr"}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["srexp_config"] = self.config
        checkpoint["srexp_choices"] = self.choices


def crop_grid(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int, crop: int = 96) -> torch.Tensor:
    """(C,h,w) LR, (C,H,W) SR and HR in [0,1] → one (C, crop, 4·crop) strip of the same centre crop."""
    H, W = sr.shape[-2:]
    crop = min(crop, H, W) // scale * scale
    i, j = (H - crop) // 2 // scale * scale, (W - crop) // 2 // scale * scale
    lr_c = lr[:, i // scale : (i + crop) // scale, j // scale : (j + crop) // scale]
    lr_up = F.interpolate(lr_c[None], scale_factor=scale, mode="nearest")[0]
    bic = imresize(lr[None], scale=scale)[0][:, i : i + crop, j : j + crop]
    tiles = [lr_up, bic, sr[:, i : i + crop, j : j + crop], hr[:, i : i + crop, j : j + crop]]
    return torch.cat([t.clamp(0, 1).float().cpu() for t in tiles], dim=-1)


class ImageGrid(L.Callback):
    """After each validation, saves ``grid.png`` (rows: the first ``n_images`` validation images) and logs it."""

    def __init__(self, n_images: int = 2, crop: int = 96, filename: str = "grid.png"):
        self.n_images, self.crop, self.filename = n_images, crop, filename

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.datamodule is None or not trainer.datamodule.val_pairs:
            return
        rows = []
        scale = pl_module.scale
        with torch.no_grad():
            for p in trainer.datamodule.val_pairs[: self.n_images]:
                lr = to_float(p.lr)
                sr = pl_module(lr[None].to(pl_module.device))[0]
                hr = (p.ref_y / 255).float() if lr.shape[0] == 1 else to_float(p.hr)
                rows.append(crop_grid(lr, sr, hr, scale, self.crop))
        width = max(r.shape[-1] for r in rows)
        height = max(r.shape[-2] for r in rows)
        rows = [F.pad(r, (0, width - r.shape[-1], 0, height - r.shape[-2])) for r in rows]
        grid = torch.cat(rows, dim=-2)
        out = Path(trainer.default_root_dir) / self.filename
        save_image(grid, out)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/grid", [str(out)], step=trainer.global_step, caption=["LR | bicubic | SR | HR"])
