"""Residual-in-residual bodies: RCAN's channel-attention groups and ESRGAN's residual-in-residual dense blocks.

Both follow the body contract of :mod:`srexp.nets` (``body(in_channels=…)``, ``.out_channels``, same ``H × W``) and
end, like EDSR's :class:`~srexp.nets.bodies.ResBlocks`, with a conv and a long skip from the body's input, so the
strategy's head conv, upsample layers and last conv are the rest of the paper's network.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from srexp.nets import ConfigError
from srexp.nets.blocks import Act, conv


def _leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def _at_least_one(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}={value} is too small (valid: >= 1)")


class ChannelAttention(nn.Module):
    """RCAN's channel attention: global average pooling, a 1×1 conv down to ``num_feat // reduction`` channels
    (at least one), ReLU, a 1×1 conv back up, a sigmoid; the input is rescaled per channel by the result. The
    pooling sees the whole image, so an output pixel depends on every input pixel: ``mixes_globally`` tells
    :func:`srexp.nets.stats.receptive_radius` (and so the tiled upscaler) that tiles would not be exact."""

    mixes_globally = True

    def __init__(self, num_feat: int, reduction: int = 16) -> None:
        super().__init__()
        _at_least_one("net.body.reduction", reduction)
        squeeze = max(num_feat // reduction, 1)
        self.attend = nn.Sequential(nn.Conv2d(num_feat, squeeze, 1), nn.ReLU(),
                                    nn.Conv2d(squeeze, num_feat, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attend(x.mean(dim=(2, 3), keepdim=True))


class RCAB(nn.Module):
    """Residual channel-attention block: conv–act–conv–channel attention, scaled by ``res_scale``, plus the input.
    (The official RCAN code leaves ``res_scale`` unused: its models are ``res_scale = 1``.)"""

    def __init__(self, num_feat: int, kernel_size: int = 3, reduction: int = 16, act: Act = nn.ReLU,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(num_feat, num_feat, kernel_size), act(), conv(num_feat, num_feat, kernel_size),
                                  ChannelAttention(num_feat, reduction))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class ResidualGroup(nn.Module):
    """``num_block`` RCABs, a conv, and a skip over the group (RCAN's short skip connection)."""

    def __init__(self, num_feat: int, num_block: int, kernel_size: int = 3, reduction: int = 16,
                 act: Act = nn.ReLU, res_scale: float = 1.0) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[RCAB(num_feat, kernel_size, reduction, act, res_scale)
                                      for _ in range(num_block)])
        self.conv = conv(num_feat, num_feat, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.blocks(x))


class RCANBody(nn.Module):
    """RCAN (Zhang et al., ECCV 2018): ``num_group`` residual groups of ``num_block`` RCABs, a conv and the long skip
    (residual in residual: the group skips and the long skip let the low frequencies bypass the deep trunk)."""

    def __init__(self, in_channels: int, num_group: int = 10, num_block: int = 20, reduction: int = 16,
                 kernel_size: int = 3, res_scale: float = 1.0, act: Act = nn.ReLU) -> None:
        super().__init__()
        _at_least_one("net.body.num_group", num_group)
        _at_least_one("net.body.num_block", num_block)
        self.groups = nn.Sequential(*[ResidualGroup(in_channels, num_block, kernel_size, reduction, act, res_scale)
                                      for _ in range(num_group)])
        self.conv = conv(in_channels, in_channels, kernel_size)
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.groups(x))


class ResidualDenseBlock(nn.Module):
    """ESRGAN's dense block: five 3×3 convs, conv ``k`` sees the input and the ``num_grow_ch`` outputs of every
    earlier conv (concatenated); LeakyReLU(0.2) after the first four; the fifth maps back to ``num_feat`` and is
    added to the input scaled by ``res_scale`` (0.2: keeps the deep, BN-free trunk stable)."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, res_scale: float = 0.2, act: Act = _leaky_relu) -> None:
        super().__init__()
        _at_least_one("net.body.num_grow_ch", num_grow_ch)
        for k in range(1, 5):
            setattr(self, f"conv{k}", conv(num_feat + (k - 1) * num_grow_ch, num_grow_ch, 3))
        self.conv5 = conv(num_feat + 4 * num_grow_ch, num_feat, 3)
        self.act = act()
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for k in range(1, 5):
            feats.append(self.act(getattr(self, f"conv{k}")(torch.cat(feats, dim=1))))
        return x + self.conv5(torch.cat(feats, dim=1)) * self.res_scale


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, their output scaled by ``res_scale`` (0.2) plus the
    input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, res_scale: float = 0.2, act: Act = _leaky_relu) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(num_feat, num_grow_ch, res_scale, act)
                                           for _ in range(3))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.rdb3(self.rdb2(self.rdb1(x))) * self.res_scale


class RRDBBody(nn.Module):
    """ESRGAN's RRDBNet trunk (Wang et al., ECCVW 2018): ``num_block`` RRDBs, the trunk conv and the long skip. No
    BatchNorm anywhere (it brings artifacts in the GAN setting and limits generalisation, the paper argues)."""

    def __init__(self, in_channels: int, num_block: int = 23, num_grow_ch: int = 32, res_scale: float = 0.2,
                 act: Act = _leaky_relu) -> None:
        super().__init__()
        _at_least_one("net.body.num_block", num_block)
        self.blocks = nn.Sequential(*[RRDB(in_channels, num_grow_ch, res_scale, act) for _ in range(num_block)])
        self.conv = conv(in_channels, in_channels, 3)
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.blocks(x))
