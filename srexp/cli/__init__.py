"""What the commands do with their arguments before Hydra sees them.

* A config-group choice that does not exist (``srexp-train arch=nope``) is one line naming the valid choices, exit 2
  (Hydra's own "Could not find 'arch/nope'" is a multi-line report).
* ``srexp-train resume=true`` (or ``ckpt_path=last``) without ``hydra.run.dir=`` continues the latest run folder under
  ``outputs/`` started with the same overrides: its folder is passed to Hydra as ``hydra.run.dir`` so no new
  folder is made (:mod:`srexp.training.resume`).
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from srexp import CONF_DIR
from srexp.errors import ConfigError, SrexpError

TRUE = ("true", "True", "yes", "1")


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str] | None:
    """The options of config group ``group`` (``arch``, ``net/strategy``), or None when it is not a group."""
    d = conf_dir / group
    if not d.is_dir():
        return None
    opts = sorted(p.stem for p in d.glob("*.yaml"))
    return opts or None


def check_choices(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise :class:`ConfigError` for ``group=option`` overrides naming an option that is not in ``conf/group/``."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "." in key and not key.startswith("hydra") and group_options(key.replace(".", "/"), conf_dir):
            options = group_options(key.replace(".", "/"), conf_dir)
            if value in options:  # task.loss=mse would set the node to a string: the group is task/loss
                raise ConfigError(f"{key}={value} sets a config node to a string; {key.replace('.', '/')} is the "
                                  f"group (valid: {key.replace('.', '/')}={value}; options: {', '.join(options)})")
        if "@" in key or key.startswith("hydra") or "." in key or "(" in value or "*" in value:
            continue
        options = group_options(key, conf_dir)
        if options is None:
            continue
        for v in value.split(","):
            v = v.strip().strip("'\"")
            if v not in options and v != "null":
                raise ConfigError(f"{key}={v} is not a config in conf/{key}/ (valid: {', '.join(options)})")


def _quote(path: str) -> str:
    return path if re.fullmatch(r"[\w/.\-]+", path) else "'" + path.replace("'", "\\'") + "'"


# Overrides a resume may change: they touch the console and the logs, never the weights.
SAFE_AT_RESUME = ("callbacks.progress_bar", "trainer.enable_progress_bar", "trainer.log_every_n_steps")


def saved_overrides(run_dir: Path) -> list[str] | None:
    """The overrides a run folder was started with (``.hydra/overrides.yaml``), or None."""
    import yaml

    f = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in (yaml.safe_load(f.read_text()) or [])] if f.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def with_resume_dir(argv: list[str]) -> list[str]:
    """``resume=true``: continue the run that was started, as it was started. The run folder is ``hydra.run.dir=`` or
    the latest under ``outputs/`` with the same overrides; the run's saved overrides are composed again (so
    ``hydra.run.dir=DIR resume=true`` alone continues ``DIR``'s run, its max_steps and schedule included); an override
    that would change the run is refused in one line (:data:`SAFE_AT_RESUME` are allowed); and Hydra does not write
    ``.hydra/`` again, so the saved config is never overwritten."""
    from srexp.training.resume import find_run, identity_overrides

    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "=" in a and not a.startswith("-")}
    wants = args.get("resume") in TRUE or args.get("ckpt_path") == "last"
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if not wants or multirun:
        return argv
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    extra = []
    if "hydra.run.dir" in args:
        found = Path(args["hydra.run.dir"].strip("'\""))
    else:
        outputs = os.environ.get("SREXP_OUTPUTS", "outputs")
        found = find_run(outputs, overrides)
        if found is None:
            raise ConfigError(f"resume=true: no run folder under {outputs}/ with the overrides "
                              f"[{' '.join(a for a in overrides if not a.startswith(('resume=', 'ckpt_path=')))}] and a "
                              f"checkpoints/last.ckpt (valid: hydra.run.dir=DIR resume=true)")
        print(f"resuming {found}", file=sys.stderr)
        extra.append(f"hydra.run.dir={_quote(str(found))}")
    saved = saved_overrides(found)
    if saved is None:  # not a srexp-train run folder (or no .hydra/): resume_checkpoint() says what is missing
        return [*argv, *extra]
    kept = identity_overrides(saved)
    for o in identity_overrides(overrides):
        if o not in kept and o.lstrip("+~").split("=", 1)[0] not in SAFE_AT_RESUME:
            raise ConfigError(f"resume=true: {o} would change the run in {found}, started with "
                              f"[{' '.join(kept) or 'no overrides'}] (valid: resume with those, or start a new run)")
    later = [a for a in argv if a not in kept]
    return [*kept, *later, *extra, "hydra.output_subdir=null"]


def command(cmd: str, resume: bool = False) -> Callable:
    """Wrap a ``@hydra.main`` function: check group choices (and find the run to resume) first."""

    def deco(main: Callable) -> Callable:
        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            argv = sys.argv[1:]
            try:
                check_choices(argv)
                if resume:
                    sys.argv[1:] = with_resume_dir(argv)
            except SrexpError as e:
                print(f"{cmd}: error: {e}", file=sys.stderr)
                sys.exit(2)
            return main(*args, **kwargs)

        return wrapper

    return deco


def check_missing(cfg, skip: Sequence[str] = ()) -> None:
    """Mandatory values (``???``) left unset stop the command in one line before anything is built."""
    from omegaconf import OmegaConf

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith(tuple(skip)))
    if missing:
        raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set (no default: give "
                          f"{missing[0]}=VALUE)")


def drop_empty_run_folder() -> None:
    """After a config error: remove the run folder Hydra made for this run when it holds nothing but Hydra's own
    files (``.hydra/``, the job's log) and the config srexp saved before training (no log row, no checkpoint), so a
    mistyped command leaves no empty folder behind. A sweep's job folders,
    a resumed run's folder and a folder with anything else in it are kept."""
    import shutil

    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
            return
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        own = {".hydra", f"{hc.job.name}.log", "config.yaml", "csv"}  # Hydra's, and srexp's before training
    except Exception:  # noqa: BLE001 - no Hydra run: nothing to tidy
        return
    if not (run_dir / ".hydra").is_dir() or not {p.name for p in run_dir.iterdir()} <= own:
        return
    if (run_dir / "csv").is_dir() and any((run_dir / "csv").rglob("*.csv")):  # something was logged
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name):  # outputs/<date>/ when this was its only run
        try:
            run_dir.parent.rmdir()
        except OSError:
            pass


def one_line_errors(cmd: str):
    """Report SrexpError (and config-key errors) as ``<cmd>: error: <message>`` and exit 2; a run folder that holds
    only Hydra's files is removed (:func:`drop_empty_run_folder`)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SrexpError as e:
                print(f"{cmd}: error: {e}", file=sys.stderr)
                drop_empty_run_folder()
                sys.exit(2)
            except Exception as e:  # instantiate() wraps our errors: unwrap to the first SrexpError
                from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

                cause = e
                while cause is not None and not isinstance(cause, (SrexpError, OmegaConfBaseException)):
                    cause = cause.__cause__ or cause.__context__
                if cause is None:
                    raise
                if isinstance(cause, MissingMandatoryValue):
                    key = getattr(cause, "full_key", None) or "a key"
                    cause = f"{key} is not set (it has no default: give {key}=VALUE)"
                elif isinstance(cause, OmegaConfBaseException):
                    cause = str(cause).splitlines()[0]
                print(f"{cmd}: error: {cause}", file=sys.stderr)
                drop_empty_run_folder()
                sys.exit(2)

        return wrapper

    return deco
