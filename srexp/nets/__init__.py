"""The network zoo: every SR net is ``strategy(body, upsample)``, each axis a Hydra config group.

Contracts (one for each axis, so that any body and any upsample layer work under any strategy):

* **strategy** (``conf/net/strategy/``, ``srexp.nets.strategies``): an ``nn.Module`` built from
  ``in_channels, out_channels, scale, num_feat, body, upsample, …``. ``forward(lr)`` takes
  ``(N, in_channels, h, w)`` floats in [0, 1] and returns ``(N, out_channels, h·scale, w·scale)`` — the
  progressive strategy returns a list, one tensor per ×2 level, the last one the final output. Any ``h, w``.
  Every net has ``scale: int``.
* **body** (``conf/net/body/``, a partial): ``body(in_channels: int) -> nn.Module`` mapping
  ``(N, in_channels, H, W)`` to ``(N, body.out_channels, H, W)``: same size, width reported by the module
  (most bodies keep the width; ``plain`` may change it, as SRCNN's 64→32 middle layer does).
* **upsample** (``conf/net/upsample/``, a partial): ``upsample(in_channels: int, out_channels: int, scale: int)
  -> nn.Module`` mapping ``(N, in_channels, H, W)`` to ``(N, out_channels, H·scale, W·scale)`` exactly.
  The strategy calls it as many times as it needs (once per ×2 step, per projection unit, …).

A config the axes cannot build raises :class:`ConfigError` with one line naming the key and the valid
choices. Hydra wraps exceptions raised inside ``instantiate``; :func:`build_net` unwraps it, and turns a key that
the chosen class does not take (a preset's strategy-specific key after ``net/strategy=…``) into such a line.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn


from srexp.errors import ConfigError  # a net config that cannot be built: one line, key, value, valid choices


def build_net(cfg: Any) -> nn.Module:
    """``hydra.utils.instantiate(cfg)``, re-raising a :class:`ConfigError` as itself rather than Hydra's
    multi-line ``InstantiationException`` wrapper, so the user sees the one-line reason."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is None:
            unknown = _unknown_key(cfg) if isinstance(e.__cause__, TypeError) else None
            if unknown is None:
                raise
            raise unknown from None
        raise cause from None


def _unknown_key(cfg: Any, path: str | None = None) -> ConfigError | None:
    """The keys of the first node of ``cfg`` (itself, else a node below it) that its ``_target_`` does not take, as
    one line naming the keys, the target and its valid keys; None where every key is taken."""
    from hydra.utils import get_object
    from omegaconf import DictConfig

    if not isinstance(cfg, DictConfig):
        return None
    path = path or cfg._get_full_key(None) or "net"  # a standalone net config (a checkpoint's) is the net
    if "_target_" in cfg:
        try:
            params = inspect.signature(get_object(cfg._target_)).parameters
        except Exception:  # noqa: BLE001 - an unimportable target is Hydra's own error to report
            return None
        unknown = [f"{path}.{key}" for key in cfg if not str(key).startswith("_") and key not in params]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            keys, drop = " and ".join(unknown), " ".join(f"~{k}" for k in unknown)
            verb = "is not an option" if len(unknown) == 1 else "are not options"
            return ConfigError(f"{keys} {verb} of {cfg._target_} (drop with {drop}; valid: {', '.join(params)})")
    for key in cfg:
        found = _unknown_key(cfg._get_node(key), f"{path}.{key}")
        if found is not None:
            return found
    return None


def final(out):
    """A net's final output: the last level of a progressive net's list, anything else as it is."""
    return out[-1] if isinstance(out, (list, tuple)) else out


__all__ = ["ConfigError", "build_net", "final"]
