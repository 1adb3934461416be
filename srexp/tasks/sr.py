"""SRTask: the thin LightningModule for pixel-loss SR training (automatic optimisation), and SRValidation, the
whole-image protocol validation that every SR task shares."""
from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor, nn

from srexp.metrics import SRMetrics, get_protocol, psnr_ssim
from srexp.ops.resize import imresize


def to_float(x: Tensor) -> Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


class SRValidation:
    """Whole-image validation and test under the metric ``protocol``, with bicubic alongside: one protocol for
    every task (SRTask, GANTask), so their numbers compare. A mixin for a LightningModule that has ``net``;
    call :meth:`init_validation` in ``__init__``."""

    def init_validation(self, scale: int, protocol: str) -> None:
        self.protocol = get_protocol(protocol)
        self.scale = scale
        self.val_metrics = SRMetrics(border=scale)
        self.bicubic_metrics = SRMetrics(border=scale)
        self.val_rows: list[dict] = []  # per-image rows of the latest validation (rank-local)

    def forward(self, lr: Tensor) -> Tensor:
        out = self.net(lr)
        return out[-1] if isinstance(out, (list, tuple)) else out

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        lr, target, *rest = batch
        return (to_float(lr), to_float(target) if target.dtype == torch.uint8 else target, *rest)

    def on_validation_epoch_start(self) -> None:
        self.val_rows = []

    def validation_step(self, batch, batch_idx: int) -> None:
        lr, ref_y, idx = batch
        sr_y = self.protocol.sr_to_y(self(lr))
        bic_y = self.protocol.sr_to_y(imresize(lr, scale=self.scale))
        self.val_metrics.update(sr_y, ref_y)
        self.bicubic_metrics.update(bic_y, ref_y)
        (p,), (s,) = psnr_ssim(sr_y, ref_y, self.scale)
        (bp,), (bs,) = psnr_ssim(bic_y, ref_y, self.scale)
        self.val_rows.append({"index": int(idx[0]), "psnr": p.item(), "ssim": s.item(),
                              "bicubic_psnr": bp.item(), "bicubic_ssim": bs.item()})

    def on_validation_epoch_end(self) -> None:
        m, b = self.val_metrics.compute(), self.bicubic_metrics.compute()
        self.log_dict({"val/psnr": m["psnr"].float(), "val/ssim": m["ssim"].float(),
                       "val/bicubic_psnr": b["psnr"].float(), "val/bicubic_ssim": b["ssim"].float()},
                      prog_bar=False)
        self.log("val/gain_db", (m["psnr"] - b["psnr"]).float(), prog_bar=True)
        self.val_metrics.reset()
        self.bicubic_metrics.reset()

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start
    on_test_epoch_end = on_validation_epoch_end


class SRTask(SRValidation, L.LightningModule):
    """Trains ``net`` with ``loss``; validates on whole images under the metric ``protocol``.

    A progressive net returns one output per ×2 level; the loss is summed over levels against the HR resized
    (MATLAB bicubic) to each level's size, as LapSRN does.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        scheduler_interval: str = "step",
        scale: int = 2,
        protocol: str = "rgb_uint8",
    ):
        super().__init__()
        # Only plain values go to hparams: checkpoints stay loadable with torch.load(weights_only=True). The
        # resolved config (net, optimiser, …) travels as a plain dict (srexp.callbacks.ConfigInCheckpoint).
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.init_validation(scale, protocol)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        lr, hr = batch
        out = self.net(lr)
        if isinstance(out, (list, tuple)):
            loss = sum(self.loss(o, hr if o.shape == hr.shape else imresize(hr, size=o.shape[-2:])) for o in out)
        else:
            loss = self.loss(out, hr)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.hparams.scheduler_interval}}
