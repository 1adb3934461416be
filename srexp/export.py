"""srexp-export: a trained net as a safetensors file (no pickle), with its config as JSON metadata.

``srexp-export ckpt=outputs/…/checkpoints/last.ckpt out=model.safetensors``; the file then serves as ``ckpt=`` for
srexp-upscale and srexp-eval. The EMA weights are exported when the run kept them (``task.ema_decay``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from srexp import CONF_DIR
from srexp.cli import command
from srexp.errors import ConfigError
from srexp.runtime import one_line_errors, redact

log = logging.getLogger("srexp.export")
FORMAT = "srexp-net-1"


def save_safetensors(config: dict, choices: dict, state: dict, out: str | Path, **extra) -> Path:
    """``extra``: more JSON metadata as ``srexp_<key>`` (a shipped model's ``provenance`` and ``recorded``
    numbers, :mod:`srexp.models`)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}  # no shared storage
    meta = {"format": FORMAT, "srexp_config": json.dumps(redact(config)), "srexp_choices": json.dumps(choices)}
    meta.update({f"srexp_{k}": json.dumps(v) for k, v in extra.items()})
    save_file(tensors, str(out), metadata=meta)
    return out


def load_model(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a srexp-train checkpoint, loaded with ``weights_only=True`` (no pickled
    code runs), or of a net exported by srexp-export (``.safetensors``). The EMA weights (``net_ema.``,
    ``task.ema_decay``) when the run kept them. Kept light (no Lightning import): srexp-upscale starts fast."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such file")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad checkpoint for the user
        raise ConfigError(f"ckpt={path}: not a loadable checkpoint ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "srexp_config" not in ckpt:
        raise ConfigError(f"ckpt={path}: no srexp config inside (was it written by srexp-train?)")
    prefix = "net_ema." if any(k.startswith("net_ema.") for k in ckpt["state_dict"]) else "net."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return ckpt["srexp_config"], ckpt.get("srexp_choices", {}), state


def load_safetensors(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a file written by :func:`save_safetensors`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - a bad file for the user
        raise ConfigError(f"ckpt={path}: not a loadable safetensors file ({str(e).splitlines()[0][:200]})") from None
    if meta.get("format") != FORMAT or "srexp_config" not in meta:
        raise ConfigError(f"ckpt={path}: no srexp config in its metadata (was it written by srexp-export?)")
    return json.loads(meta["srexp_config"]), json.loads(meta.get("srexp_choices", "{}")), state


@command("srexp-export")
@hydra.main(config_path=str(CONF_DIR), config_name="export", version_base="1.3")
@one_line_errors("srexp-export")
def main(cfg: DictConfig) -> None:
    from srexp.nets import build_net

    config, choices, state = load_model(cfg.ckpt)
    build_net(config["net"]).load_state_dict(state)  # the file must rebuild: fail here, not in srexp-upscale
    out = save_safetensors(config, choices, state, cfg.out)
    print(f"exported {len(state)} tensors ({sum(v.numel() for v in state.values()):,} parameters) to {out}")


if __name__ == "__main__":
    main()
