"""``device=auto``: the one place it is resolved."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; any other name as torch spells it (``cpu``, ``cuda:1``, ``mps``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        from srexp.errors import ConfigError
        raise ConfigError(f"device={name!r}: {str(e).splitlines()[0]} (valid: auto, cpu, cuda, cuda:N, mps)") from None
