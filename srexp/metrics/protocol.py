"""Paper protocols: how LR is made, which channel is measured, what is shaved, how SR is quantised — one class each.

Two named protocols (facts in ``shared/data/README.md``):

* ``y_float`` (SRCNN/VDSR era): HR modcropped; Y = round(BT.601 Y) (grayscale used as is); LR made from Y/255 in
  float64 with MATLAB bicubic (no rounding between passes); output ×255 rounded; ``scale`` pixels shaved.
* ``rgb_uint8`` (EDSR/RCAN era): LR = MATLAB imresize of the uint8 RGB HR (rounded after each pass); the RGB
  output quantised to 8 bits; Y (not rounded) of SR and HR; grayscale replicated to RGB first; shave ``scale``.

Networks run at their own channel count; zero-parameter baselines run at the protocol's native one (Y for
``y_float``, RGB for ``rgb_uint8``) so a bicubic row is computed exactly as the papers did. Everything that differs
between the protocols is a method of its class: the data layer and the metrics ask the protocol, never its name.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import torch
from torch import Tensor

from srexp.errors import ConfigError
from srexp.ops.color import rgb_to_y
from srexp.ops.resize import imresize, modcrop


def _to_rgb(img: Tensor) -> Tensor:
    return img.expand(3, -1, -1) if img.shape[-3] == 1 else img


class Protocol:
    """What both protocols share: modcrop, shave = scale, the stamp. Subclasses say how LR, Y and SR are made."""

    name: str
    native_channels: int
    lr_description: str
    y_description: str

    # ------------------------------------------------------------------------------------- what a subclass defines
    def reference_y(self, hr: Tensor) -> Tensor:
        """uint8 HR ``(C,H,W)`` (modcropped) → the metric reference Y ``(1,H,W)``, float64 on the 0–255 scale."""
        raise NotImplementedError

    def make_lr(self, hr: Tensor, scale: int, channels: int) -> Tensor:
        """uint8 HR (modcropped) → LR network input ``(channels,h,w)``, float64 in [0,1]."""
        raise NotImplementedError

    def lr_from_file(self, lr_img: Tensor, channels: int) -> Tensor:
        """A shipped uint8 bicubic LR image → LR network input, float64 in [0,1] (gray replicated to RGB first)."""
        lr = _to_rgb(lr_img).double() / 255
        return rgb_to_y(lr) if channels == 1 else lr

    def training_pair(self, hr: Tensor, lr: Tensor, ref_y: Tensor, channels: int) -> tuple[Tensor, Tensor]:
        """(LR as stored, HR training target in the net's channels) of an aligned pair: uint8 where exact."""
        raise NotImplementedError

    def sr_to_y(self, sr: Tensor) -> Tensor:
        """Network output ``(N,C,H,W)`` in [0,1] → Y on the 0–255 scale, quantised as the protocol says."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------------ shared
    def degrade(self, hr: Tensor, scale: int, channels: int) -> tuple[Tensor, Tensor]:
        """uint8 HR ``(C,H,W)`` → (LR network input ``(channels,h,w)`` float32 in [0,1], reference Y ``(1,H',W')``
        float64 on the 0–255 scale of the modcropped HR)."""
        hr = modcrop(hr, scale)
        return self.make_lr(hr, scale, channels).float(), self.reference_y(hr)

    def premade(self, hr: Tensor, lr_img: Tensor, scale: int, channels: int) -> tuple[Tensor, Tensor]:
        """As :meth:`degrade`, the LR taken from a shipped uint8 LR image (DIV2K's) cut to ``modcrop(HR) / scale``
        (MATLAB gives ceil(H / s) rows for an H that s does not divide). ValueError when the sizes do not match."""
        H, W = hr.shape[-2:]
        hr = modcrop(hr, scale)
        h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
        if lr_img.shape[-2] not in (h, -(-H // scale)) or lr_img.shape[-1] not in (w, -(-W // scale)):
            raise ValueError(f"LR image {lr_img.shape[-1]}×{lr_img.shape[-2]} does not match the HR {W}×{H} at "
                             f"×{scale} (expected {w}×{h}, or {-(-W // scale)}×{-(-H // scale)})")
        return self.lr_from_file(lr_img[..., :h, :w], channels).float(), self.reference_y(hr)

    def shave(self, scale: int) -> int:
        return scale

    def stamp(self, scale: int, images_hash: str | None = None) -> dict:
        """What makes two numbers comparable; the same dict in val_metrics.json, benchmark.json and metrics.json."""
        return {"name": self.name, "shave": self.shave(scale), "lr": self.lr_description, "y": self.y_description,
                "images_sha1": images_hash}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class YFloat(Protocol):
    name, native_channels = "y_float", 1
    lr_description = "MATLAB bicubic of round(Y)/255 in float64, no rounding"
    y_description = "round(BT.601 Y), SR rounded"

    def reference_y(self, hr: Tensor) -> Tensor:
        return rgb_to_y(hr).double()  # uint8, rounded as MATLAB's rgb2ycbcr (grayscale used as is)

    def make_lr(self, hr: Tensor, scale: int, channels: int) -> Tensor:
        src = rgb_to_y(hr).double() / 255 if channels == 1 else _to_rgb(hr).double() / 255
        return imresize(src, scale=1 / scale)

    def training_pair(self, hr, lr, ref_y, channels):
        return lr, (rgb_to_y(hr) if channels == 1 else hr)  # Y: uint8, rounded (the reference itself)

    def sr_to_y(self, sr: Tensor) -> Tensor:
        q = torch.round(sr.detach().double().clamp(0, 1) * 255)
        return q if q.shape[1] == 1 else torch.round(rgb_to_y(q / 255) * 255)


class RGBUint8(Protocol):
    name, native_channels = "rgb_uint8", 3
    lr_description = "MATLAB bicubic of uint8 RGB, rounded after each pass"
    y_description = "BT.601 Y of uint8-quantised RGB"

    def reference_y(self, hr: Tensor) -> Tensor:
        return rgb_to_y(_to_rgb(hr).double() / 255) * 255

    def make_lr(self, hr: Tensor, scale: int, channels: int) -> Tensor:
        lr = imresize(_to_rgb(hr), scale=1 / scale).double() / 255  # uint8 in, uint8 out: rounded after each pass
        return rgb_to_y(lr) if channels == 1 else lr

    def training_pair(self, hr, lr, ref_y, channels):
        if channels == 1:
            return lr, (ref_y / 255).float()
        return torch.round(lr * 255).to(torch.uint8), hr  # exact: LR was uint8 before /255

    def sr_to_y(self, sr: Tensor) -> Tensor:
        q = torch.round(sr.detach().double().clamp(0, 1) * 255)
        return q if q.shape[1] == 1 else rgb_to_y(q / 255) * 255


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (YFloat(), RGBUint8())}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol={name!r} is unknown (valid: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def images_hash(images: Iterable[Tensor]) -> str:
    """Content hash of a test set (uint8 HR pixels, in order), stamped on every metric row."""
    h = hashlib.sha1()
    for img in images:
        h.update(str(tuple(img.shape)).encode())
        h.update(img.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:12]
