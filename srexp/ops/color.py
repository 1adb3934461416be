"""BT.601 colour conversions as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` (the Y the SR papers measure on).

Tensors are ``(..., 3, H, W)``; float input is in [0, 1], uint8 input in [0, 255]. ``rgb_to_y`` on uint8 rounds to
uint8 as MATLAB does on uint8 images; on float it does not round.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Rows: Y, Cb, Cr. Coefficients for RGB in [0, 1] giving Y in [16, 235] (8-bit scale).
_M = torch.tensor(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=torch.float64
)
_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)


def _round_u8(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def rgb_to_ycbcr(img: Tensor) -> Tensor:
    """RGB → YCbCr (BT.601, studio swing). uint8 → uint8 (rounded); float [0,1] → float [0,1] (value/255)."""
    if img.shape[-3] != 3:
        raise ValueError(f"rgb_to_ycbcr: expected 3 channels at dim -3, got shape {tuple(img.shape)}")
    is_u8 = img.dtype == torch.uint8
    x = img.to(torch.float64) / 255 if is_u8 else img
    m = _M.to(device=x.device, dtype=x.dtype)
    off = _OFFSET.to(device=x.device, dtype=x.dtype)
    out = torch.einsum("ij,...jhw->...ihw", m, x) + off[:, None, None]
    return _round_u8(out) if is_u8 else out / 255


def rgb_to_y(img: Tensor) -> Tensor:
    """Y of BT.601 keeping the channel dim: ``(...,3,H,W) → (...,1,H,W)``. Single-channel input is returned as is
    (grayscale images are used as they are, as in the papers' Y-only protocol)."""
    if img.shape[-3] == 1:
        return img
    if img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected 1 or 3 channels at dim -3, got shape {tuple(img.shape)}")
    is_u8 = img.dtype == torch.uint8
    x = img.to(torch.float64) / 255 if is_u8 else img
    w = _M[0].to(device=x.device, dtype=x.dtype)
    y = 16.0 + (x * w[:, None, None]).sum(dim=-3, keepdim=True)
    return _round_u8(y) if is_u8 else y / 255


def ycbcr_to_rgb(img: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` for float input in [0, 1] (used to colour a Y network's output)."""
    m_inv = torch.linalg.inv(_M).to(device=img.device, dtype=img.dtype)
    off = _OFFSET.to(device=img.device, dtype=img.dtype)
    x = img * 255 - off[:, None, None]
    return torch.einsum("ij,...jhw->...ihw", m_inv, x)


def to_float(x: Tensor) -> Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()
