"""Batched random degradations on the device. The stages — per-sample Gaussian blur, Gaussian noise (colour or gray),
Poisson noise, resize, baseline JPEG — and the first-order pipeline built from them, :class:`Degradation` (blur →
downscale → noise → JPEG → 8 bits), which blind-SR training (:class:`RandomDegradation`) and DFDNet's face data
(``srexp.data.faces.FaceDegradation``) configure. Real-ESRGAN's second-order pipeline
(:class:`srexp.ops.highorder.HighOrderDegradation`) is built from the same stages and the kernels of
:mod:`srexp.ops.kernels`.

The stages take ``(N, C, H, W)`` floats in [0, 1] and a per-sample parameter, so one call degrades a whole batch
with different strengths (no loop over samples, no trip back to the CPU).

JPEG here is the codec itself minus its lossless entropy coding, so its output is what a decoder would show:
8-bit RGB → JFIF YCbCr (full range) → 4:2:0 chroma (2×2 mean) → 8×8 orthonormal DCT → quantisation with the IJG
tables scaled by ``quality`` as libjpeg's ``jpeg_set_quality`` scales them → dequantisation → inverse DCT →
chroma upsampled by the triangular ("fancy") filter, which for ×2 is bilinear → RGB, rounded to 8 bits. It differs
from libjpeg only in rounding details (integer DCT, rounding of the 2×2 mean): PIL's JPEG of the same image and
quality is 45–48 dB PSNR from it on a face (``tests/test_dfdnet.py``). Not differentiable (rounding), nor meant to be.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from srexp.errors import ConfigError
from srexp.ops.resize import imresize, resize_pil

# ITU T.81 Annex K tables (the IJG defaults), row-major 8×8
_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
           47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
# JFIF full-range YCbCr (what libjpeg writes), rows Y, Cb, Cr
_RGB2YCC = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
_YCC2RGB = [[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]]


def gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float | None = None) -> Tensor:
    """Blur sample ``n`` of ``x`` with an isotropic Gaussian of std ``sigma[n]`` pixels (0 = unchanged), separable,
    reflect-padded. One grouped convolution per axis for the whole batch; the kernel radius is ``ceil(3·max_sigma)``
    (default: the largest σ, which costs a device sync on a GPU — pass the bound you drew σ under)."""
    n, c, h, w = x.shape
    sigma = sigma.to(x).reshape(n)
    top = float(sigma.max()) if max_sigma is None and n else (max_sigma or 0.0)
    radius = min(max(1, math.ceil(3 * top)), min(h, w) - 1)  # reflect padding must stay below the side
    if radius <= 0:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp_min(1e-3)[:, None]  # σ → 0 is a unit impulse
    k = torch.exp(-(t[None] ** 2) / (2 * s**2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N·C, taps): one kernel per sample, per channel
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _dct_matrix(device, dtype) -> Tensor:
    u, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    d = torch.cos((2 * x + 1) * u * math.pi / 16) * 0.5
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)  # orthonormal: JPEG's FDCT is exactly this 2-D DCT-II


def quant_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """(luma, chroma) quantisation tables ``(N, 8, 8)`` for integer qualities 1–100, as libjpeg scales them
    (``jpeg_quality_scaling``, baseline: entries clamped to 1–255)."""
    q = quality.round().clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000 / q), 200 - 2 * q)[:, None, None]
    out = []
    for base in (_LUMA, _CHROMA):
        t = torch.tensor(base, dtype=q.dtype, device=q.device).view(1, 8, 8)
        out.append(torch.floor((t * scale + 50) / 100).clamp(1, 255))
    return out[0], out[1]


def _quantise_plane(p: Tensor, table: Tensor, d: Tensor) -> Tensor:
    """Level-shifted plane ``(N, C, H, W)`` (H, W multiples of 8) → DCT, quantise, dequantise, inverse DCT."""
    n, c, h, w = p.shape
    blocks = p.reshape(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (N, C, h/8, w/8, 8, 8)
    coef = d @ blocks @ d.T
    t = table[:, None, None, None]
    coef = torch.round(coef / t) * t
    blocks = d.T @ coef @ d
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def jpeg(x: Tensor, quality: Tensor | float) -> Tensor:
    """Baseline JPEG (4:2:0) of each RGB sample at its own ``quality`` (1–100), decoded; ``(N, 3, H, W)`` in
    [0, 1] → the same, quantised to 8 bits."""
    n, _, h, w = x.shape
    q = torch.as_tensor(quality, dtype=torch.float32, device=x.device).reshape(-1).expand(n)
    work = x.float() if x.dtype != torch.float64 else x
    d = _dct_matrix(work.device, work.dtype)
    luma, chroma = (t.to(work.dtype) for t in quant_tables(q.to(work.dtype)))
    rgb = F.pad(torch.round(work.clamp(0, 1) * 255), (0, -w % 16, 0, -h % 16), mode="replicate")  # whole MCUs
    m = torch.tensor(_RGB2YCC, dtype=work.dtype, device=work.device)
    ycc = torch.einsum("ij,njhw->nihw", m, rgb)
    ycc[:, 1:] += 128
    ycc = ycc.round().clamp(0, 255)
    y, cbcr = ycc[:, :1], F.avg_pool2d(ycc[:, 1:], 2).round()
    y = (_quantise_plane(y - 128, luma, d) + 128).round().clamp(0, 255)
    cbcr = (_quantise_plane(cbcr - 128, chroma, d) + 128).round().clamp(0, 255)
    cbcr = F.interpolate(cbcr, scale_factor=2, mode="bilinear", align_corners=False) - 128
    m_inv = torch.tensor(_YCC2RGB, dtype=work.dtype, device=work.device)
    out = torch.einsum("ij,njhw->nihw", m_inv, torch.cat([y, cbcr], 1)).round().clamp(0, 255)
    return (out[..., :h, :w] / 255).to(x.dtype)


def noise_field(x: Tensor, generator: torch.Generator, gray: Tensor | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``; sample ``n`` gets one field for all its channels where ``gray[n]``
    (then both a colour and a gray field are drawn, whatever ``gray`` holds: one generator state, one field)."""
    colour = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if gray is None:
        return colour
    mono = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(gray.view(-1, 1, 1, 1), mono.expand_as(x), colour)


