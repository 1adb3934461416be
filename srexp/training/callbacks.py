"""Callbacks: the config travels inside every checkpoint, and a PNG grid of crops (LR | bicubic | SR | HR)."""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from srexp.data.images import save_image
from srexp.ops.resize import imresize
from srexp.ops.color import to_float


class ConfigInCheckpoint(L.Callback):
    """Stores the resolved run config in the checkpoint, so ``srexp-eval ckpt=…`` rebuilds net and protocol."""

    def __init__(self, config: DictConfig | dict, choices: dict | None = None):
        from srexp.training.runtime import redact  # no secrets in checkpoints

        self.config = redact(OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config)
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
    """After each validation, saves ``grid.png`` for people: per validation image (the first ``n_images``) the same
    centre crop as LR (nearest) | bicubic | SR | HR, columns labelled, each row with its image's SR and bicubic PSNR
    (the validation protocol's, whole image), tiles enlarged to at least ``min_side`` pixels; and ``grid_raw.png``,
    the bare tiles (srexp-report cuts the same crop of every job from it). W&B gets grid.png at the training step."""

    def __init__(self, n_images: int = 2, crop: int = 96, filename: str = "grid.png", min_side: int = 192):
        self.n_images, self.crop, self.filename, self.min_side = n_images, crop, filename, min_side

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.datamodule is None or not trainer.datamodule.val_pairs:
            return
        rows, names = [], []
        scale = pl_module.scale
        with torch.no_grad():
            for p in trainer.datamodule.val_pairs[: self.n_images]:
                lr = to_float(p.lr)
                sr = pl_module(lr[None].to(pl_module.device))[0]
                hr = (p.ref_y / 255).float() if lr.shape[0] == 1 else to_float(p.hr)
                rows.append(crop_grid(lr, sr, hr, scale, self.crop))
                names.append(getattr(p, "name", f"image {len(names)}"))
        width = max(r.shape[-1] for r in rows)
        height = max(r.shape[-2] for r in rows)
        rows = [F.pad(r, (0, width - r.shape[-1], 0, height - r.shape[-2])) for r in rows]
        folder = Path(trainer.default_root_dir)
        save_image(torch.cat(rows, dim=-2), folder / "grid_raw.png")
        by_index = {r.get("index"): r for r in getattr(pl_module, "val_rows", [])}
        captions = []
        for k, name in enumerate(names):
            m = by_index.get(k)
            captions.append(f"{name}: SR {m['psnr']:.2f} dB, bicubic {m['bicubic_psnr']:.2f} dB" if m else name)
        out = folder / self.filename
        labelled_grid(rows, captions, [f"LR x{scale} (nearest)", "bicubic", f"SR (step {trainer.global_step})",
                                       "HR"], self.min_side).save(out)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/grid", [str(out)], step=trainer.global_step, caption=["; ".join(captions)])


