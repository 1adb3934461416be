"""srexp-export: a trained net as a safetensors file (no pickle), with its config as JSON metadata.

``srexp-export ckpt=outputs/…/checkpoints/last.ckpt out=model.safetensors``; the file then serves as ``ckpt=`` for
srexp-upscale and srexp-eval. The EMA weights are exported when the run kept them (``task.ema_decay``).
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from srexp import CONF_DIR
from srexp.cli import command
from srexp.errors import ConfigError
from srexp.training.checkpoint import load_model, save_safetensors
from srexp.cli import one_line_errors

log = logging.getLogger("srexp.cli.export")


@command("srexp-export")
@hydra.main(config_path=str(CONF_DIR), config_name="export", version_base="1.3")
@one_line_errors("srexp-export")
def main(cfg: DictConfig) -> None:
    from srexp.nets import build_net

    config, choices, state = load_model(cfg.ckpt, cfg.get("ckpt_layout"))
    if (config.get("foreign") or {}).get("layout") == "spandrel":
        raise ConfigError(f"ckpt={cfg.ckpt}: a net spandrel builds is rebuilt from its own file, not from a srexp "
                          f"config: use that file as ckpt= (valid: srexp checkpoints and the layouts srexp maps)")
    build_net(config["net"]).load_state_dict(state)  # the file must rebuild: fail here, not in srexp-upscale
    out = save_safetensors(config, choices, state, cfg.out)
    print(f"exported {len(state)} tensors ({sum(v.numel() for v in state.values()):,} parameters) to {out}")


if __name__ == "__main__":
    main()
