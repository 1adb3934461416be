"""Upsample layers: how one ×r step is made. Each is a partial the strategy calls as
``upsample(in_channels=…, out_channels=…, scale=r)``; the result maps ``(N, in, H, W)`` to
``(N, out, rH, rW)`` exactly, for any ``H, W`` (``conf/net/upsample/``)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.nets import ConfigError
from srexp.nets.blocks import Act, check_scale, conv, exact_padding
from srexp.ops.resize import imresize

INTERPOLATE_MODES = ("nearest", "bilinear", "bicubic")


class InterpolateUp(nn.Module):
    """Fixed interpolation, optionally followed by a learned ``kernel_size`` conv (0 = none).

    ``bicubic`` is MATLAB's (a = -0.5, :func:`srexp.ops.resize.imresize`), which is what the papers' "bicubic"
    means; torch's own bicubic uses a = -0.75 and gives different numbers. ``nearest``/``bilinear`` use
    ``F.interpolate(align_corners=False)`` (pixel centres, as MATLAB).
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, mode: str = "bicubic",
                 kernel_size: int = 0, act: Act | None = None) -> None:
        super().__init__()
        check_scale(scale)
        if mode not in INTERPOLATE_MODES:
            raise ConfigError(f"net.upsample.mode={mode} is unknown (valid: {', '.join(INTERPOLATE_MODES)})")
        if kernel_size == 0 and in_channels != out_channels:
            raise ConfigError(
                f"net.upsample.kernel_size=0 cannot map {in_channels} to {out_channels} channels "
                "(valid: a conv kernel_size such as 3, or a strategy that upsamples features, e.g. last_kernel: 3)"
            )
        self.scale, self.mode = scale, mode
        self.conv = conv(in_channels, out_channels, kernel_size) if kernel_size else nn.Identity()
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: Tensor, scale: int | None = None) -> Tensor:
        """``scale``: override the built scale (the layer has no scale-dependent weights)."""
        scale = scale or self.scale
        if self.mode == "bicubic":
            x = imresize(x, scale=scale)
        else:
            x = F.interpolate(x, scale_factor=scale, mode=self.mode,
                              align_corners=False if self.mode == "bilinear" else None)
        return self.act(self.conv(x))


