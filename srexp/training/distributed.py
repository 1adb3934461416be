"""DDP under Hydra: the processes Lightning starts for ``trainer.strategy=ddp`` join their parent's job.

Lightning's ``ddp`` launcher re-runs the command line in each child process (rank 1…N-1), adding
``hydra.run.dir=<the parent's run dir>``. Two things go wrong with that under Hydra:

* under ``-m`` the child gets the multirun arguments and runs the whole sweep again, every job of it;
* the run dir it passes is ``hydra.run.dir`` re-read in the parent, whose ``${now:}`` may resolve a second
  later than the parent's own folder: a second, near-empty run folder.

So the parent writes its job — the job's own overrides and its output folder — to ``SREXP_DDP_JOB`` before
training, and :func:`pin_ddp_child`, called before Hydra parses the command line, replaces a child's arguments
with that one job in run mode. A child therefore composes exactly its parent's config and writes nothing of
its own (``hydra.output_subdir=null``; checkpoints, loggers and ``val_metrics.json`` are rank 0's).
Under SLURM (submitit) the processes are started by ``srun``, one per task, and each already runs its job.
"""
from __future__ import annotations

import json
import os
import sys

ENV = "SREXP_DDP_JOB"
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"  # a Hydra quoted value: only quotes are escaped


def _relaunches_script(trainer) -> bool:
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    from lightning.fabric.plugins.environments import LightningEnvironment

    # Lightning keeps this launcher under SLURM (TorchElastic, LSF, MPI) too, where it starts nothing: srun started
    # every rank. (LightningEnvironment says "external" whenever LOCAL_RANK is set, i.e. also in its own children.)
    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher):
        return False
    env = launcher.cluster_environment
    return isinstance(env, LightningEnvironment) or not env.creates_processes_externally


def check_ddp_launch(trainer) -> None:
    """One-line errors for the process launches that cannot work here, before anything is started."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    from srexp.errors import ConfigError

    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _MultiProcessingLauncher):
        raise ConfigError(f"trainer.strategy={trainer.strategy.strategy_name}: processes started by multiprocessing "
                          f"keep the validation results to themselves, so the run's table and val_metrics.json would "
                          f"be empty (valid: trainer.strategy=ddp, i.e. trainer=ddp)")
    if _relaunches_script(trainer) and os.environ.get("LOCAL_RANK", "0") == "0":
        import __main__

        spec = getattr(__main__, "__spec__", None)
        if spec is not None and spec.name.split(".")[0] in ("joblib", "submitit"):
            raise ConfigError(f"trainer.strategy=ddp re-runs the command for each extra process, and inside a "
                              f"{spec.name.split('.')[0]} worker there is no command to re-run (valid: the basic "
                              f"launcher, which runs the jobs one after another, each on all devices; or "
                              f"hydra/launcher=slurm_gpu, where SLURM starts one process per GPU)")


def share_job_with_ddp_children(trainer, run_dir: str) -> None:
    """In rank 0 under Hydra, before ``fit``: the job that the processes Lightning is about to start must join."""
    from hydra.core.hydra_config import HydraConfig

    if not (_relaunches_script(trainer) and HydraConfig.initialized()) or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    hc = HydraConfig.get()
    # composition-relevant Hydra overrides only: never the mode, launcher, sweeper or sweep dir
    searchpath = [o for o in hc.overrides.hydra if o.split("=", 1)[0].lstrip("+~") == "hydra.searchpath"]
    os.environ[ENV] = json.dumps({"overrides": [*hc.overrides.task, *searchpath], "run_dir": str(run_dir)})


def pin_ddp_child(argv: list[str] | None = None) -> None:
    """In a process Lightning started for rank ≥ 1: run the parent's job, in its folder, in run mode."""
    argv = sys.argv if argv is None else argv
    job = os.environ.get(ENV)
    rank = os.environ.get("LOCAL_RANK", "0")
    if not job or rank == "0":
        return
    job = json.loads(job)
    flags = []  # keep --config-dir/--config-name given on the command line (their values may follow)
    for i, a in enumerate(argv[1:], start=1):
        if a.split("=", 1)[0] in _CONFIG_FLAGS:
            flags += [a] if "=" in a else argv[i : i + 2]
    # hydra.mode=RUN: a preset may set MULTIRUN itself (+hparams_search=…)
    argv[1:] = [*flags, *job["overrides"], "hydra.mode=RUN", f"hydra.run.dir={_quote(job['run_dir'])}",
                "hydra.output_subdir=null", f"hydra.job.name=ddp_rank_{rank}"]


def end_ddp_job(trainer) -> None:
    """After a job whose processes Lightning started: close the process group and forget the launcher's
    environment, so the next job of a sweep (same process) starts its own group with fresh children."""
    import torch.distributed as dist

    if not _relaunches_script(trainer):
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if os.environ.get("LOCAL_RANK", "0") == "0":
        for k in (*_LAUNCHER_ENV, ENV):
            os.environ.pop(k, None)
