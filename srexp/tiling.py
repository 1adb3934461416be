"""Tiled inference: memory bounded by the tile, output equal to the whole-image output.

An output pixel depends on LR pixels at most ``receptive_radius(net)`` away from its own LR position. Each LR tile is
run with ``overlap`` pixels of context on every side (fewer at the image border, where the whole image has its
padding too) and only its core is kept, so with ``overlap >= radius`` the kept pixels are the whole-image ones
(up to float rounding: convolutions of different sizes may sum in another order).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from srexp.nets.upsample import InterpolateUp, ReshapeUp

# taps either side of MATLAB bicubic (kernel width 4 → 2, plus the rounding of u - 2); 1 for nearest/bilinear
INTERPOLATE_RADIUS = {"bicubic": 3, "bilinear": 1, "nearest": 1}


def _conv_reach(m: nn.Conv2d | nn.ConvTranspose2d) -> float:
    """Pixels of the layer's input grid that one of its outputs reaches (the larger side)."""
    reach = 0.0
    for k, d, p, s in zip(m.kernel_size, m.dilation, m.padding if isinstance(m.padding, tuple) else (0, 0),
                          m.stride):
        span = (k - 1) * d
        if isinstance(m.padding, str):  # 'same' / 'valid'
            p = span // 2 if m.padding == "same" else 0
        if isinstance(m, nn.ConvTranspose2d):
            reach = max(reach, math.floor(max(p, span - p) / s) + 1)
        else:
            reach = max(reach, max(p, span - p))
    return reach


@torch.no_grad()
def receptive_radius(net: nn.Module, channels: int, probe: int = 16) -> int | None:
    """An upper bound of the receptive-field radius in LR pixels: the sum, over every spatial layer the forward pass
    calls, of its reach divided by its grid's resolution relative to the LR input (convs at ×2 count half). A sum
    bounds every path through skips, concatenations and branches. None when the net mixes distant pixels on purpose
    (the ``reshape`` upsample layer), so tiling cannot be exact."""
    if any(isinstance(m, ReshapeUp) for m in net.modules()):
        return None
    total = 0.0

    def hook(m: nn.Module, inputs, output) -> None:
        nonlocal total
        grid = inputs[0].shape[-1] / probe  # this layer's input resolution relative to the LR image
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            total += _conv_reach(m) / grid
        elif isinstance(m, InterpolateUp):
            total += INTERPOLATE_RADIUS[m.mode] / grid
        elif isinstance(m, nn.Upsample):
            total += 2 / grid

    kinds = (nn.Conv2d, nn.ConvTranspose2d, InterpolateUp, nn.Upsample)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        p = next(net.parameters(), None)
        x = torch.zeros(1, channels, probe, probe, device=p.device if p is not None else "cpu")
        net.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return math.ceil(total - 1e-9)


def tiles(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Cores ``(y0, y1, x0, x1)`` covering an ``h × w`` image; ``tile <= 0`` = one tile."""
    th, tw = (h, w) if tile <= 0 else (tile, tile)
    return [(y, min(y + th, h), x, min(x + tw, w)) for y in range(0, h, th) for x in range(0, w, tw)]


def run_tiled(fn: Callable[[Tensor], Tensor], src: np.ndarray, scale: int, tile: int, overlap: int,
              dst: np.ndarray) -> np.ndarray:
    """``dst[..., s·y0:s·y1, s·x0:s·x1] = fn(src tile with overlap)[core]`` for every tile.

    ``src``: ``(N, C, H, W)`` uint8 / uint16 (read as x / 255 or x / 65535) or float in [0, 1]; ``fn`` maps a float
    ``(N, C, h, w)`` CPU tensor to ``(N, C', s·h, s·w)``; ``dst``: ``(N, C', s·H, s·W)``, uint8 / uint16 (rounded,
    clipped) or float32 (as computed, for tests). Only one tile is ever in float."""
    h, w = src.shape[-2:]
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
    s = scale
    for y0, y1, x0, x1 in tiles(h, w, tile):
        a0, a1, b0, b1 = max(y0 - overlap, 0), min(y1 + overlap, h), max(x0 - overlap, 0), min(x1 + overlap, w)
        x = torch.from_numpy(np.ascontiguousarray(src[..., a0:a1, b0:b1])).float()
        if src.dtype in peak:
            x /= peak[src.dtype]
        y = fn(x)[..., s * (y0 - a0) : s * (y1 - a0), s * (x0 - b0) : s * (x1 - b0)]
        if dst.dtype in peak:
            y = torch.round(y.clamp(0, 1) * peak[dst.dtype])
        dst[..., s * y0 : s * y1, s * x0 : s * x1] = y.numpy().astype(dst.dtype, copy=False)
    return dst
