"""Shared fixtures: the real configs composed and shrunk, the data root, small synthetic images."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# One OpenMP thread per test process, set before torch loads its OpenMP runtime (torch.set_num_threads(1) below does
# not reach every pool): the suite's tiny convolutions only contend for 2 cores, and with two threads some CPU
# kernels sum in a scheduling-dependent order (the Real-ESRGAN resume differed by 1e-8 from its reference run).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir
from PIL import Image

from srexp import CONF_DIR

REPO = Path(__file__).resolve().parent.parent


# Presets of 5M parameters and more (EDSR 40M, D-DBPN 6–10M, SwinIR 12M) and SwinIR-light (0.9M, but 24 attention
# layers: ~8 s for a fast_dev_run on CPU): building and training them at paper size takes
# seconds each on CPU, so their parametrised cases are in the full tier only (see slow_for).
BIG_PRESETS = {"edsr", "dbpn", "rcan", "rrdb", "swinir", "swinir_light"}


def slow_for(values, slow) -> list:
    """``values`` for a parametrize, those in ``slow`` marked slow (left out by make test-fast)."""
    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in values]


def shrink(*extra: str, steps: int | None = 4, val_every: int | None = 2, patch: int | None = 16,
           width: int | None = 8, logger: str | None = "csv") -> list[str]:
    """The overrides of a tiny run, for every test that trains: CPU, few steps, small patches and batches, no loader
    workers, a narrow net, the CSV logger (no W&B unless a test asks for it).

    steps, val_every (trainer.max_steps, trainer.val_check_interval), patch (data.patch_size), width (net.num_feat)
    and logger are what tests vary; None leaves that key to the config (a recipe's own net, a sweep's matched width,
    a data module without patches). ``extra`` overrides follow; where a key comes twice the later one is kept, so
    each key is given once: ``shrink("data=folder", "trainer.limit_val_batches=1", steps=2)``."""
    base = {"trainer.accelerator": "cpu", "trainer.max_steps": steps, "trainer.val_check_interval": val_every,
            "trainer.log_every_n_steps": 1, "data.patch_size": patch, "data.batch_size": 2, "data.num_workers": 0,
            "net.num_feat": width, "logger": logger}
    over = [f"{k}={v}" for k, v in base.items() if v is not None] + list(extra)
    keys = [o.split("=", 1)[0] for o in over]
    return [o for i, o in enumerate(over) if keys[i] not in keys[i + 1:]]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in the test process: tiny convolutions only contend for 2 cores (a small conv measured
    75 ms instead of 0.24 ms with two threads on busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def data_root() -> Path | None:
    env = os.environ.get("SREXP_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("reference data not found: set SREXP_DATA to the folder holding Set5/, Set14/, matlab_lr/")
    return root


def compose_cfg(config_name: str = "train", overrides: list[str] = ()):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


# Whether the test being set up is marked slow: only those may start a command in a subprocess (run_cli), so that
# `make test-fast` (-m "not slow") stays fast. Set before any fixture of the test, module-scoped ones included.
_SLOW = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _SLOW
    _SLOW = item.get_closest_marker("slow") is not None


def run_cli(module: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    if not _SLOW:
        pytest.fail(f"run_cli({module!r}) from a test not marked @pytest.mark.slow: a command in a subprocess "
                    "belongs to the full tier (make test), not to make test-fast", pytrace=False)
    e = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """A tiny train/ and val/ folder of smooth colour images (3 and 2 images)."""
    root = tmp_path_factory.mktemp("imgs")
    write_images(root / "train", n=3, size=(64, 56))
    write_images(root / "val", n=2, size=(48, 40), seed=1)
    return root


def ckpt_step(path: Path) -> int:
    """The global step a checkpoint holds; -1 while it is not written yet (or being replaced)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # noqa: BLE001 - not there yet
        return -1


def train_losses(run: Path) -> list[tuple[int, str]]:
    """(step, train/loss) of a run folder's CSV log, in logged order."""
    import csv

    rows = csv.DictReader((run / "csv" / "metrics.csv").open())
    return [(int(r["step"]), r["train/loss"]) for r in rows if r.get("train/loss")]


def folder_overrides(root: Path) -> list[str]:
    """``data=folder`` with ``root``'s train/ and val/ (the :func:`folders` layout)."""
    return ["data=folder", f"data.train_dir={root / 'train'}", f"data.val_dir={root / 'val'}"]


@pytest.fixture(scope="module")
def ddp_folders(tmp_path_factory) -> list[str]:
    """The ``data=folder`` overrides of 3 train and 3 val images (3 images on 2 DDP ranks: the sampler repeats
    one)."""
    root = tmp_path_factory.mktemp("imgs")
    write_images(root / "train", n=3, size=(64, 56))
    write_images(root / "val", n=3, size=(48, 40), seed=1)
    return folder_overrides(root)


def write_images(folder: Path, n: int = 3, size=(48, 40), seed: int = 0, mode: str = "RGB") -> list[Path]:
    """Smooth random colour images (a learnable signal, unlike white noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        chans = [127 + 100 * np.sin(xx / rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(2, 6))
                 for _ in range(3)]
        a = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
        im = Image.fromarray(a).convert(mode)
        p = folder / f"img{k}.png"
        im.save(p)
        paths.append(p)
    return paths
