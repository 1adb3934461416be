"""SRTask: the thin LightningModule for pixel-loss SR training (automatic optimisation), and SRValidation, the
whole-image protocol validation that every SR task shares."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from srexp.errors import ConfigError
from srexp.metrics import SRMetrics, get_protocol, shave
from srexp.metrics.perceptual import PerceptualMetrics
from srexp.nets import final
from srexp.ops.color import to_float
from srexp.ops.resize import imresize
from srexp.tasks.ema import ema_copy, ema_update


class SRValidation:
    """Whole-image validation and test under the metric ``protocol``, with bicubic alongside: one protocol for
    every task (SRTask, GANTask), so their numbers compare. A mixin for a LightningModule that has ``net``;
    call :meth:`init_validation` in ``__init__``."""

    def init_validation(self, scale: int, protocol: str, metrics: Sequence[str] = (),
                        metric_weights: Mapping | None = None, key: str = "task") -> None:
        """``metrics``: perceptual metrics measured beside PSNR/SSIM (names from
        :data:`srexp.metrics.perceptual.METRICS`, or a built :class:`PerceptualMetrics` to share), their weight
        files in ``metric_weights``; ``key`` names the config block both came from, for errors."""
        self.protocol = get_protocol(protocol)
        self.scale = scale
        # not a submodule: no row in the model summary, no state_dict entries; _apply below moves it with the task
        self.__dict__["perceptual"] = metrics if isinstance(metrics, PerceptualMetrics) else \
            PerceptualMetrics(metrics, metric_weights, f"{key}.metric_weights")
        self.metrics_key = f"{key}.metrics"
        self.val_metrics = SRMetrics(border=scale, extra=tuple(self.perceptual.names))
        self.bicubic_metrics = SRMetrics(border=scale, extra=tuple(self.perceptual.names))
        self.val_rows: list[dict] = []  # per-image rows of the latest validation, gathered from every rank

    def _apply(self, fn, recurse: bool = True):
        if "perceptual" in self.__dict__:
            self.perceptual._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, lr: Tensor) -> Tensor:
        ema = getattr(self, "net_ema", None)  # the weight average validates when enabled (task.ema_decay)
        out = (ema if ema is not None and not self.training else self.net)(lr)
        return final(out)

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """Floats on the device; a training batch ``(lr, hr)`` of a task with a ``degradation`` (SRTask, GANTask) gets
        its LR made anew from the HR there, seeded by the step."""
        lr, target, *rest = batch
        batch = (to_float(lr), to_float(target) if target.dtype == torch.uint8 else target, *rest)
        degradation = getattr(self, "degradation", None)
        if degradation is not None and self.trainer is not None and self.trainer.training and len(batch) == 2:
            lr, hr = batch
            batch = (degradation(hr, hr.shape[-1] // lr.shape[-1], self.global_step), hr)
        return batch

    def on_validation_epoch_start(self) -> None:
        self.val_rows = []

    def measure(self, lr: Tensor, ref_y: Tensor, index: Tensor | None = None, sr: Tensor | None = None,
                hr: Tensor | None = None) -> Tensor:
        """Adds one batch of whole images to the metrics (SR, and bicubic of the same LR); returns the SR. ``hr``:
        the HR in the net's channels, the perceptual metrics' reference (needed only when they are on)."""
        sr = self(lr) if sr is None else sr
        bic = self.bicubic(lr, sr)
        self.val_metrics.update(self.protocol.sr_to_y(sr), ref_y, index=index, **self.perceptual_values(sr, hr))
        self.bicubic_metrics.update(self.protocol.sr_to_y(bic), ref_y, index=index, **self.perceptual_values(bic, hr))
        return sr

    def perceptual_values(self, out: Tensor, hr: Tensor | None) -> dict[str, Tensor]:
        """Per-image perceptual metrics of ``out`` against ``hr``, both in the net's channels (a Y image is
        repeated to RGB), ``out`` quantised to 8 bits as the protocol quantises SR, both shaved as for PSNR."""
        if not self.perceptual:
            return {}
        if hr is None:
            raise ConfigError(f"{self.metrics_key}={self.perceptual.names}: this validation batch has no HR image "
                              f"(the perceptual metrics need it)")
        hr = hr.float() / 255 if hr.dtype == torch.uint8 else hr.float()
        out = torch.round(out.detach().float().clamp(0, 1) * 255) / 255
        if out.shape != hr.shape:
            raise ConfigError(f"{self.metrics_key}: the output {tuple(out.shape)} and the HR {tuple(hr.shape)} "
                              f"differ in shape")
        border = self.protocol.shave(self.scale)
        return self.perceptual(shave(out, border), shave(hr, border))

    def bicubic(self, lr: Tensor, sr: Tensor) -> Tensor:
        """The baseline of bicubic's column: MATLAB bicubic of the LR (a face task: its input as is)."""
        return imresize(lr, scale=self.scale)

    def validation_step(self, batch, batch_idx: int) -> None:
        lr, ref_y, idx, *hr = batch  # the HR rides along for the perceptual metrics
        self.measure(lr, ref_y, idx, hr=hr[0] if hr else None)

    def validation_result(self) -> tuple[dict[str, Tensor], list[dict]]:
        """(set means ``psnr``, ``ssim``, ``bicubic_psnr``, ``bicubic_ssim`` and, when on, each perceptual metric
        and its ``bicubic_`` twin; per-image rows) of what was measured since the last call; the metrics are reset.
        ``compute()`` gathers the per-image values of every rank (DDP shards the images), so the rows and the means
        are the same numbers on every rank: no sync_dist needed."""
        m, b = self.val_metrics.compute(), self.bicubic_metrics.compute()
        groups = (("psnr", "ssim"), tuple(self.perceptual.names))
        cols = [(k, src, n) for names in groups for k, src, n in
                [*((n, m, n) for n in names), *((f"bicubic_{n}", b, n) for n in names)]]
        per_image = [m["index"], *(src[f"{n}_per_image"] for _, src, n in cols)]
        rows = [{"index": int(i), **{k: v.item() for (k, _, _), v in zip(cols, vals)}}
                for i, *vals in zip(*(t.reshape(-1) for t in per_image))]  # 1 image: 0-d tensors
        self.val_metrics.reset()
        self.bicubic_metrics.reset()
        return {k: src[n] for k, src, n in cols}, rows

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

    def __init__(self, net: nn.Module, scale: int, protocol: str, metrics: Sequence[str] = (),
                 metric_weights: Mapping | None = None):
        super().__init__()
        self.net = net
        self.init_validation(scale, protocol, metrics, metric_weights, key="eval")


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
        metrics: Sequence[str] = (),
        metric_weights: Mapping | None = None,
    ):
        """``ema_decay`` (e.g. 0.999): keep an exponential moving average of the net's weights (``net_ema``), used
        for validation, evaluation and export; null = none. ``channels_last``: NHWC weights and batches (faster
        convolutions with bf16 on recent GPUs). ``compile``: a ``torch.compile`` mode (``default``,
        ``reduce-overhead``, ``max-autotune``) for the training forward; the checkpoint keeps the plain net's keys.
        ``metrics``: perceptual metrics validated beside PSNR/SSIM (``lpips``, ``lpips_vgg``, ``dists``; weight
        files in ``metric_weights``, see :mod:`srexp.metrics.perceptual`)."""
        super().__init__()
        # Only plain values go to hparams: checkpoints stay loadable with torch.load(weights_only=True). The
        # resolved config (net, optimiser, …) travels as a plain dict (srexp.training.callbacks.ConfigInCheckpoint).
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler", "degradation", "metrics",
                                          "metric_weights"])
        self.degradation = degradation  # RandomDegradation, HighOrderDegradation: training LR made on the device
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.init_validation(scale, protocol, metrics, metric_weights)
        self.net_ema = ema_copy(net) if ema_decay else None
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # not a submodule: state_dict keys stay "net.…" whether or not the forward is compiled
        self.__dict__["train_net"] = torch.compile(self.net, mode=compile) if compile else self.net

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
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
