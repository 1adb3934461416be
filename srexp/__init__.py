"""srexp: super-resolution experiments — Hydra-composed networks, Lightning training, paper-exact metrics."""
from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

# The configs live inside the package, so a built wheel (not only `pip install -e .`) carries them.
CONF_DIR = Path(__file__).resolve().parent / "conf"


def _run_dir() -> str:
    """``${srexp.run_dir:}``: the run folder Hydra made for this job; ``outputs/run`` where no Hydra job runs (a config
    composed in a test or a notebook)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "outputs/run"
    hc = HydraConfig.get()
    try:
        return str(hc.runtime.output_dir)
    except Exception:  # noqa: BLE001 - `--cfg job --resolve` composes before Hydra makes the folder: where it would go
        return str(hc.run.dir)


def floor_multiple(value, step) -> int:
    """``${floor_multiple:41,${scale}}`` in a config: the largest multiple of ``step`` not above ``value`` — an HR
    patch side that serves every scale (VDSR's 41 → 40 / 39 / 40 at ×2 / ×3 / ×4)."""
    value, step = int(value), int(step)
    if step < 1 or value < step:
        raise ValueError(f"floor_multiple:{value},{step}: no multiple of {step} in 1..{value}")
    return value // step * step


# Registered on import: every command and test composes its config after importing srexp.
OmegaConf.register_new_resolver("srexp.run_dir", _run_dir, replace=True)
OmegaConf.register_new_resolver("floor_multiple", floor_multiple, replace=True)


def _paper(key: str):
    """``${srexp.paper:KEY}``: the published numbers of :data:`srexp.metrics.published.PAPERS` (their one copy)."""
    from srexp.metrics.published import paper_block

    return OmegaConf.create(paper_block(str(key)))


OmegaConf.register_new_resolver("srexp.paper", _paper, replace=True)
