"""srexp: super-resolution experiments — Hydra-composed networks, Lightning training, paper-exact metrics."""
from pathlib import Path

__version__ = "0.1.0"

# The configs live inside the package, so a built wheel (not only `pip install -e .`) carries them.
CONF_DIR = Path(__file__).resolve().parent / "conf"


def _run_dir() -> str:
    """``${srexp.run_dir:}``: the run folder Hydra made for this job; ``outputs/run`` where no Hydra job runs (a config
    composed in a test or a notebook)."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else "outputs/run"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("srexp.run_dir", _run_dir, replace=True)


_register_resolvers()
