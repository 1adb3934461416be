"""Exact resume: atomic checkpoints, the run folder to continue, the data position, the RNG states, the W&B id.

``srexp-train … resume=true`` continues a run in its own folder (``hydra.run.dir=DIR``, or the latest folder under
``outputs/`` whose ``.hydra/overrides.yaml`` holds the same overrides) from ``DIR/checkpoints/last.ckpt``. Killed at
any point (SIGKILL included), a resumed CPU run ends with weights bit-identical to an uninterrupted one:

* checkpoints are written to a temporary file, fsync'ed and renamed over the old one (:class:`AtomicCheckpointIO`),
  so ``last.ckpt`` is always a complete checkpoint;
* training sample k is a pure function of (seed, k) and the run is one long epoch, so the train set is shifted by
  the number of samples already drawn (:func:`samples_drawn`, :class:`Shifted`), which Lightning restores before it
  asks for the train loader; Lightning itself neither replays nor skips batches of a plain loader;
* the torch / numpy / Python RNG states travel in the checkpoint (:class:`RNGState`);
* the W&B run id is kept in ``DIR/wandb_id.txt`` and the logger resumes it; the CSV log is continued, not wiped.
"""
from __future__ import annotations

import os
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import Dataset

from srexp.errors import ConfigError

LAST = Path("checkpoints") / "last.ckpt"
WANDB_ID_FILE = "wandb_id.txt"
# Overrides that say how to run, not what: a run resumed with them matches the one started without.
NOT_IDENTITY = ("resume", "ckpt_path")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, fsync, ``os.replace``, fsync the folder: a kill during a
    save leaves the previous checkpoint intact. Loads with ``weights_only=True`` (no pickled code runs)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location or (lambda s, _: s), weights_only=True)


# --------------------------------------------------------------------------------------------------- the run folder
def identity_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that define a run (sorted), without ``resume=``/``ckpt_path=`` and Hydra's own keys."""
    keep = []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key in NOT_IDENTITY or key.startswith("hydra."):
            continue
        keep.append(o)
    return sorted(keep)


def find_run(outputs: str | Path, overrides: Sequence[str]) -> Path | None:
    """The run folder under ``outputs`` with the same identity overrides and the newest ``last.ckpt``."""
    want = identity_overrides(overrides)
    best, best_time = None, -1.0
    for ov in Path(outputs).glob("**/.hydra/overrides.yaml"):
        run_dir = ov.parent.parent
        last = run_dir / LAST
        if not last.is_file():
            continue
        try:
            theirs = yaml.safe_load(ov.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        if identity_overrides(theirs) == want and last.stat().st_mtime > best_time:
            best, best_time = run_dir, last.stat().st_mtime
    return best


def resume_checkpoint(run_dir: str | Path) -> Path:
    last = Path(run_dir) / LAST
    if not last.is_file():
        raise ConfigError(f"resume=true: no {LAST} in {run_dir} (valid: a run folder of srexp-train, "
                          f"hydra.run.dir=DIR, or resume=false)")
    return last


def wandb_id(run_dir: str | Path) -> str:
    """The run folder's W&B id, made on first use (rank 0 writes it; other ranks log nothing)."""
    f = Path(run_dir) / WANDB_ID_FILE
    if f.is_file():
        return f.read_text().strip()
    run_id = uuid.uuid4().hex[:8]
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0":
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(run_id + "\n")
    return run_id


def continue_csv(csv_logger, step: int) -> None:
    """Lightning's CSV writer deletes an existing ``metrics.csv``; keep its rows logged before ``step`` instead
    (rows after it were logged past the checkpoint and are logged again by the resumed run)."""
    import csv

    path = Path(csv_logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), [r for r in reader if int(float(r.get("step") or 0)) < step]
    kept = path.with_name(".metrics.resume.csv")
    path.rename(kept)
    writer = csv_logger.experiment  # creates the writer (which would have deleted the file)
    with kept.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    kept.rename(path)
    writer.metrics_keys = sorted(header)


# ------------------------------------------------------------------------------------------------ the data position
class Shifted(Dataset):
    """Item k of ``dataset`` shifted by ``start``, same length: batch j of the resumed run is batch ``done + j`` of the
    uninterrupted one (with DDP's unshuffled sampler too, since the whole global batch moves by ``start``). The
    length stays the full epoch so Lightning's batch counters, restored from the checkpoint, line up."""

    def __init__(self, dataset: Dataset, start: int):
        self.dataset, self.start = dataset, start

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int):
        return self.dataset[self.start + k]

    def __getattr__(self, name: str):  # scale_of, pairs, … of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def samples_drawn(trainer: L.Trainer | None, batch_size: int) -> int:
    """Training samples the run has consumed (all ranks), from Lightning's restored batch counter: global_step would
    count optimiser steps (two per batch for a GAN)."""
    if trainer is None:
        return 0
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return int(done) * batch_size * trainer.world_size


# ------------------------------------------------------------------------------------------------------ RNG states
class RNGState(L.Callback):
    """Saves the Python / numpy / torch (CPU and CUDA) RNG states and puts them back when training restarts,
    after the loaders are made (making an iterator draws a seed), so random draws continue as if never stopped."""

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        state = {"python": random.getstate(), "torch": torch.get_rng_state(),
                 "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                           "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        s, self._pending = self._pending, None
        if not s:
            return
        random.setstate(_tuples(s["python"]))
        torch.set_rng_state(s["torch"])
        n = s["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])


def _tuples(x):
    """``random.setstate`` wants tuples; a checkpoint round trip may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def requeued(run_dir: str | Path | None) -> bool:
    """A SLURM job started again after a requeue (``SLURM_RESTART_COUNT`` ≥ 1, srexp.training.preemption) whose run
    folder holds a ``last.ckpt``: it continues from it, as ``resume=true`` would."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return bool(run_dir) and restarts.isdigit() and int(restarts) > 0 and (Path(run_dir) / LAST).is_file()


def resume_requested(cfg) -> bool:
    """``resume=true``, ``ckpt_path=last`` (the same: continue this run folder), or a requeued SLURM job."""
    from omegaconf import OmegaConf

    return (bool(cfg.get("resume")) or cfg.get("ckpt_path") == "last"
            or requeued(OmegaConf.select(cfg, "paths.output_dir", default=None)))


def log_step(ckpt: str | Path) -> int:
    """The logging step a checkpoint was written at (the CSV log's ``step`` column)."""
    c = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    fit = c.get("loops", {}).get("fit_loop", {})
    step = int(fit.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", c.get("global_step", 0)))
    total = fit.get("epoch_loop.batch_progress", {}).get("total", {})
    # saved in on_train_batch_end: that batch's step is counted only on restore (as Lightning's loop does)
    return step + int(total.get("completed", 0) == total.get("processed", 0) - 1)
