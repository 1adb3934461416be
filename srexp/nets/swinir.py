"""SwinIR's body (Liang et al., ICCVW 2021): residual Swin transformer blocks (RSTB) of window self-attention.

A Swin layer attends within non-overlapping ``window × window`` windows of the feature map (cost linear in the image
size), with a learned bias per relative offset inside the window; every second layer shifts the windows by half a
window (a cyclic roll) so information crosses window borders, and a mask keeps the rolled-in pixels of the far edge
from attending to the near ones. An RSTB is ``depth`` such layers, a 3×3 conv and a skip; the body is the RSTBs, a
LayerNorm, ``conv_after_body`` and a long skip from its input (the head conv's output), then — classical SwinIR —
``conv_before_upsample`` (to 64 channels + LeakyReLU) so the strategy's pixel-shuffle steps run at 64 channels.

The body's width is its ``in_channels`` (the strategy's ``num_feat``: SwinIR's ``embed_dim``). Windows are aligned
to the image, so the body declares ``pad_multiple = window``: the strategy reflect-pads the image to a multiple of it
before the head conv and crops the output, as the official code does (the body also pads its own input, so it keeps
the body contract under any use). An output pixel's context therefore depends on where the windows fall, not only on
its neighbourhood: the attention is marked ``mixes_globally`` and the upscaler does not tile these nets.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from srexp.nets import ConfigError
from srexp.nets.blocks import Act, pad_to_multiple

MASKED = -100.0  # the official value for masked pairs (not -inf): softmax weight e^-100, 0 in float32


def relative_position_index(window: int) -> Tensor:
    """``(w², w²)``: for each (query, key) pair of a window, the row of the bias table for their offset
    ``(dy, dx) ∈ [-(w-1), w-1]²``, numbered ``(dy + w - 1)·(2w - 1) + (dx + w - 1)``."""
    yy, xx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    y, x = yy.flatten(), xx.flatten()
    dy, dx = y[:, None] - y[None, :], x[:, None] - x[None, :]
    return (dy + window - 1) * (2 * window - 1) + (dx + window - 1)


def to_windows(x: Tensor, window: int) -> Tensor:
    """``(B, H, W, C)`` → ``(B·nW, w², C)``, windows in row-major order; H, W multiples of ``window``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c)