def labelled_grid(rows: list[torch.Tensor], captions: list[str], columns: list[str], min_side: int = 192):
    """Rows of 4 square tiles ((C, h, 4h) in [0, 1]) → a PIL image: a header with the column names, each row
    enlarged (nearest) to at least ``min_side`` pixels and preceded by its caption."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    side = rows[0].shape[-2]
    zoom = max(1, -(-min_side // max(side, 1)))
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    line = 20
    tile = side * zoom
    img = Image.new("RGB", (4 * tile, line + len(rows) * (line + tile)), "white")
    draw = ImageDraw.Draw(img)
    for c, name in enumerate(columns):
        draw.text((c * tile + 4, 3), name, fill="black", font=font)
    for k, (r, cap) in enumerate(zip(rows, captions)):
        a = (r.clamp(0, 1) * 255).round().to(torch.uint8)
        a = a.expand(3, *a.shape[1:]) if a.shape[0] == 1 else a[:3]
        tiles = Image.fromarray(np.ascontiguousarray(a.permute(1, 2, 0).numpy()))
        tiles = tiles.resize((tiles.width * zoom, tiles.height * zoom), Image.NEAREST)
        y = line + k * (line + tile)
        draw.text((4, y + 3), cap, fill="black", font=font)
        img.paste(tiles, (0, y + line))
    return img


class Throughput(L.Callback):
    """Training patches per second, all ranks together, logged as ``train/patches_per_s`` every
    ``log_every_n_steps`` batches, and the net's size (``model/params``, ``model/macs_per_lr_px``) at the start: the
    speed and size columns of a sweep's leaderboard. Validation time and the first ``warmup`` batches (loader start,
    cuDNN autotuning) are left out; the GPU is synchronised only where a window closes.

    Also the data-path telemetry: ``train/data_wait_frac`` (host time between the end of one step and the start of
    the next — waiting for the loader and the copy to the device — over the whole step time), and at the end
    ``train/peak_mem_gb`` (peak GPU memory allocated; on the CPU the peak resident memory of the process). The
    totals are printed when training ends and kept in :attr:`summary` (``val_metrics.json``, srexp-report).

    Not Lightning's ``ThroughputMonitor``: it calls ``torch.cuda.synchronize()`` after every batch (a stall per step on
    the GPU, where srexp is measured against bare PyTorch), counts rank 0's samples only, and has neither the
    data-wait fraction nor peak memory; it also warns unless the module defines ``flops_per_batch``."""

    def __init__(self, warmup: int = 1):
        self.warmup = warmup
        self.patches, self.seconds = 0, 0.0  # over the whole fit, for :attr:`patches_per_s`
        self._batches, self._window_patches, self._t0 = 0, 0, None
        self.wait_s, self.step_s = 0.0, 0.0  # host seconds waiting for data / inside the step (after warmup)
        self._end, self._start = None, None
        self.summary: dict[str, float | None] = {}

    @property
    def data_wait_frac(self) -> float | None:
        total = self.wait_s + self.step_s
        return self.wait_s / total if total > 0 else None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()
        if self._end is not None and self._batches >= self.warmup:
            self.wait_s += self._start - self._end

    @property
    def patches_per_s(self) -> float | None:
        return self.patches / self.seconds if self.seconds > 0 else None

    @staticmethod
    def _now(trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def _close(self, trainer: L.Trainer) -> float | None:
        if self._t0 is None:
            return None
        dt = self._now(trainer) - self._t0
        rate = self._window_patches / dt if dt > 0 and self._window_patches else None
        self.patches += self._window_patches
        self.seconds += dt if self._window_patches else 0.0
        self._t0, self._window_patches = None, 0
        return rate

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from srexp.nets.stats import count_params, macs_per_lr_pixel

        net = getattr(pl_module, "net", pl_module)
        stats = {"model/params": count_params(net), "model/macs_per_lr_px": macs_per_lr_pixel(net)}
        for logger in trainer.loggers:
            if trainer.ckpt_path is not None:  # a resumed run: its continued log holds them (W&B: no step 0 again)
                keys = logger.experiment.metrics_keys if isinstance(logger, CSVLogger) else None
                if keys is None or "model/params" in keys:
                    continue
            logger.log_metrics(stats, step=trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._end = time.perf_counter()
        if self._start is not None and self._batches >= self.warmup:
            self.step_s += self._end - self._start
        self._batches += 1
        if self._batches <= self.warmup or self._t0 is None:
            self._t0 = self._now(trainer) if self._batches >= self.warmup else None
            return
        self._window_patches += batch[0].shape[0] * trainer.world_size
        if self._batches % max(trainer.log_every_n_steps, 1) == 0:
            rate = self._close(trainer)
            self._t0 = self._now(trainer)
            if rate is not None:
                for logger in trainer.loggers:
                    logger.log_metrics({"train/patches_per_s": rate}, step=trainer.global_step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._close(trainer)
            self._end = None  # the pause for validation is not waiting for data

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._batches >= self.warmup:
            self._t0 = self._now(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(trainer)
        if trainer.strategy.root_device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(trainer.strategy.root_device) / 2**30
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        self.summary = {"patches_per_s": self.patches_per_s, "data_wait_frac": self.data_wait_frac,
                        "peak_mem_gb": peak}
        stats = {"train/peak_mem_gb": peak}
        if self.data_wait_frac is not None:
            stats["train/data_wait_frac"] = self.data_wait_frac
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer.global_step)
        if trainer.is_global_zero and self.patches_per_s is not None:
            where = "GPU memory" if trainer.strategy.root_device.type == "cuda" else "resident memory"
            print(f"telemetry: {self.patches_per_s:,.0f} train patches/s, {100 * (self.data_wait_frac or 0):.1f}% of "
                  f"step time waiting for data, peak {where} {peak:.2f} GB")


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, labelled by steps: a srexp run is one long epoch bounded by ``trainer.max_steps``, so the
    stock "Epoch 0/-2" says nothing; this shows "train (max_steps N)" with the batch count k/N, elapsed and ETA."""

    def _get_train_description(self, current_epoch: int) -> str:
        steps = self.trainer.max_steps
        if steps is None or steps < 0:
            return super()._get_train_description(current_epoch)
        return f"train (max_steps {steps})"
