"""MATLAB-exact ``imresize`` (bicubic) in torch, batched, CPU and CUDA.

Why not ``F.interpolate(mode="bicubic", antialias=True)``: it uses a = -0.75, no per-pass rounding and a
different border rule, so it reproduces only ~85% of MATLAB's uint8 pixels. The SR papers' tables were made
with MATLAB, so the degradation and the bicubic baseline must follow MATLAB exactly:

* cubic kernel with a = -0.5; when shrinking the kernel is stretched by 1/s (antialiasing), weights normalised;
* output coordinate ``u = x/s + 0.5 (1 - 1/s)`` (1-based), ``ceil(width) + 2`` taps, replicated borders;
* the dimension with the smaller scale first (rows first when equal);
* on uint8 input the result is rounded (half away from zero) and saturated to uint8 after *each* 1-D pass.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[Tensor, Tensor]:
    """Indices (0-based, clamped) and weights, shape (out_len, taps), computed in float64 as MATLAB does."""
    width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        width = width / scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    w = scale * cubic(dist * scale) if stretch else cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # MATLAB drops tap columns that are zero for every output; harmless for values but keeps the gather small.
    keep = (w != 0).any(dim=0)
    idx, w = idx[:, keep], w[:, keep]
    idx = (idx - 1).clamp_(0, in_len - 1).long()  # replicate borders
    return idx, w


def _resize_dim(x: Tensor, dim: int, out_len: int, scale: float, antialias: bool, round_uint8: bool) -> Tensor:
    in_len = x.shape[dim]
    idx, w = _contributions(in_len, out_len, scale, antialias)
    idx, w = idx.to(x.device), w.to(device=x.device, dtype=x.dtype)
    x = x.movedim(dim, -1)
    # Sum tap by tap in tap order (as MATLAB's loop does) rather than a matmul, to keep rounding identical.
    out = x[..., idx[:, 0]] * w[:, 0]
    for k in range(1, idx.shape[1]):
        out = out + x[..., idx[:, k]] * w[:, k]
    if round_uint8:
        out = torch.where(out >= 0, torch.floor(out + 0.5), torch.ceil(out - 0.5)).clamp_(0, 255)
    return out.movedim(-1, dim)


def imresize(
    img: Tensor,
    scale: float | None = None,
    size: Sequence[int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Resize ``(N,C,H,W)`` or ``(C,H,W)`` like MATLAB ``imresize(img, scale|size, 'bicubic')``.

    ``scale`` multiplies both sides (0.5 halves them); ``size`` is ``(H, W)``. uint8 in → uint8 out, rounded after
    each pass (bit-exact with MATLAB); float in → float out of the same dtype, no rounding (the float variant).
    """
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= or size=")
    if img.dim() not in (3, 4):
        raise ValueError(f"imresize: expected (C,H,W) or (N,C,H,W), got shape {tuple(img.shape)}")
    h, w = img.shape[-2:]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be > 0, got {scale}")
        scales = (float(scale), float(scale))
        out_hw = (math.ceil(h * scale), math.ceil(w * scale))
    else:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) <= 0:
            raise ValueError(f"imresize: size must be positive, got {tuple(size)}")
        scales = (out_hw[0] / h, out_hw[1] / w)

    is_uint8 = img.dtype == torch.uint8
    if scale is not None and _exporting() and not is_uint8 and float(scale).is_integer() and scale >= 1:
        return upscale_conv(img, int(scale))  # torch.export / ONNX: shape-generic ops only
    if not (is_uint8 or img.is_floating_point()):
        raise TypeError(f"imresize: expected uint8 or floating input, got {img.dtype}")
    x = img.to(torch.float64) if is_uint8 else img
    order = sorted((0, 1), key=lambda d: scales[d])  # MATLAB: smaller scale first, rows first on ties
    for d in order:
        if x.shape[d - 2] != out_hw[d] or scales[d] != 1.0:
            x = _resize_dim(x, x.dim() - 2 + d, out_hw[d], scales[d], antialias, round_uint8=is_uint8)
    return x.to(torch.uint8) if is_uint8 else x


def _exporting() -> bool:
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


@lru_cache(maxsize=16)
def _phase_taps(scale: int) -> tuple[tuple[tuple[float, ...], ...], int, int]:
    """MATLAB's ×``scale`` bicubic as ``scale`` fixed 1-D filters on the replicate-padded input: weights
    ``(scale, taps)`` (phase p makes output pixel ``scale·i + p`` from input pixels ``i - lo … i + hi``), lo, hi.
    :func:`_contributions`' rule with the output coordinate relative to input pixel i: ``u - i = (p + ½)/scale + ½``
    (1-based), so the taps of output ``scale·i + p`` are those of phase p shifted by i; at the borders its clamped
    indices are what replicate padding gives. Plain Python floats (float64): ``torch.export`` traces no tensor op."""
    def cubic1(d: float) -> float:
        a = abs(d)
        return (1.5 * a**3 - 2.5 * a**2 + 1) if a <= 1 else (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) if a <= 2 else 0.0

    phases = []
    for p in range(scale):
        f = (p + 0.5) / scale - 0.5  # u minus the 1-based index of input pixel i
        first = math.floor(f - 2)
        w = {first + k: cubic1(f - (first + k)) for k in range(6)}
        total = sum(w.values())
        phases.append({o: v / total for o, v in w.items() if v != 0})
    lo, hi = -min(min(ph) for ph in phases), max(max(ph) for ph in phases)
    return tuple(tuple(ph.get(o, 0.0) for o in range(-lo, hi + 1)) for ph in phases), lo, hi


def upscale_conv(x: Tensor, scale: int) -> Tensor:
    """``imresize(x, scale=scale)`` of a float ``(N, C, H, W)`` batch for an integer ``scale``, as replicate padding,
    a depthwise conv per dimension (rows first, as MATLAB) and an interleave of the ``scale`` phases: only
    shape-generic ops, so ``torch.export`` and ONNX export it for any ``H, W`` (equal to :func:`imresize` to float
    rounding; tests/test_onnx.py)."""
    if scale == 1:
        return x
    taps, lo, hi = _phase_taps(scale)
    n, c = x.shape[:2]
    k = torch.tensor(taps, dtype=x.dtype, device=x.device).repeat(c, 1)  # (c·scale, taps): channel ch·scale + p
    for dim in (2, 3):
        pad = (0, 0, lo, hi) if dim == 2 else (lo, hi, 0, 0)
        weight = k[:, None, :, None] if dim == 2 else k[:, None, None, :]
        y = F.conv2d(F.pad(x, pad, mode="replicate"), weight, groups=c)  # (n, c·scale, h, w)
        h, w = y.shape[-2:]
        y = y.reshape(n, c, scale, h, w)
        if dim == 2:
            x = y.permute(0, 1, 3, 2, 4).reshape(n, c, h * scale, w)
        else:
            x = y.permute(0, 1, 3, 4, 2).reshape(n, c, h, w * scale)
    return x


def modcrop(img: Tensor, scale: int) -> Tensor:
    """Crop the bottom/right so both sides are multiples of ``scale`` (as the papers' ``modcrop``)."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def resize_pil(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bicubic (PIL's filter, which the released DFDNet resizes with; not MATLAB's, see the module
    docstring) to ``size`` ``(H, W)``: float ``(N, C, H, W)`` → float, uint8 ``(C, H, W)`` → uint8, rounded."""
    if x.dtype == torch.uint8:
        return resize_pil(x[None].float(), size)[0].round().clamp(0, 255).to(torch.uint8)
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