def from_windows(x: Tensor, window: int, b: int, h: int, w: int) -> Tensor:
    x = x.view(b, h // window, w // window, window, window, -1).transpose(2, 3)
    return x.reshape(b, h, w, -1)


def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> Tensor:
    """``(nW, w², w²)``: 0 where two pixels of a shifted window came from the same region of the un-rolled map, else
    :data:`MASKED`. Rolling by ``-shift`` brings the last ``shift`` rows/columns next to the first ones; the three
    bands along each axis (``[0, H-w)``, ``[H-w, H-shift)``, ``[H-shift, H)``) are the regions."""
    region = torch.zeros(h, w, device=device)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            region[rows, cols] = 3 * i + j
    ids = to_windows(region.view(1, h, w, 1), window).squeeze(-1)  # (nW, w²)
    return (ids[:, None, :] != ids[:, :, None]).float() * MASKED


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, plus a learned bias per head and relative offset
    (``relative_position_bias_table``: ``(2w-1)², heads``)."""

    mixes_globally = True  # windows are aligned to the image, not to the pixel (srexp.nets.stats.receptive_radius)

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window, self.scale = heads, window, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B·nW, N, C)``, N = w²; ``mask``: ``(nW, N, N)`` for shifted windows, else None."""
        bn, n, c = x.shape
        q, k, v = self.qkv(x).view(bn, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B·nW, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bn // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bn, self.heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bn, n, c)
        return self.proj(x)

    def matmul_macs(self, inputs: tuple[Tensor, ...], output: Tensor) -> int:
        """The two attention products (q·kᵀ and attn·v), which no Linear/conv hook sees: ``2·B·nW·N²·C``."""
        bn, n, c = inputs[0].shape
        return 2 * bn * n * n * c


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a whole sample with probability ``p`` (scaling
    the kept ones by 1/(1-p)); the identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class SwinLayer(nn.Module):
    """Pre-norm transformer layer on ``(B, H, W, C)``: (shifted) window attention, then the MLP, each residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = from_windows(self.attn(to_windows(y, self.window), mask if self.shift else None), self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class RSTB(nn.Module):
    """Residual Swin transformer block: ``depth`` Swin layers (every second one shifted by half a window), a 3×3
    conv and a skip."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 drop_path: Sequence[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SwinLayer(dim, heads, window, window // 2 if i % 2 else 0, mlp_ratio, drop_path[i])
                                    for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:  # (B, H, W, C)
        y = x
        for block in self.blocks:
            y = block(y, mask)
        return x + self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class SwinIR(nn.Module):
    """SwinIR's deep feature extraction (+ its ``conv_before_upsample``) as a body.

    ``depths``/``heads``: layers and attention heads of each RSTB (one RSTB per entry); ``window``: the attention
    window side (the image is padded to a multiple of it); ``mlp_ratio``: MLP width / ``in_channels``; ``patch_norm``:
    a LayerNorm on the input tokens (SwinIR's ``patch_embed.norm``); ``out_feat``: the width of
    ``conv_before_upsample`` + ``act`` (classical SwinIR: 64, LeakyReLU 0.01), null = none and the body outputs its
    width (lightweight SwinIR, whose one-step upsampler reads the features directly); ``drop_path``: the
    stochastic-depth rate of the last layer (rising linearly from 0 over all layers, as SwinIR's code)."""

    def __init__(self, in_channels: int, depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
                 heads: Sequence[int] = (6, 6, 6, 6, 6, 6), window: int = 8, mlp_ratio: float = 2.0,
                 patch_norm: bool = True, out_feat: int | None = 64, act: Act = nn.LeakyReLU,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        depths, heads = list(depths), list(heads)
        if not depths or len(depths) != len(heads) or min(depths) < 1:
            raise ConfigError(f"net.body.depths={depths} and net.body.heads={heads}: one entry each per RSTB "
                              f"(valid: lists of the same length >= 1, depths >= 1)")
        if any(h < 1 or in_channels % h for h in heads):
            raise ConfigError(f"net.body.heads={heads} must divide the width net.num_feat={in_channels} "
                              f"(valid: divisors of {in_channels})")
        if window < 1:
            raise ConfigError(f"net.body.window={window} is too small (valid: >= 1)")
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"net.body.drop_path={drop_path} (valid: 0 <= drop_path < 1)")
        self.window, self.pad_multiple = window, window
        self.embed_norm = nn.LayerNorm(in_channels) if patch_norm else nn.Identity()
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(RSTB(in_channels, d, h, window, mlp_ratio, rates[s:s + d])
                                    for d, h, s in zip(depths, heads, starts))
        self.norm = nn.LayerNorm(in_channels)
        self.conv_after_body = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        if out_feat:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(in_channels, out_feat, 3, padding=1), act())
        else:
            self.conv_before_upsample = nn.Identity()
        self.out_channels = out_feat or in_channels
        for m in self.modules():  # SwinIR's init of the transformer parts (convs keep PyTorch's default)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window)  # a no-op under a strategy, which pads the image itself
        hp, wp = x.shape[-2:]
        shift = self.window // 2
        mask = shift_mask(hp, wp, self.window, shift, x.device).to(x.dtype) if shift else None
        y = self.embed_norm(x.permute(0, 2, 3, 1))
        for layer in self.layers:
            y = layer(y, mask)
        y = self.conv_after_body(self.norm(y).permute(0, 3, 1, 2)) + x
        return self.conv_before_upsample(y[..., :h, :w])


__all__ = ["RSTB", "SwinIR", "SwinLayer", "WindowAttention"]
