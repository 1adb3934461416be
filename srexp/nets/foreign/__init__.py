"""Community ("foreign") checkpoints: official weight layouts mapped onto srexp's own nets.

One module per family (``edsr``, ``rcan``, ``esrgan``, ``compact``, ``swinir``, …) defines ``LAYOUTS``, a list of
:class:`Layout`; :data:`FAMILIES` lists them by name (a new family is one more entry there: no module is picked up
by being in the folder, as STYLE.md asks). A layout recognises its state dict by its keys (``detect``) and converts it (``convert``) into the
srexp config overrides that build the same network and the srexp state dict that gives the same output.

:func:`load_foreign` is what :func:`srexp.training.checkpoint.load_model` falls back to for a file srexp did not
write: unwrap the usual containers, find exactly one layout (or the one ``ckpt_layout=`` names), convert, compose
``train.yaml`` with the overrides, check every tensor against the net it builds, and return
``(config, choices, state)`` as for a srexp checkpoint. A file no layout matches goes to spandrel when it is installed
(:mod:`srexp.nets.foreign._spandrel`). Loading never runs pickled code (``torch.load(weights_only=True)`` or
safetensors). docs/community_checkpoints.md.
"""
from __future__ import annotations

import copy
import functools
import importlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from srexp.errors import ConfigError

StateDict = Mapping[str, Tensor]
log = logging.getLogger("srexp.foreign")

# Containers of a state dict in the files people publish, in order of preference (BasicSR keeps the EMA weights
# in ``params_ema`` beside ``params``; Lightning and most trainers use ``state_dict``, others ``model``/``net``).
CONTAINERS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.",)  # DataParallel / DDP wrappers
SPANDREL = "spandrel"    # ckpt_layout=spandrel: skip srexp's layouts


class ForeignCheckpointError(ConfigError):
    """A foreign file that cannot be mapped: one line naming the file, what was expected and what was found."""


@dataclass
class Converted:
    """The srexp side of a foreign checkpoint.

    ``overrides``: Hydra overrides of ``train.yaml`` that build the same network, e.g.
    ``["arch=rrdb", "scale=4", "channels=3", "net.body.num_block=23"]`` (all hyper-parameters inferred from the
    tensors' names and shapes); ``state``: the state dict that srexp's net loads with ``strict=True``;
    ``protocol``: the evaluation protocol the family's papers report (e.g. ``rgb_uint8``), or None for the default.
    """

    overrides: list[str]
    state: dict[str, Tensor]
    protocol: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """One official weight layout. ``detect(state)``: cheap, keys only; ``convert(state)``: raises
    :class:`ForeignCheckpointError` (one line: what was expected, what was found) when names match but shapes do
    not."""

    name: str                                   # e.g. "esrgan-old", "realesrgan-compact"
    arch: str                                   # the srexp preset it maps onto, e.g. "rrdb"
    detect: Callable[[StateDict], bool]
    convert: Callable[[StateDict], Converted]
    description: str = ""


# ------------------------------------------------------------------------------------------------ reading a file
def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only. A file that holds pickled code (a
    ``torch.save`` of a whole ``nn.Module``) is refused before anything of it runs: one line naming the first global
    it would have imported."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad checkpoint for the user
        text = str(e)
        if "Unsupported global" in text or "Weights only load failed" in text:
            glob = next((w.rstrip(".,:") for w in text.replace("GLOBAL ", "GLOBAL:").split()
                         if w.startswith("GLOBAL:")), "a Python object")
            raise ForeignCheckpointError(
                f"ckpt={path}: refused: it holds pickled code ({glob.replace('GLOBAL:', 'GLOBAL ')}), which srexp "
                f"never runs (valid: a state dict saved with torch.save(net.state_dict(), …), or .safetensors)"
            ) from None
        raise ForeignCheckpointError(f"ckpt={path}: not a loadable checkpoint ({text.splitlines()[0][:200]})") from None


