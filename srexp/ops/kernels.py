"""Blur kernels of the high-order degradation (Real-ESRGAN, Wang et al., ICCVW 2021), built per sample on the device
and applied by one grouped convolution for the whole batch.

Every kernel is ``(N, K, K)`` on a grid centred at 0 (``K`` odd), normalised to sum 1, a kernel of a smaller drawn
size being the same kernel zeroed outside its own ``size × size`` centre (what the reference does by padding):

* Gaussian family: ``q = pᵀ Σ⁻¹ p`` with ``Σ = R(θ) diag(σx², σy²) R(θ)ᵀ`` (isotropic: σy = σx, θ = 0);
  Gaussian ``exp(-q / 2)``, generalized Gaussian ``exp(-q^β / 2)``, plateau ``1 / (1 + q^β)``;
* sinc: the circular low-pass of cutoff ω_c (rad/px), ``ω_c J₁(ω_c r) / (2π r)``, ``ω_c² / 4π`` at r = 0.

:func:`random_kernels` draws them as BasicSR's ``random_mixed_kernels`` + Real-ESRGAN's dataset do
(``basicsr/data/degradations.py``, ``realesrgan/data/realesrgan_dataset.py``): a size ∈ {7, 9, …, 21}, then a sinc
with probability ``sinc_prob`` (ω_c ∈ [π/3, π] below size 13, [π/5, π] from 13), else one of :data:`KINDS` by
``kernel_prob``, σx, σy ∈ ``blur_sigma``, θ ∈ [-π, π], β ∈ [β_lo, 1] or [1, β_hi] with even odds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _grid(size: int, device, dtype) -> tuple[Tensor, Tensor]:
    """(x, y) of a ``size × size`` grid centred at 0: x along the columns, y along the rows."""
    t = torch.arange(size, device=device, dtype=dtype) - size // 2
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


def crop_to_size(k: Tensor, size: Tensor | int) -> Tensor:
    """Zero each kernel outside its own centred ``size[n] × size[n]`` window and renormalise to sum 1."""
    n, kk, _ = k.shape
    x, y = _grid(kk, k.device, k.dtype)
    half = (torch.as_tensor(size, device=k.device).reshape(-1).expand(n).to(k.dtype) // 2).view(n, 1, 1)
    k = k * ((x.abs() <= half) & (y.abs() <= half))
    return k / k.sum((1, 2), keepdim=True)


def gaussian_kernels(size: int, sigma_x: Tensor, sigma_y: Tensor | None = None, theta: Tensor | None = None,
                     beta: Tensor | None = None, plateau: bool | Tensor = False) -> Tensor:
    """``(N, size, size)`` kernels of the Gaussian family, one per sample (see the module docstring): ``beta`` None
    = 1 (the plain Gaussian), ``plateau`` (bool or per-sample bool) = ``1 / (1 + q^β)`` instead of ``exp(-q^β / 2)``."""
    sx = sigma_x.reshape(-1, 1, 1)
    sy = sx if sigma_y is None else sigma_y.reshape(-1, 1, 1).to(sx)
    th = torch.zeros_like(sx) if theta is None else theta.reshape(-1, 1, 1).to(sx)
    x, y = _grid(size, sx.device, sx.dtype)
    a = torch.cos(th) * x + torch.sin(th) * y  # Rᵀ p: the coordinates along the principal axes
    b = -torch.sin(th) * x + torch.cos(th) * y
    q = (a / sx) ** 2 + (b / sy) ** 2
    if beta is not None:
        q = q ** beta.reshape(-1, 1, 1).to(sx)
    plateau = torch.as_tensor(plateau, device=sx.device).reshape(-1, 1, 1)
    k = torch.where(plateau, 1 / (1 + q), torch.exp(-0.5 * q))
    return k / k.sum((1, 2), keepdim=True)


def sinc_kernels(size: int, cutoff: Tensor) -> Tensor:
    """``(N, size, size)`` circular low-pass (2-D sinc) kernels of cutoff ``cutoff[n]`` rad/px (π: none), sum 1."""
    w = cutoff.reshape(-1, 1, 1)
    x, y = _grid(size, w.device, w.dtype)
    r = torch.sqrt(x**2 + y**2)
    k = w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-12))
    k = torch.where(r == 0, w**2 / (4 * math.pi), k)
    return k / k.sum((1, 2), keepdim=True)


def pulse(n: int, size: int, device=None, dtype=torch.float32) -> Tensor:
    """``(N, size, size)`` unit impulses: a blur that changes nothing."""
    k = torch.zeros(n, size, size, device=device, dtype=dtype)
    k[:, size // 2, size // 2] = 1
    return k


def filter2d(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve sample ``n`` of ``x`` ``(N, C, H, W)`` with ``kernels[n]`` ``(K, K)`` (K odd), every channel alike,
    by one grouped convolution; reflect padding (replicate where the image is not larger than K // 2)."""
    n, c, h, w = x.shape
    kk = kernels.shape[-1]
    pad = kk // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    k = kernels.to(x).repeat_interleave(c, 0)[:, None]  # (N·C, 1, K, K); point-symmetric: correlation = convolution
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    return F.conv2d(y, k, groups=n * c).reshape(n, c, h, w)