def add_noise(x: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian noise of std ``sigma[n]`` on the 0–255 scale (``noise`` from :func:`noise_field`), clipped to [0, 1]."""
    return (x + noise * sigma.to(x).view(-1, 1, 1, 1) / 255).clamp(0, 1)


def _levels(img8: Tensor) -> Tensor:
    """Per sample, the number of distinct values of an integer-valued ``(N, …)`` tensor in 0–255 (no loop, no sync)."""
    idx = img8.reshape(img8.shape[0], -1).long()
    seen = torch.zeros(img8.shape[0], 256, dtype=torch.bool, device=img8.device).scatter_(1, idx, True)
    return seen.sum(1)


def poisson_noise(x: Tensor, scale: Tensor, generator: torch.Generator, gray: Tensor | None = None) -> Tensor:
    """Shot noise as BasicSR's ``add_poisson_noise_pt`` (after scikit-image's ``random_noise(mode='poisson')``):
    the 8-bit-rounded image times ``v = 2^⌈log₂(distinct levels)⌉`` photon counts per unit, Poisson-sampled, over
    ``v``; the difference to the rounded image, times ``scale[n]``, is added to ``x``, clipped to [0, 1]. Its
    variance is ``scale² · x / v``: it grows with the signal. ``gray[n]``: one field, from the luma (ITU-R 601
    weights), for all channels. One Poisson draw per element of ``x`` whatever ``gray`` holds."""
    n, c = x.shape[:2]

    def rounded(img: Tensor) -> tuple[Tensor, Tensor]:
        img8 = torch.round(img.clamp(0, 1) * 255)
        return img8 / 255, torch.exp2(torch.ceil(torch.log2(_levels(img8).to(img.dtype)))).view(n, 1, 1, 1)

    img, v = rounded(x)
    if gray is not None:
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        luma, v_luma = rounded((x * w).sum(1, keepdim=True) if c == 3 else x[:, :1])
        g = gray.view(n, 1, 1, 1)
        img, v = torch.where(g, luma.expand_as(x), img), torch.where(g, v_luma, v)
    noise = torch.poisson(img * v, generator=generator) / v - img
    if gray is not None:  # a gray sample's field is its first channel's, in every channel
        noise = torch.where(g, noise[:, :1].expand_as(x), noise)
    return (x + noise * scale.to(x).view(n, 1, 1, 1)).clamp(0, 1)


RESIZE_MODES = ("area", "bilinear", "bicubic")


def resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``F.interpolate`` to ``size`` as Real-ESRGAN resizes (no antialiasing, ``align_corners=False``); ``area`` is
    adaptive average pooling. Bicubic may overshoot [0, 1] (the pipeline clips where the reference does)."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


RESAMPLES = ("matlab", "pil")


class Degradation:
    """Random degradation of a batch, on its device: per-sample Gaussian blur σ ∈ ``blur_sigma`` px → downscale by the
    caller's factor → Gaussian noise σ ∈ ``noise_sigma`` (0–255 scale) → JPEG at quality ∈ ``jpeg_quality`` (RGB only)
    → back to the input size (``restore_size``) → 8-bit rounding. Blur, noise and JPEG each happen with their
    probability ``p_*``, their strength drawn per sample; ``resample``: ``matlab`` (:func:`~srexp.ops.resize.imresize`,
    sides ``ceil(side / factor)``) or ``pil`` (antialiased bicubic, sides ``round(side / factor)``).

    The draws come from the caller's generator, in this order: blur (strength, gate), the noise field and noise
    (strength, gate) — in that order when ``noise_field_first``, else the other way round — then JPEG (strength,
    gate); strength and gate are ``(2, N)`` uniforms. Same generator state, same images. (``noise_field_first`` only
    keeps the images a seed gave before SR and faces shared this pipeline: SR drew the field first, faces last.)
    """

    def __init__(self, blur_sigma=(0.2, 2.0), noise_sigma=(1.0, 10.0), jpeg_quality=(40.0, 95.0), p_blur: float = 0.5,
                 p_noise: float = 0.5, p_jpeg: float = 0.5, resample: str = "matlab", restore_size: bool = False,
                 noise_field_first: bool = True, key: str = "degradation"):
        self.blur, self.noise, self.quality = (tuple(map(float, r)) for r in (blur_sigma, noise_sigma, jpeg_quality))
        self.p_blur, self.p_noise, self.p_jpeg = float(p_blur), float(p_noise), float(p_jpeg)
        self.resample, self.restore_size, self.noise_field_first = resample, restore_size, noise_field_first
        ranges = {"blur_sigma": (self.blur, 0, math.inf), "noise_sigma": (self.noise, 0, math.inf),
                  "jpeg_quality": (self.quality, 1, 100)}
        for name, ((lo, hi), low, high) in ranges.items():
            if not low <= lo <= hi <= high:
                raise ConfigError(f"{key}.{name}=[{lo:g}, {hi:g}]: needs {low} ≤ low ≤ high ≤ {high}")
        for name in ("p_blur", "p_noise", "p_jpeg"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{key}.{name}={getattr(self, name):g} is not a probability (0–1)")
        if resample not in RESAMPLES:
            raise ConfigError(f"{key}.resample={resample} is unknown (valid: {', '.join(RESAMPLES)})")

    def _resize(self, x: Tensor, factor: float | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if self.resample == "matlab":
            return imresize(x, scale=1 / factor) if size is None else imresize(x, size=size)
        h, w = x.shape[-2:]
        return resize_pil(x, size or (max(1, round(h / factor)), max(1, round(w / factor))))

    def apply(self, x: Tensor, generator: torch.Generator, downscale: float = 1.0) -> Tensor:
        """``x`` ``(N, C, H, W)`` floats in [0, 1] → degraded, shrunk by ``downscale`` (1: not resized) unless
        ``restore_size``, quantised to 8 bits, on the same device."""
        n, c, h, w = x.shape

        def draw(lo_hi: tuple[float, float], p: float) -> tuple[Tensor, Tensor]:
            u, gate = torch.rand(2, n, generator=generator, device=x.device)
            on = gate < p
            return torch.where(on, lo_hi[0] + u * (lo_hi[1] - lo_hi[0]), torch.zeros_like(u)), on

        x = gaussian_blur(x, draw(self.blur, self.p_blur)[0], max_sigma=self.blur[1])
        if downscale > 1:
            x = self._resize(x, downscale)
        if self.noise_field_first:
            noise, sigma = noise_field(x, generator), draw(self.noise, self.p_noise)[0]
        else:
            sigma, noise = draw(self.noise, self.p_noise)[0], noise_field(x, generator)
        x = add_noise(x, noise, sigma)
        if c == 3:
            q, on = draw(self.quality, self.p_jpeg)
            x = torch.where(on.view(n, 1, 1, 1), jpeg(x, q.clamp(min=1).round()), x)
        if self.restore_size and x.shape[-2:] != (h, w):
            x = self._resize(x, size=(h, w))
        return torch.round(x.clamp(0, 1) * 255) / 255


class RandomDegradation(Degradation):
    """Blind-SR training input made on the device from the HR batch: :class:`Degradation` with MATLAB-bicubic
    ×1/scale, the LR size kept.

    Used by ``SRTask(degradation=…)`` in ``on_after_batch_transfer`` on training batches only (validation keeps the
    protocol's exact LR, so the numbers stay comparable). The draws come from a generator seeded by (seed, step):
    a resumed run degrades its batches as the uninterrupted one did, with no host–device sync.
    """

    def __init__(self, blur_sigma=(0.2, 2.0), noise_sigma=(1.0, 10.0), jpeg_quality=(40.0, 95.0),
                 p_blur: float = 0.5, p_noise: float = 0.5, p_jpeg: float = 0.5, seed: int = 0):
        super().__init__(blur_sigma, noise_sigma, jpeg_quality, p_blur, p_noise, p_jpeg, resample="matlab",
                         key="task.degradation")
        self.seed = seed

    def __call__(self, hr: Tensor, scale: int, step: int) -> Tensor:
        gen = torch.Generator(device=hr.device).manual_seed(self.seed * 1_000_003 + step)
        return self.apply(hr, gen, scale)