def read_safetensors(path: Path) -> tuple[dict, dict[str, Tensor]]:
    """(metadata, tensors) of a safetensors file; one line when it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - a bad file for the user
        raise ForeignCheckpointError(
            f"ckpt={path}: not a loadable safetensors file ({str(e).splitlines()[0][:200]})") from None


def state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    """The tensors of a loaded file: the first container of :data:`CONTAINERS` that holds a dict (``params_ema``
    before ``params``), a single-entry dict opened, non-tensor entries (epoch, optimizer…) dropped, a ``module.``
    prefix that every key shares removed."""
    for _ in range(3):  # {"state_dict": {"model": {...}}} at most
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in CONTAINERS if isinstance(obj.get(k), dict)), None)
        if inner is None and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            inner = next(iter(obj.values()))
        if inner is None:
            break
        obj = inner
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)} \
        if isinstance(obj, dict) else {}
    if not state:
        found = type(obj).__name__ if not isinstance(obj, dict) else f"keys {', '.join(map(str, list(obj)[:4]))}"
        raise ForeignCheckpointError(f"ckpt={path}: no state dict inside (expected tensors by name, or one of "
                                     f"{', '.join(CONTAINERS)} holding them; found {found})")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The state dict of a foreign file (``.safetensors`` or a weights-only pickle), unwrapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return state_dict_of(read_safetensors(path)[1], path)
    return state_dict_of(torch_load(path), path)


# ------------------------------------------------------------------------------------------------------ registry
# The family modules of this package, each with its ``LAYOUTS`` (modules starting with ``_`` are helpers).
FAMILIES = ("compact", "edsr", "esrgan", "rcan", "swinir")


@functools.lru_cache(maxsize=1)
def layouts() -> tuple[Layout, ...]:
    """Every family's ``LAYOUTS``, in :data:`FAMILIES` order."""
    return tuple(lay for fam in FAMILIES for lay in importlib.import_module(f"{__name__}.{fam}").LAYOUTS)


def _keys(state: StateDict, n: int = 4) -> str:
    return f"{len(state)} tensors: {', '.join(list(state)[:n])}{', …' if len(state) > n else ''}"


def find_layout(state: StateDict, path: Path, forced: str | None = None) -> Layout | None:
    """The one layout of ``state`` (or the one named by ``forced``); None: let spandrel try (``forced=spandrel``,
    or no layout matched and spandrel is installed)."""
    known = layouts()
    if forced:
        if forced == SPANDREL:
            return None
        by_name = {lay.name: lay for lay in known}
        if forced not in by_name:
            raise ForeignCheckpointError(f"ckpt_layout={forced} is unknown (valid: {', '.join(by_name)}, {SPANDREL})")
        return by_name[forced]
    matches = [lay for lay in known if lay.detect(state)]
    if len(matches) > 1:
        raise ForeignCheckpointError(f"ckpt={path}: matches several layouts ({', '.join(m.name for m in matches)}): "
                                     f"choose one with ckpt_layout=")
    if matches:
        return matches[0]
    from srexp.nets.foreign._spandrel import spandrel_status

    status = spandrel_status()
    if status is None:
        return None
    raise no_layout(path, state, status)


def no_layout(path: Path, state: StateDict, why: str) -> ForeignCheckpointError:
    """The one line for a file nothing recognises: the file, the layouts known, a few of its keys, spandrel's part."""
    return ForeignCheckpointError(f"ckpt={path}: not a srexp checkpoint and no known layout matches (expected one of: "
                                  f"{', '.join(lay.name for lay in layouts())}; found {_keys(state)}; {why})")


# --------------------------------------------------------------------------------------------------------- load
def _is_composed(override: str) -> bool:
    """Overrides Hydra must compose (a group choice such as ``arch=rrdb`` or ``net/body=plain``, an addition or a
    deletion); the rest are plain values set on the composed config, as Hydra itself does after composing."""
    key = override.split("=", 1)[0]
    return key == "arch" or "/" in key or key.startswith(("+", "~"))


def compose_train(overrides: list[str]) -> tuple[dict, dict, dict]:
    """(resolved config, choices, the ``arch`` preset's resolved config at the same scale) of ``train.yaml`` with
    ``overrides``. Composing takes a good part of a second, so only the group choices are composed (cached); the
    values are set with Hydra's own override parser. Works inside a running Hydra app too (srexp-eval)."""
    return copy.deepcopy(_compose_train(tuple(overrides)))


@functools.lru_cache(maxsize=8)
def _compose_train(overrides: tuple[str, ...]) -> tuple[dict, dict, dict]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    groups = [o for o in overrides if _is_composed(o)]
    arch = [o for o in groups if o.startswith("arch=")]
    values = OverridesParser.create().parse_overrides([o for o in overrides if not _is_composed(o)])

    def resolved(base, settings) -> dict:
        cfg = copy.deepcopy(base)
        for o in settings:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        return OmegaConf.to_container(cfg, resolve=True)

    base, choices = _composed(tuple(groups))
    config = resolved(base, values)
    preset = resolved(_composed(tuple(arch))[0] if arch != groups else base,
                      [o for o in values if o.key_or_group == "scale"])
    return config, dict(choices), preset


