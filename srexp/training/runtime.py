"""Shared plumbing of the commands: one-line errors, loggers, the run folder."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


log = logging.getLogger("srexp")


def build_loggers(cfg: DictConfig, run_dir: str) -> list:
    """CSV always (srexp-report reads it), plus the configured one (wandb offline by default). W&B gets the run
    folder's id (``wandb_id.txt``, resumed with ``resume="allow"``) and the redacted config; a resumed run continues
    its CSV log."""
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger

    from srexp.training.resume import continue_csv, log_step, resume_requested, wandb_id

    loggers = [CSVLogger(save_dir=run_dir, name="csv", version="")]
    if resume_requested(cfg) and (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
        continue_csv(loggers[0], log_step(Path(run_dir) / "checkpoints" / "last.ckpt"))
    if cfg.get("logger") and cfg.logger.get("_target_"):
        extra = {}
        if "wandb" in str(cfg.logger.get("_target_", "")).lower():
            os.environ.setdefault("WANDB_MODE", "offline")  # respects WANDB_MODE=online/disabled set by the user
            os.environ.setdefault("WANDB_SILENT", "true")
            config = redact(OmegaConf.to_container(cfg, resolve=True))
            config["config_key"] = config_key()  # W&B's "group by config_key" then shows the seeds' mean/std
            extra = {"id": wandb_id(run_dir), "resume": "allow", "_convert_": "all", "config": config,
                     **wandb_names(cfg, run_dir)}
        # a partial first: `config` (wandb.init's) cannot be a keyword of instantiate(), whose own first argument it is
        make = instantiate(cfg.logger, _partial_=True, **{k: v for k, v in extra.items() if k != "config"})
        logger = make(config=extra["config"]) if "config" in extra else make()
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            # Lightning passes anonymous=None, and wandb then warns that "the anonymous setting has no effect"
            init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def config_key(overrides: list[str] | None = None) -> str:
    """The run's configuration less its seed: its command-line overrides (Hydra's, where none are given) without
    ``seed=`` and the keys that do not change what it computes (:data:`NOT_CONFIG`), sorted — the key srexp-report
    and W&B group repeated seeds by."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keep = sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_CONFIG))
    return " ".join(keep) or "(defaults)"


# Overrides that do not change what a run computes: the seed (the axis grouped over), resuming, where files and
# caches go, what is logged and shown.
NOT_CONFIG = ("seed=", "hydra.", "resume=", "ckpt_path=last", "data.cache_dir=", "data.num_workers=", "logger=",
              "callbacks.progress_bar=", "trainer.enable_progress_bar=", "trainer.log_every_n_steps=")


def wandb_names(cfg: DictConfig, run_dir: str) -> dict:
    """Where the logger config leaves them null: a sweep's jobs grouped by the sweep (its folder's name, e.g.
    ``2024-05-01_12-00-00_compare_upsampling``), each run named by its overrides (``hydra.job.override_dirname``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc, names = HydraConfig.get(), {}
    if cfg.logger.get("name") is None and hc.job.override_dirname:
        names["name"] = hc.job.override_dirname
    if cfg.logger.get("group") is None and hc.mode == RunMode.MULTIRUN:
        # the sweep folder is run_dir less the job's subdir (re-reading hydra.sweep.dir may resolve ${now:} anew)
        names["group"] = Path(run_dir).parents[len(Path(str(hc.sweep.subdir)).parts) - 1].name
    return names


SECRET_WORDS = ("key", "token", "password", "passwd", "secret", "credential")


def redact(obj):
    """A plain config with the values of keys that look secret (``*key*``, ``*token*``, ``*password*``,
    ``*secret*``) replaced by ``"***"``: nothing of the kind reaches config.yaml, W&B or a checkpoint."""
    if isinstance(obj, dict):
        return {k: "***" if v is not None and any(w in str(k).lower() for w in SECRET_WORDS) else redact(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def save_resolved_config(cfg: DictConfig, run_dir: str | Path) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=True))), Path(run_dir) / "config.yaml")