def _between(u: Tensor, lo_hi: Sequence[float]) -> Tensor:
    return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])


def random_kernels(n: int, generator: torch.Generator, kernel_prob: Mapping[str, float], blur_sigma: Sequence[float],
                   betag_range: Sequence[float], betap_range: Sequence[float], sinc_prob: float,
                   kernel_size: Sequence[int] = (7, 21), device=None, dtype=torch.float32) -> Tensor:
    """``(N, K, K)`` random blur kernels (``K = kernel_size[1]``), one per sample, drawn as the module docstring says.

    Nine uniforms per sample come from ``generator`` (on ``device``) whatever the kinds drawn, so one generator state
    gives one set of kernels."""
    lo, hi = (int(v) for v in kernel_size)
    u = torch.rand(9, n, generator=generator, device=device, dtype=torch.float64)
    sizes = lo + 2 * torch.floor(u[0] * ((hi - lo) // 2 + 1)).clamp(max=(hi - lo) // 2)
    probs = torch.tensor([float(kernel_prob.get(k, 0.0)) for k in KINDS], dtype=torch.float64, device=u.device)
    edges = probs.cumsum(0) / probs.sum()
    kind = torch.searchsorted(edges, u[3, :, None], right=True).squeeze(1).clamp(max=len(KINDS) - 1)
    iso = kind % 2 == 0
    sx = _between(u[4], blur_sigma)
    sy = torch.where(iso, sx, _between(u[5], blur_sigma))
    theta = torch.where(iso, torch.zeros_like(sx), _between(u[6], (-math.pi, math.pi)))
    family = kind // 2  # 0 Gaussian, 1 generalized, 2 plateau
    b_range = torch.where(family == 2, torch.tensor(list(betap_range), dtype=u.dtype, device=u.device)[:, None],
                          torch.tensor(list(betag_range), dtype=u.dtype, device=u.device)[:, None])  # (2, N)
    below = u[7] < 0.5  # β ∈ [lo, 1] or [1, hi], even odds (BasicSR)
    beta = torch.where(below, b_range[0] + u[8] * (1 - b_range[0]), 1 + u[8] * (b_range[1] - 1))
    beta = torch.where(family == 0, torch.ones_like(beta), beta)
    k = gaussian_kernels(hi, sx, sy, theta, beta, plateau=family == 2)
    cutoff = torch.where(sizes < 13, _between(u[2], (math.pi / 3, math.pi)), _between(u[2], (math.pi / 5, math.pi)))
    k = torch.where((u[1] < sinc_prob)[:, None, None], sinc_kernels(hi, cutoff), k)
    return crop_to_size(k, sizes).to(dtype)


def random_sinc(n: int, generator: torch.Generator, p: float, kernel_size: Sequence[int] = (7, 21),
                cutoff: Sequence[float] = (math.pi / 3, math.pi), device=None, dtype=torch.float32) -> Tensor:
    """Real-ESRGAN's final filter: per sample, with probability ``p`` a sinc of a random odd size in ``kernel_size``
    and cutoff in ``cutoff``, else a unit impulse; ``(N, K, K)``, ``K = kernel_size[1]``."""
    lo, hi = (int(v) for v in kernel_size)
    u = torch.rand(3, n, generator=generator, device=device, dtype=torch.float64)
    sizes = lo + 2 * torch.floor(u[1] * ((hi - lo) // 2 + 1)).clamp(max=(hi - lo) // 2)
    k = crop_to_size(sinc_kernels(hi, _between(u[2], cutoff)), sizes)
    return torch.where((u[0] < p)[:, None, None], k, pulse(n, hi, u.device, u.dtype)).to(dtype)
