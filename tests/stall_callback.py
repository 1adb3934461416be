"""A test-only callback (imported by training subprocesses through PYTHONPATH): hangs a fresh run at a given step so
the test can SIGKILL or signal it at a known point (a preemption signal ends the stall); a resumed run (``trainer.ckpt_path`` set) passes through."""
import time

import lightning as L


class Stall(L.Callback):
    def __init__(self, step: int, seconds: float = 120.0):
        self.step, self.seconds = step, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            end = time.time() + self.seconds  # or until a preemption signal arrives (srexp.training.preemption)
            while time.time() < end and not any(getattr(cb, "received", None) for cb in trainer.callbacks):
                time.sleep(0.05)


class NanAt(L.Callback):
    """Poisons the weights at ``step`` so the next loss is NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            for p in pl_module.net.parameters():
                p.data.fill_(float("nan"))
