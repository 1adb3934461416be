"""Shared plumbing of the commands: one-line errors, loggers, the run folder."""
from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from srexp.errors import SrexpError

log = logging.getLogger("srexp")


def one_line_errors(cmd: str):
    """Report SrexpError (and config-key errors) as ``<cmd>: error: <message>`` and exit 2."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SrexpError as e:
                print(f"{cmd}: error: {e}", file=sys.stderr)
                sys.exit(2)
            except Exception as e:  # instantiate() wraps our errors: unwrap to the first SrexpError
                cause = e
                while cause is not None and not isinstance(cause, SrexpError):
                    cause = cause.__cause__ or cause.__context__
                if cause is None:
                    raise
                print(f"{cmd}: error: {cause}", file=sys.stderr)
                sys.exit(2)

        return wrapper

    return deco


def build_loggers(cfg: DictConfig, run_dir: str) -> list:
    """CSV always (srexp-report reads it), plus the configured one (wandb offline by default)."""
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=run_dir, name="csv", version="")]
    if cfg.get("logger") and cfg.logger.get("_target_"):
        if "wandb" in str(cfg.logger.get("_target_", "")).lower():
            os.environ.setdefault("WANDB_MODE", "offline")  # respects WANDB_MODE=online/disabled set by the user
            os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(instantiate(cfg.logger, save_dir=run_dir))
    return loggers


def save_resolved_config(cfg: DictConfig, run_dir: str | Path) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, Path(run_dir) / "config.yaml", resolve=True)
