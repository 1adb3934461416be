"""Tiled inference: memory bounded by the tile, output equal to the whole-image output.

An output pixel depends on LR pixels at most ``receptive_radius(net)`` away from its own LR position. Each LR tile is
run with ``overlap`` pixels of context on every side (fewer at the image border, where the whole image has its
padding too) and only its core is kept, so with ``overlap >= radius`` the kept pixels are the whole-image ones
(up to float rounding: convolutions of different sizes may sum in another order).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor



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
