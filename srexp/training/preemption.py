"""Preemption: a signal before a time limit or a preemption saves ``last.ckpt``, requeues the SLURM job and stops; the
requeued job continues from that checkpoint through srexp's exact resume, so its final weights equal an
uninterrupted run's (CPU), with one W&B run id and one continuous CSV log.

The signal: ``sbatch --signal=USR1@90`` (90 s before the time limit), ``scancel --signal=USR1 <job>``, submitit's
``USR2`` (``hydra.launcher.signal_delay_s``), or ``kill -USR1 <pid>`` on a local run (which saves and stops, no
requeue). The handler only raises a flag; the batch's end saves and the next batch's start stops, so nothing is
written from inside a training step. Lightning's own SLURM handler (``hpc_ckpt_N.ckpt``) is not installed: its mid-epoch
restore replays neither srexp's data position nor its RNG states, and it restarts the CSV log.

Under DDP every rank gets the signal, but not at the same batch; the ranks agree (one all-reduce) every
``check_every`` steps, so they all save and stop at the same step. A requeued job is recognised by
``SLURM_RESTART_COUNT`` (:func:`srexp.training.resume.requeued`).
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path

import lightning as L

from srexp.errors import ConfigError

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: not finished, try again (the requeued job does)


class Preempted(SystemExit):
    """Training stopped on a preemption signal after saving ``last.ckpt``. A SystemExit, not an Exception: Hydra's
    launchers and submitit must not record the job as finished (submitit would return its result to the sweep)."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT)
        self.message = message


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` for an array task (submitit's sweeps), else the job."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array and "SLURM_ARRAY_TASK_ID" in os.environ \
        else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


class Preemption(L.Callback):
    """On ``signals`` (names such as ``SIGUSR1``): at the batch's end write ``last_ckpt``, requeue the SLURM job
    (``requeue``: when running as a SLURM batch job), and stop with exit status 75."""

    def __init__(self, last_ckpt: str, signals: tuple[str, ...] | list[str] = ("SIGUSR1", "SIGUSR2"),
                 requeue: bool = True, check_every: int = 50):
        self.last_ckpt, self.requeue, self.check_every = Path(last_ckpt), requeue, max(1, check_every)
        self.signals = []
        for name in signals:
            sig = getattr(signal, str(name).upper(), None) or getattr(signal, "SIG" + str(name).upper(), None)
            if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP):
                raise ConfigError(f"callbacks.preemption.signals: {name!r} is not a signal that can be caught "
                                  f"(valid: SIGUSR1, SIGUSR2, SIGTERM, ...)")
            self.signals.append(sig)
        self.received: signal.Signals | None = None
        self._saved_step: int | None = None
        self._previous: dict = {}

    # Registered in setup(), before Lightning registers its handlers (it leaves a signal that has one alone).
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or os.name == "nt":
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore(trainer)  # Lightning skips teardown() after an exception (Preempted included)

    def _restore(self, trainer) -> None:
        """Put back the handlers found at setup; Lightning puts back those it found (ours) after this: tell it."""
        originals = getattr(getattr(trainer, "_signal_connector", None), "_original_handlers", None)
        for sig, handler in self._previous.items():
            handler = handler if handler is not None else signal.SIG_DFL
            signal.signal(sig, handler)
            if isinstance(originals, dict) and sig in originals:
                originals[sig] = handler
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    # The checkpoint is written at a batch's end, where ModelCheckpoint writes last.ckpt (the state srexp's exact resume
    # restores); the job stops at the next batch's start, once Lightning has logged that batch's metrics (it does so
    # after on_train_batch_end), so the CSV rows up to the checkpoint are on disk.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            if trainer.global_step % self.check_every:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)  # any rank got it: all stop here
        if stop and self._saved_step is None:
            trainer.save_checkpoint(self.last_ckpt)  # every rank calls it; rank 0 writes (atomically)
            self._saved_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._saved_step is not None:
            self._stop(trainer)

    def _stop(self, trainer) -> None:
        name = self.received.name if self.received is not None else "a signal (another rank)"
        for logger in trainer.loggers:  # flush: the resumed run keeps the CSV rows before the checkpoint's step
            logger.save()
        job = slurm_job_id() if self.requeue and os.environ.get("SLURM_JOB_ID") else None
        if job and os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
            job = None  # an interactive srun: nothing to requeue
        step = self._saved_step
        if trainer.is_global_zero:
            if job:
                r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                what = (f"requeued SLURM job {job}: it continues from this checkpoint" if r.returncode == 0 else
                        f"scontrol requeue {job} failed ({(r.stderr or r.stdout).strip()}); continue it with "
                        f"resume=true")
            else:
                what = f"continue with: srexp-train hydra.run.dir={self.last_ckpt.parent.parent} resume=true"
            log.warning(f"srexp-train: {name} at step {step}: saved {self.last_ckpt}; {what}")
        raise Preempted(f"{name} at step {step}")

