"""srexp: super-resolution experiments — Hydra-composed networks, Lightning training, paper-exact metrics."""
from pathlib import Path

__version__ = "0.1.0"

# The configs live inside the package, so a built wheel (not only `pip install -e .`) carries them.
CONF_DIR = Path(__file__).resolve().parent / "conf"
