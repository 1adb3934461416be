"""Numerical faults: a NaN/Inf loss stops the run with one line and never reaches a checkpoint."""
from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch

from srexp.errors import SrexpError


class NonFiniteError(SrexpError, FloatingPointError):
    """The loss or the weights became NaN/Inf; the message names the step and the last good checkpoint."""


class FiniteLoss(L.Callback):
    """Stops training when the loss is NaN/Inf, and refuses to write a checkpoint with NaN/Inf weights, so
    ``last.ckpt`` stays the last good state.

    On CPU the loss is checked every step (free). On a GPU a check is a host sync, so the flags accumulate on the
    device (no sync) and are read every ``check_every`` steps and before every checkpoint.
    """

    def __init__(self, check_every: int = 50, key: str = "train/loss", lazy: bool | None = None):
        """``lazy``: accumulate on the device and read every ``check_every`` steps; None = on accelerators only."""
        self.check_every, self.key, self.lazy = max(1, check_every), key, lazy
        self._bad: torch.Tensor | None = None  # device bool: a non-finite loss since the last read
        self._first_bad_step: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            loss = trainer.callback_metrics.get(self.key)  # manual optimisation (GANTask) returns nothing
        if not isinstance(loss, torch.Tensor):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        step = trainer.global_step
        if not (self.lazy if self.lazy is not None else loss.device.type != "cpu"):
            if bad:
                self._stop(trainer, step)
            return
        if self._bad is None:
            self._bad = torch.zeros((), dtype=torch.bool, device=loss.device)
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._first_bad_step = torch.where(bad & ~self._bad, torch.full_like(self._first_bad_step, step),
                                           self._first_bad_step)
        self._bad |= bad
        if step % self.check_every == 0:
            self._read(trainer)

    def _read(self, trainer) -> None:
        if self._bad is not None and bool(self._bad):  # the one host sync
            self._stop(trainer, int(self._first_bad_step))
        self._bad = self._first_bad_step = None

    def _stop(self, trainer, step: int) -> None:
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none written yet"
        raise NonFiniteError(f"{self.key} is NaN/Inf at step {step}: training stopped; the last good checkpoint is "
                             f"{last} (lower the learning rate, or set trainer.gradient_clip_val)")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._read(trainer)
        params = [p.detach() for p in pl_module.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            bad = next(n for n, p in pl_module.named_parameters() if not torch.isfinite(p).all())
            raise NonFiniteError(f"weight {bad} is NaN/Inf at step {trainer.global_step}: training stopped before "
                                 f"saving; the last good checkpoint is "
                                 f"{getattr(trainer.checkpoint_callback, 'last_model_path', '') or 'none'}")
