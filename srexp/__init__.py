"""srexp: super-resolution experiments — Hydra-composed networks, Lightning training, paper-exact metrics."""
from pathlib import Path

__version__ = "0.1.0"

# conf/ sits beside the package in the source tree (installed with `pip install -e .`).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
