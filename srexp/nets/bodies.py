"""Bodies: the feature extractors (``conf/net/body/``).

Contract: a body is a partial the strategy calls as ``body(in_channels=…)``; the module maps
``(N, in_channels, H, W)`` to ``(N, body.out_channels, H, W)`` — same size for any ``H, W``. A strategy that
applies a body at several levels (progressive) calls the partial once per level.
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from srexp.nets import ConfigError
from srexp.nets.blocks import Act, DownProjection, ResBlock, UpProjection, cat, conv, conv_act, exact_padding


class NoBody(nn.Identity):
    """The identity: zero parameters, for the interpolation baselines (``nearest``/``bilinear``/``bicubic``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels


class Plain(nn.Sequential):
    """``num_block`` convs, each followed by ``act``: SRCNN's middle layer, VDSR's 18 inner layers,
    ESPCN's second layer, a LapSRN level's feature-extraction branch.

    ``out_feat`` (default: ``in_channels``) is the width of the last conv, so SRCNN can map 64→32 and ESPCN
    64→32 inside the body; inner convs keep ``in_channels``.
    """

    def __init__(self, in_channels: int, num_block: int = 4, kernel_size: int = 3, out_feat: int | None = None,
                 act: Act = nn.ReLU) -> None:
        if num_block < 1:
            raise ConfigError(f"net.body.num_block={num_block} is too small for a plain body (valid: >= 1)")
        out_feat = out_feat or in_channels
        widths = [in_channels] * num_block + [out_feat]
        super().__init__(*[conv_act(a, b, kernel_size, act) for a, b in zip(widths[:-1], widths[1:])])
        self.out_channels = out_feat


class Hourglass(nn.Sequential):
    """FSRCNN's shrink–map–expand: a 1×1 conv shrinks ``d = in_channels`` to ``shrink`` channels, ``num_block``
    ``kernel_size`` convs map at that small width, a 1×1 conv expands back to ``d``. The mapping — the
    costliest part of SRCNN — runs at width ``s = 12`` instead of 56, which is where FSRCNN's speed comes from."""

    def __init__(self, in_channels: int, shrink: int = 12, num_block: int = 4, kernel_size: int = 3,
                 act: Act = nn.PReLU) -> None:
        layers = [conv_act(in_channels, shrink, 1, act)]
        layers += [conv_act(shrink, shrink, kernel_size, act) for _ in range(num_block)]
        layers.append(conv_act(shrink, in_channels, 1, act))
        super().__init__(*layers)
        self.out_channels = in_channels


class ResBlocks(nn.Module):
    """``num_block`` residual blocks (:class:`~srexp.nets.blocks.ResBlock`), then — with ``long_skip`` — a conv
    (+BN) and a skip from the body's input (SRResNet, EDSR: the blocks learn only the residual)."""

    def __init__(self, in_channels: int, num_block: int = 16, kernel_size: int = 3, bn: bool = False,
                 act: Act = nn.ReLU, res_scale: float = 1.0, long_skip: bool = True) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ResBlock(in_channels, kernel_size, bn, act, res_scale) for _ in range(num_block)]
        if long_skip:
            blocks.append(conv(in_channels, in_channels, kernel_size))
            if bn:
                blocks.append(nn.BatchNorm2d(in_channels))
        self.blocks = nn.Sequential(*blocks)
        self.long_skip = long_skip
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.blocks(x)
        return x + y if self.long_skip else y


class BackProjection(nn.Module):
    """``num_block`` DBPN up-/down-projection pairs at the body's own internal ``scale`` (LR → HR → LR with
    error feedback), so back-projection can refine features under any strategy. Up first, then down: ×r is
    exact for any size and ÷r of an r-multiple is exact, so odd ``H, W`` survive. ``dense`` feeds each unit the
    concatenation of all earlier same-resolution outputs (D-DBPN)."""

    def __init__(self, in_channels: int, num_block: int = 2, scale: int = 2, kernel_size: int | None = None,
                 dense: bool = False, act: Act = nn.PReLU) -> None:
        super().__init__()
        if num_block < 1:
            raise ConfigError(f"net.body.num_block={num_block} is too small for back-projection (valid: >= 1)")
        k, pad, out_pad = exact_padding(kernel_size, scale, "net.body.kernel_size")
        nf = in_channels

        def up() -> nn.Module:
            return nn.Sequential(nn.ConvTranspose2d(nf, nf, k, scale, pad, out_pad), act())

        def down() -> nn.Module:
            return nn.Sequential(nn.Conv2d(nf, nf, k, scale, pad), act())

        self.ups = nn.ModuleList(UpProjection(nf * (i + 1 if dense else 1), nf, up, down, act)
                                 for i in range(num_block))
        self.downs = nn.ModuleList(DownProjection(nf * (i + 1 if dense else 1), nf, up, down, act)
                                   for i in range(num_block))
        self.dense = dense
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        lows, highs = [x], []
        for up, down in zip(self.ups, self.downs):
            highs.append(up(cat(lows) if self.dense else lows[-1]))
            lows.append(down(cat(highs) if self.dense else highs[-1]))
        return lows[-1]

