"""Checkpoint I/O: the one loader of srexp-train checkpoints and srexp-export safetensors files (never pickled code),
and the nets rebuilt from them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from srexp.errors import ConfigError
from srexp.nets import build_net
from srexp.nets.strategies import at_scale
from srexp.training.runtime import redact


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


def load_model(path: str | Path, layout: str | None = None, scale: int | None = None) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a srexp-train checkpoint, loaded with ``weights_only=True`` (no pickled
    code runs), or of a net exported by srexp-export (``.safetensors``). The EMA weights (``net_ema.``,
    ``task.ema_decay``) when the run kept them. Kept light (no Lightning import): srexp-upscale starts fast.

    Any other file is a community checkpoint (:mod:`srexp.nets.foreign`): an official layout mapped onto srexp's own
    net, or spandrel's for the long tail. ``layout`` forces one (``ckpt_layout=``); ``scale`` is used only where the
    file cannot tell its scale."""
    from srexp.nets.foreign import load_foreign, read_safetensors, torch_load

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such file")
    if path.suffix == ".safetensors":
        meta, state = read_safetensors(path)
        if meta.get("format") == FORMAT and "srexp_config" in meta:
            return json.loads(meta["srexp_config"]), json.loads(meta.get("srexp_choices", "{}")), state
        return load_foreign(path, state, layout, scale)
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict) or "srexp_config" not in ckpt or not isinstance(ckpt.get("state_dict"), dict):
        return load_foreign(path, ckpt, layout, scale)
    prefix = "net_ema." if any(k.startswith("net_ema.") for k in ckpt["state_dict"]) else "net."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return ckpt["srexp_config"], ckpt.get("srexp_choices", {}), state


def load_safetensors(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a file written by :func:`save_safetensors`."""
    from srexp.nets.foreign import read_safetensors

    meta, state = read_safetensors(Path(path))
    if meta.get("format") != FORMAT or "srexp_config" not in meta:
        raise ConfigError(f"ckpt={path}: no srexp config in its metadata (was it written by srexp-export?)")
    return json.loads(meta["srexp_config"]), json.loads(meta.get("srexp_choices", "{}")), state


def load_net(net_cfg: DictConfig | dict, state: dict | None = None) -> nn.Module:
    net = build_net(net_cfg)
    if state is not None:
        net.load_state_dict(state)
    return net.eval()


def nets_from_checkpoint(tcfg: dict, state: dict, scales: list[int]) -> dict[int, tuple[nn.Module, int]]:
    """The trained net at each requested scale (:func:`srexp.nets.strategies.at_scale`). Another scale than the
    trained one works for nets whose weights do not depend on it (pre-upsampling with an interpolation: VDSR,
    SRCNN; multi-scale VDSR is trained for it)."""
    channels = int(tcfg["net"].get("in_channels", tcfg["channels"]))
    net = load_net(tcfg["net"], state)
    return {s: (at_scale(net, s, f"eval.scales={scales}: the checkpoint was trained for ×{tcfg['scale']} only "
                                 f"(valid: [{tcfg['scale']}]; only pre-upsampling nets run at any scale)"), channels)
            for s in scales}


def load_generator(net: nn.Module, path: str | Path, key: str = "task.generator_init") -> None:
    """Loads the ``net.`` weights of a srexp checkpoint (``weights_only=True``) into ``net``; one-line errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file (a checkpoint of a srexp-train run, e.g. …/checkpoints/last.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad checkpoint for the user
        raise ConfigError(f"{key}={path}: not a loadable srexp checkpoint ({str(e).splitlines()[0][:200]})") from None
    mine = net.state_dict()
    missing, unexpected = sorted(mine.keys() - state.keys()), sorted(state.keys() - mine.keys())
    if missing or unexpected:
        raise ConfigError(f"{key}={path}: the checkpoint's net does not match this one ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]}; train both phases "
                          f"with the same arch/net settings)")
    for k, v in state.items():
        if v.shape != mine[k].shape:
            raise ConfigError(f"{key}={path}: net.{k} has shape {tuple(v.shape)} in the checkpoint but "
                              f"{tuple(mine[k].shape)} here (train both phases with the same arch/net settings)")
    net.load_state_dict(state)
