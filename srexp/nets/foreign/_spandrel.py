"""spandrel (MIT, an optional extra) for the long tail: a file no srexp layout matches is detected and built by
spandrel from the state dict srexp already loaded safely, and runs as a srexp net (``[0, 1]`` in and out, ``scale``)
under srexp's protocols, colour handling and tiling rules.

What srexp-eval and srexp-upscale need of a net, and where it comes from here: the scale and the input/output channels
(spandrel's descriptor reads them from the weights); the receptive radius (unknown: :class:`SpandrelNet` says
``mixes_globally``, so srexp-upscale runs it untiled); the protocol (the default, ``rgb_uint8``: spandrel knows no
papers); published numbers (none). The config names the file and the architecture, so the net is rebuilt from the
file like any srexp net from its config.

torchvision: ``import spandrel`` registers all its architectures, and two of them — LaMa (inpainting) and
RestoreFormer (face restoration) — import ``torchvision.transforms.functional`` at import time. Where torchvision
does not import (absent, or built for another torch: it pins one torch build, and this project's CPU torch has none),
:func:`import_spandrel` imports spandrel with a stand-in for exactly those names in ``sys.modules`` for the duration
of that import only, then takes it out again; the stand-in raises if it is ever called. It cannot change a result:
nothing else in spandrel uses torchvision, and srexp refuses both of those architectures before running anything
(srexp runs SR and restoration nets; they are inpainting and face models). Where the real torchvision imports it is
used and nothing is stood in.
"""
from __future__ import annotations

import enum
import functools
import logging
import sys
import traceback
import types
from pathlib import Path

import torch
from torch import Tensor, nn

from srexp.nets.foreign import ForeignCheckpointError, no_layout, read_state

log = logging.getLogger("srexp.foreign")
PURPOSES = ("SR", "Restoration")  # spandrel's purposes srexp can run (not FaceSR, Inpainting)
INSTALL = "pip install --no-deps spandrel einops"
TV = "torchvision.transforms.functional"


def _unavailable(*_a, **_k):
    raise RuntimeError("spandrel's LaMa/RestoreFormer need torchvision, which does not import here (srexp refuses "
                       "both architectures)")


def _stand_in() -> dict[str, types.ModuleType]:
    tv, transforms, functional = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", TV))
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = functional.normalize = _unavailable
    tv.transforms, transforms.functional = transforms, functional
    return {"torchvision": tv, "torchvision.transforms": transforms, TV: functional}


@functools.lru_cache(maxsize=1)
def import_spandrel() -> tuple[types.ModuleType | None, str]:
    """(spandrel or None, why not): the module, with the torchvision stand-in during its import where needed."""
    try:
        import spandrel

        return spandrel, ""
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch fails in many ways
        if isinstance(e, ModuleNotFoundError) and e.name == "spandrel":
            return None, f"spandrel, for more architectures, is not installed ({INSTALL})"
        if "torchvision" not in "".join(traceback.format_exception(e)):
            return None, f"spandrel does not import: {str(e).splitlines()[0][:200]}"
    for name in [m for m in sys.modules if m.split(".")[0] in ("spandrel", "torchvision")]:
        del sys.modules[name]  # the half-done imports
    stand_in = _stand_in()
    sys.modules.update(stand_in)
    try:
        import spandrel
    except Exception as e:  # noqa: BLE001 - report, do not crash the command
        return None, f"spandrel does not import: {str(e).splitlines()[0][:200]}"
    finally:
        for name, mod in stand_in.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]
    log.info("spandrel imported without torchvision (it does not import here): its LaMa and RestoreFormer are refused")
    return spandrel, ""


def spandrel_status() -> str | None:
    """None when spandrel can be used, else the reason (one clause)."""
    mod, why = import_spandrel()
    return None if mod is not None else why


def describe(path: Path, state: dict[str, Tensor]):
    """spandrel's descriptor of ``state``, or one line: nothing detected, or not an SR/restoration model."""
    spandrel, why = import_spandrel()
    if spandrel is None:
        raise no_layout(path, state, why)
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        raise no_layout(path, state, "nor does any of spandrel's architectures") from None
    except Exception as e:  # noqa: BLE001 - detected, but the weights do not build its net
        raise ForeignCheckpointError(f"ckpt={path}: spandrel could not build it ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.purpose not in PURPOSES:
        raise ForeignCheckpointError(f"ckpt={path}: spandrel detects {desc.architecture.id}, a {desc.purpose} model "
                                     f"(expected one of purposes {', '.join(PURPOSES)}: srexp runs image-to-image nets)")
    return desc


class SpandrelNet(nn.Module):
    """A spandrel model as a srexp net: ``forward`` is spandrel's own call (padding to the architecture's size
    requirements and cropping back, output clamped to ``[0, 1]``). ``file`` is read again (safely) and must still be
    the ``architecture`` the config names."""

    mixes_globally = True  # its receptive radius is unknown: srexp-upscale does not tile it

    def __init__(self, file: str, architecture: str, scale: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        path = Path(file)
        desc = describe(path, read_state(path))
        found = (desc.architecture.id, desc.scale, desc.input_channels, desc.output_channels)
        if found != (architecture, scale, in_channels, out_channels):
            raise ForeignCheckpointError(f"ckpt={path}: expected a ×{scale} {architecture} with {in_channels} → "
                                         f"{out_channels} channels, found a ×{found[1]} {found[0]} with {found[2]} → "
                                         f"{found[3]} (the file changed since it was loaded?)")
        self.model, self._descriptor = desc.model, desc  # the descriptor is not a Module: .to() moves self.model
        self.scale, self.in_channels, self.out_channels = scale, in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type) and not self._descriptor.supports_bfloat16:
            with torch.autocast(x.device.type, enabled=False):  # srexp-upscale's bf16 on CUDA: not for this net
                return self._descriptor(x.float())
        return self._descriptor(x)


def load_spandrel(path: Path, state: dict[str, Tensor], scale: int | None = None) -> tuple[dict, dict, dict]:
    """(config, choices, state) of a file spandrel detects, as :func:`srexp.nets.foreign.load_foreign` returns."""
    desc = describe(path, state)
    if scale is not None and scale != desc.scale:
        raise ForeignCheckpointError(f"scale={scale} does not match ckpt={path}, a ×{desc.scale} "
                                     f"{desc.architecture.id} (valid: scale={desc.scale} or unset)")
    net = {"_target_": f"{__name__}.SpandrelNet", "file": str(path.resolve()), "architecture": desc.architecture.id,
           "scale": desc.scale, "in_channels": desc.input_channels, "out_channels": desc.output_channels}
    config = {"scale": desc.scale, "channels": desc.input_channels, "protocol": "rgb_uint8", "net": net,
              "foreign": {"file": str(path), "layout": "spandrel", "architecture": desc.architecture.id,
                          "notes": ["spandrel: receptive radius unknown, so srexp-upscale does not tile it"]}}
    log.info("ckpt=%s: spandrel detects %s (%s), ×%d, %d → %d channels", path, desc.architecture.id,
             desc.architecture.name, desc.scale, desc.input_channels, desc.output_channels)
    return config, {"arch": f"spandrel:{desc.architecture.id}"}, {f"model.{k}": v for k, v in
                                                                  desc.model.state_dict().items()}
