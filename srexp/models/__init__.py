"""Models that ship with srexp: networks reproduced by srexp itself (``docs/reproduction.md``), stored here as
``NAME.safetensors`` (srexp-export's format) with their provenance and recorded test numbers in the metadata.

``srexp-eval model=fsrcnn_x3`` evaluates one by name; the tests re-measure every shipped model and fail when a
number moves by more than :data:`TOLERANCE_DB` from the recorded one (a regression check of the whole protocol:
resize, Y, shave, quantisation, network code).
"""
from __future__ import annotations

import json
from pathlib import Path

from srexp.errors import ConfigError

MODELS_DIR = Path(__file__).resolve().parent
TOLERANCE_DB = 0.001


def shipped() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.safetensors"))


def model_path(name: str) -> Path:
    """The file of a shipped model; a path to a ``.safetensors`` file is accepted as it is."""
    path = MODELS_DIR / f"{name}.safetensors"
    if path.is_file():
        return path
    if Path(name).suffix == ".safetensors" and Path(name).is_file():
        return Path(name)
    raise ConfigError(f"model={name} is not a shipped model (valid: {', '.join(shipped()) or 'none shipped'})")


def metadata(name: str) -> dict:
    """``{"provenance": {...}, "recorded": [{set, scale, psnr, ssim, protocol}, ...]}`` of a shipped model."""
    from safetensors import safe_open

    with safe_open(str(model_path(name)), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(meta.get(f"srexp_{k}", "null")) for k in ("provenance", "recorded")}