@functools.lru_cache(maxsize=8)
def _composed(overrides: tuple[str, ...]):
    """(config without its hydra node, choices) of ``train.yaml`` with these group overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton
    from omegaconf import open_dict

    from srexp import CONF_DIR

    # Inside a running Hydra app (srexp-eval, srexp-upscale) the global Hydra is taken aside and put back as it was,
    # as hydra.initialize itself does with its backup; HydraConfig (the app's run folder) is not touched.
    outer = Singleton._instances.pop(GlobalHydra, None)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    finally:
        if outer is not None:
            Singleton._instances[GlobalHydra] = outer
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if isinstance(v, str)}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _same(a: Any, b: Any) -> bool:
    """Equal configs, floats to 1e-6 (a mean read back from float32 weights is the preset's to that)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6)
    return a == b


def check_fits(net_cfg: dict, state: dict[str, Tensor], path: Path, what: str) -> None:
    """Every tensor of ``state`` against the net ``net_cfg`` builds (on the meta device: no memory, no time): one
    line for a missing, extra or mis-shaped tensor."""
    from srexp.nets import build_net

    try:
        with torch.device("meta"):
            mine = build_net(net_cfg).state_dict()
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a module that computes in __init__: build it for real
        mine = build_net(net_cfg).state_dict()
    missing, extra = [k for k in mine if k not in state], [k for k in state if k not in mine]
    if missing or extra:
        raise ForeignCheckpointError(f"ckpt={path} ({what}): expected {len(mine)} tensors, found {len(state)} "
                                     f"({len(missing)} missing, e.g. {missing[:1]}; {len(extra)} unexpected, "
                                     f"e.g. {extra[:1]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(mine[k].shape):
            raise ForeignCheckpointError(f"ckpt={path} ({what}): {k} expected shape {tuple(mine[k].shape)}, found "
                                         f"{tuple(v.shape)}")


def load_foreign(path: str | Path, obj: Any, layout: str | None = None,
                 scale: int | None = None) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a foreign file already loaded safely as ``obj`` (a weights-only
    unpickle or a safetensors dict), as :func:`srexp.training.checkpoint.load_model` returns for srexp's own files.
    ``layout``: force a layout by name (``ckpt_layout=``); ``scale``: the scale, only where the file cannot tell."""
    from srexp.metrics.published import PAPERS

    path = Path(path)
    state = state_dict_of(obj, path)
    lay = find_layout(state, path, layout)
    if lay is None:
        from srexp.nets.foreign._spandrel import load_spandrel

        return load_spandrel(path, state, scale)
    try:
        conv = lay.convert(state)
    except ForeignCheckpointError as e:
        raise ForeignCheckpointError(f"ckpt={path} (layout {lay.name}): {e}") from None
    except KeyError as e:  # a forced layout on another kind of file
        raise ForeignCheckpointError(f"ckpt={path} (layout {lay.name}): expected {e.args[0]}, not in the file "
                                     f"(found {_keys(state)})") from None
    overrides = list(conv.overrides)
    said = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("scale=")), None)
    if said is None:
        if scale is None:
            raise ForeignCheckpointError(f"ckpt={path} ({lay.name}): the file does not say its scale: give scale=N")
        overrides.append(f"scale={scale}")
    arch = next((o.split("=", 1)[1] for o in overrides if o.startswith("arch=")), lay.arch)
    config, choices, preset = compose_train(overrides)
    check_fits(config["net"], conv.state, path, f"layout {lay.name} → arch={arch}")
    notes = list(conv.notes)
    if not _same(preset["net"], config["net"]):  # published numbers are the preset's: a resized net has none
        choices["arch"] = "custom"
        notes.append(f"not the arch={arch} preset's size, so no published numbers beside")
    config["protocol"] = conv.protocol or PAPERS.get(arch, {}).get("protocol") or config["protocol"]
    config["foreign"] = {"file": str(path), "layout": lay.name, "overrides": overrides, "notes": notes}
    log.info("ckpt=%s: layout %s (%s) → %s%s", path, lay.name, lay.description, " ".join(overrides),
             "".join(f"; {n}" for n in notes))
    return config, choices, conv.state


__all__ = ["Converted", "ForeignCheckpointError", "Layout", "StateDict", "layouts", "load_foreign", "read_state",
           "state_dict_of", "torch_load"]