class SubpixelConvTranspose2d(nn.ConvTranspose2d):
    """A stride-r ``ConvTranspose2d`` that can compute itself as a sub-pixel conv. Output phase
    ``(y mod r, x mod r)`` sees every r-th tap of the kernel, so gathering the weight into a small conv to
    ``out·r²`` channels followed by ``pixel_shuffle`` is the same function with the same gradients (to float
    rounding; tests/test_nets.py), the same parameters and checkpoint keys — and 2× faster on CPU for FSRCNN's
    9×9 ×3 layer (bench/cpu_train.py). Still a ``ConvTranspose2d`` module, so hooks (MACs, receptive field) see it.

    ``impl``: ``subpixel``, ``deconv`` (``ConvTranspose2d`` itself) or ``auto`` (``subpixel`` on CPU tensors,
    ``deconv`` elsewhere: not measured on GPU yet). Needs output ``= r × input`` (:func:`exact_padding`)."""

    IMPLS = ("auto", "deconv", "subpixel")

    def __init__(self, *args, impl: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if impl not in self.IMPLS:
            raise ConfigError(f"net.upsample.impl={impl} is unknown (valid: {', '.join(self.IMPLS)})")
        r, k, pad = self.stride[0], self.kernel_size[0], self.padding[0]
        self.impl, self.r = impl, r
        taps, self.sub_pad = subpixel_taps(k, r, pad)
        self.register_buffer("taps", taps, persistent=False)

    def subpixel_weight(self) -> tuple[Tensor, Tensor | None]:
        """The conv weight ``(out·r², in, K, K)`` and bias that, followed by ``pixel_shuffle(r)``, compute this
        layer. Differentiable: gradients reach ``weight`` and ``bias``."""
        w = F.pad(self.weight, (0, 1, 0, 1))  # index k = a zero tap
        K = self.taps.shape[1]
        w = w[:, :, self.taps[:, :, None, None], self.taps[None, None]]  # (in, out, r, K, r, K)
        w = w.permute(1, 2, 4, 0, 3, 5).reshape(-1, w.shape[0], K, K)  # channel o·r² + ry·r + rx
        b = self.bias.repeat_interleave(self.r * self.r) if self.bias is not None else None
        return w, b

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        if self.impl == "deconv" or (self.impl == "auto" and x.device.type != "cpu") or output_size is not None:
            return super().forward(x, output_size)
        w, b = self.subpixel_weight()
        left, right = self.sub_pad
        return F.pixel_shuffle(F.conv2d(F.pad(x, (left, right, left, right)), w, b), self.r)


class TransposedUp(nn.Module):
    """``ConvTranspose2d`` with stride r; padding and output_padding are derived from the kernel so the
    output is exactly ``rH × rW`` (``null`` kernel = r + 4, DBPN's 6/8/12 for ×2/×4/×8; FSRCNN uses 9,
    LapSRN 4). ``impl``: how it is computed (:class:`SubpixelConvTranspose2d`; the same layer either way)."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, kernel_size: int | None = None,
                 act: Act | None = None, impl: str = "auto") -> None:
        super().__init__()
        check_scale(scale)
        k, pad, out_pad = exact_padding(kernel_size, scale, "net.upsample.kernel_size")
        self.deconv = SubpixelConvTranspose2d(in_channels, out_channels, k, scale, pad, out_pad, impl=impl)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.deconv(x))


def subpixel_taps(k: int, r: int, pad: int) -> tuple[Tensor, tuple[int, int]]:
    """For a stride-``r`` transposed conv (kernel ``k``, padding ``pad``) along one axis: ``taps[phase, j]``, the
    transposed-conv tap that conv tap ``j`` applies for output phase ``phase`` (``k`` = none), and the (left,
    right) input padding of the equivalent stride-1 conv.

    Output ``y = r·q + phase`` sums ``in[q + a - m] · w[r·m + b]`` with ``(a, b) = divmod(phase + pad, r)`` over
    the ``m`` where ``r·m + b < k``: a correlation whose offset ``d = a - m`` becomes conv tap ``j = d - lo``.
    """
    rows = []
    for phase in range(r):
        a, b = divmod(phase + pad, r)
        rows.append([(a - m, r * m + b) for m in range(-(-(k - b) // r))])
    lo = min(d for row in rows for d, _ in row)
    hi = max(d for row in rows for d, _ in row)
    taps = torch.full((r, hi - lo + 1), k, dtype=torch.long)
    for phase, row in enumerate(rows):
        for d, t in row:
            taps[phase, d - lo] = t
    return taps, (-lo, hi)


class _ConvToSpace(nn.Module):
    """A conv to ``out·r²`` channels, then a channel-to-space rearrangement defined by the subclass."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, kernel_size: int = 3,
                 act: Act | None = None) -> None:
        super().__init__()
        check_scale(scale)
        self.scale, self.out_channels = scale, out_channels
        self.conv = conv(in_channels, out_channels * scale * scale, kernel_size)
        self.act = act() if act is not None else nn.Identity()

    def to_space(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.to_space(self.conv(x)))


class ReshapeUp(_ConvToSpace):
    """The naive channel→space *view*: ``(C·r², H, W)`` read as ``(C, rH, rW)``, no permute.

    Output channel ``c`` is the memory of input channels ``c·r² … c·r²+r²-1`` re-read in rows of ``rW``:
    input channel ``c·r² + k`` fills output rows ``k·H/r … (k+1)·H/r - 1`` (a horizontal band; when r does not
    divide H the bands straddle rows), and each output row is ``r`` consecutive input rows of that one channel
    laid side by side. So neighbouring output pixels
    come from *distant* LR positions and every band holds a squashed copy of the whole image: the spatial
    structure is scrambled and the conv before it must learn to undo that. Kept as the ablation.
    """

    def to_space(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        return x.reshape(n, self.out_channels, h * self.scale, w * self.scale)


class PixelShuffleUp(_ConvToSpace):
    """Sub-pixel convolution (ESPCN): conv to ``C·r²`` channels, then ``F.pixel_shuffle`` (reshape + permute).

    Output pixel ``(c, y, x)`` = input channel ``c·r² + (y mod r)·r + (x mod r)`` at ``(y // r, x // r)``:
    each ``r × r`` output block is made from ONE LR position, its ``r²`` sub-pixels taken from the ``r²``
    channels of group ``c``. Neighbouring output pixels stay neighbours of the same LR pixel.
    """

    def to_space(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(x, self.scale)
