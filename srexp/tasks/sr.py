"""SRTask: the thin LightningModule for pixel-loss SR training (automatic optimisation), and SRValidation, the
whole-image protocol validation that every SR task shares."""
from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor, nn

from srexp.metrics import SRMetrics, get_protocol
from srexp.ops.color import to_float
from srexp.ops.resize import imresize
from srexp.tasks.ema import ema_copy, ema_update


class SRValidation:
    """Whole-image validation and test under the metric ``protocol``, with bicubic alongside: one protocol for
    every task (SRTask, GANTask), so their numbers compare. A mixin for a LightningModule that has ``net``;
    call :meth:`init_validation` in ``__init__``."""

    def init_validation(self, scale: int, protocol: str) -> None:
        self.protocol = get_protocol(protocol)
        self.scale = scale
        self.val_metrics = SRMetrics(border=scale)
        self.bicubic_metrics = SRMetrics(border=scale)
        self.val_rows: list[dict] = []  # per-image rows of the latest validation, gathered from every rank

    def forward(self, lr: Tensor) -> Tensor:
        ema = getattr(self, "net_ema", None)  # the weight average validates when enabled (task.ema_decay)
        out = (ema if ema is not None and not self.training else self.net)(lr)
        return out[-1] if isinstance(out, (list, tuple)) else out

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        lr, target, *rest = batch
        return (to_float(lr), to_float(target) if target.dtype == torch.uint8 else target, *rest)

    def on_validation_epoch_start(self) -> None:
        self.val_rows = []

    def measure(self, lr: Tensor, ref_y: Tensor, index: Tensor | None = None, sr: Tensor | None = None) -> Tensor:
        """Adds one batch of whole images to the metrics (SR, and bicubic of the same LR); returns the SR."""
        sr = self(lr) if sr is None else sr
        self.val_metrics.update(self.protocol.sr_to_y(sr), ref_y, index=index)
        self.bicubic_metrics.update(self.protocol.sr_to_y(self.bicubic(lr, sr)), ref_y, index=index)
        return sr

    def bicubic(self, lr: Tensor, sr: Tensor) -> Tensor:
        """The baseline of bicubic's column: MATLAB bicubic of the LR (a face task: its input as is)."""
        return imresize(lr, scale=self.scale)

    def validation_step(self, batch, batch_idx: int) -> None:
        lr, ref_y, idx = batch
        self.measure(lr, ref_y, idx)

    def validation_result(self) -> tuple[dict[str, Tensor], list[dict]]:
        """(set means ``psnr``, ``ssim``, ``bicubic_psnr``, ``bicubic_ssim``; per-image rows) of what was measured
        since the last call; the metrics are reset. ``compute()`` gathers the per-image values of every rank (DDP
        shards the images), so the rows and the means are the same numbers on every rank: no sync_dist needed."""
        m, b = self.val_metrics.compute(), self.bicubic_metrics.compute()
        per_image = (m["index"], m["psnr_per_image"], m["ssim_per_image"], b["psnr_per_image"], b["ssim_per_image"])
        rows = [{"index": int(i), "psnr": p.item(), "ssim": s.item(), "bicubic_psnr": bp.item(),
                 "bicubic_ssim": bs.item()}
                for i, p, s, bp, bs in zip(*(t.reshape(-1) for t in per_image))]  # 1 image: 0-d tensors
        self.val_metrics.reset()
        self.bicubic_metrics.reset()
        return {"psnr": m["psnr"], "ssim": m["ssim"], "bicubic_psnr": b["psnr"], "bicubic_ssim": b["ssim"]}, rows

    def on_validation_epoch_end(self) -> None:
        means, self.val_rows = self.validation_result()
        self.log_dict({f"val/{k}": v.float() for k, v in means.items()}, prog_bar=False)
        self.log("val/gain_db", (means["psnr"] - means["bicubic_psnr"]).float(), prog_bar=True)

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start
    on_test_epoch_end = on_validation_epoch_end


class Evaluator(SRValidation, nn.Module):
    """A trained net under :class:`SRValidation` outside Lightning: srexp-eval and the post-training table measure
    with the very code that logs ``val/psnr``."""

    def __init__(self, net: nn.Module, scale: int, protocol: str):
        super().__init__()
        self.net = net
        self.init_validation(scale, protocol)


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
        ema_decay: float | None = None,
        channels_last: bool = False,
        compile: str | None = None,
        degradation: Callable[[Tensor, int, int], Tensor] | None = None,
    ):
        """``ema_decay`` (e.g. 0.999): keep an exponential moving average of the net's weights (``net_ema``), used
        for validation, evaluation and export; null = none. ``channels_last``: NHWC weights and batches (faster
        convolutions with bf16 on recent GPUs). ``compile``: a ``torch.compile`` mode (``default``,
        ``reduce-overhead``, ``max-autotune``) for the training forward; the checkpoint keeps the plain net's keys."""
        super().__init__()
        # Only plain values go to hparams: checkpoints stay loadable with torch.load(weights_only=True). The
        # resolved config (net, optimiser, …) travels as a plain dict (srexp.training.callbacks.ConfigInCheckpoint).
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler", "degradation"])
        self.degradation = degradation  # RandomDegradation, HighOrderDegradation: training LR made on the device
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.init_validation(scale, protocol)
        self.net_ema = ema_copy(net) if ema_decay else None
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # not a submodule: state_dict keys stay "net.…" whether or not the forward is compiled
        self.__dict__["train_net"] = torch.compile(self.net, mode=compile) if compile else self.net

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.degradation is not None and self.trainer is not None and self.trainer.training and len(batch) == 2:
            lr, hr = batch
            batch = (self.degradation(hr, hr.shape[-1] // lr.shape[-1], self.global_step), hr)
        if self.hparams.channels_last and batch[0].dim() == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return batch

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.net_ema is not None:  # here, not on_train_batch_end: checkpoints are written before that hook
            ema_update(self.net_ema, self.net, self.hparams.ema_decay, self.global_step)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        lr, hr = batch
        s = hr.shape[-1] // lr.shape[-1]  # a multi-scale batch (data.scales) may differ from self.scale
        out = self.train_net(lr) if s == self.scale else self.net(lr, scale=s)
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
