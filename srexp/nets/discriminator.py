"""Discriminators for adversarial SR training (``conf/task/discriminator/``). All return logits (no sigmoid): the
adversarial losses (``srexp.losses.adversarial``) take logits, which is numerically safer than probabilities."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from srexp.errors import ConfigError


def _conv(c_in: int, c_out: int, kernel: int, stride: int, bn: bool, sn: bool, act: bool = True) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if kernel % 2 else 1, bias=not bn)
    layers: list[nn.Module] = [_spectral_norm(conv) if sn else conv]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class VGGStyleDiscriminator(nn.Module):
    """SRGAN's discriminator: 3×3 convs in ``num_block`` pairs (stride 1, then stride 2), the width doubling
    each pair from ``num_feat`` (64 → 512 with the paper's 4 pairs = 8 convs), LeakyReLU 0.2, BN after every conv
    but the first, then dense ``dense`` (1024) → LeakyReLU → dense 1.

    The paper flattens a fixed 96-px input (6×6 after four halvings); an adaptive average pool to ``pool_size``
    (6: the identity at 96 px) lets any patch size through with the same dense layer.
    """

    def __init__(self, in_channels: int = 3, num_feat: int = 64, num_block: int = 4, dense: int = 1024,
                 pool_size: int = 6, bn: bool = True, spectral_norm: bool = False) -> None:
        super().__init__()
        if num_block < 1:
            raise ConfigError(f"discriminator num_block={num_block} (valid: >= 1)")
        layers = [_conv(in_channels, num_feat, 3, 1, bn=False, sn=spectral_norm)]
        c = num_feat
        for i in range(num_block):
            c_out = num_feat * 2**i
            if i:
                layers.append(_conv(c, c_out, 3, 1, bn, spectral_norm))
            layers.append(_conv(c_out, c_out, 3, 2, bn, spectral_norm))
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        fc1, fc2 = nn.Linear(c * pool_size**2, dense), nn.Linear(dense, 1)
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        self.classifier = nn.Sequential(nn.Flatten(), sn(fc1), nn.LeakyReLU(0.2, inplace=True), sn(fc2))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))  # (N, 1) logits


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): a fully convolutional D whose output is a map of logits, one per overlapping patch
    (70×70 receptive field with ``num_layers=3``). 4×4 convs: ``num_layers`` with stride 2 (width doubling from
    ``num_feat``, capped at 8×), one with stride 1, then a 1-channel conv. BN everywhere but the first layer.
    Needs HR patches of at least 3·2^num_layers px (24 with the default 3)."""

    def __init__(self, in_channels: int = 3, num_feat: int = 64, num_layers: int = 3, bn: bool = True,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"discriminator num_layers={num_layers} (valid: >= 1)")
        layers = [_conv(in_channels, num_feat, 4, 2, bn=False, sn=spectral_norm)]
        c = num_feat
        for i in range(1, num_layers + 1):
            c_out = num_feat * min(2**i, 8)
            layers.append(_conv(c, c_out, 4, 2 if i < num_layers else 1, bn, spectral_norm))
            c = c_out
        layers.append(_conv(c, 1, 4, 1, bn=False, sn=spectral_norm, act=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (N, 1, h, w) logits


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator (Wang et al., ICCVW 2021): a U-Net that returns one logit per pixel, so it judges
    local texture everywhere instead of the whole patch at once, with spectral normalisation on every conv but the
    first and the last to steady the training that the stronger D would otherwise destabilise.

    ``conv0`` (3×3, ``num_feat``), three 4×4 stride-2 convs (×2, ×4, ×8 ``num_feat``), then three stages of bilinear
    ×2 upsampling and a 3×3 conv back down the widths, each added to the encoder's features of that size
    (``skip_connection``), two more 3×3 convs, and a 3×3 conv to one channel. LeakyReLU 0.2 after every conv but the
    last; the SN convs have no bias. The output has the input's size, so the input's sides must be multiples of 8.
    """

    def __init__(self, in_channels: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection

        def sn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
            return _spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=False))

        f = num_feat
        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        self.down = nn.ModuleList([sn(f, 2 * f, 4, 2), sn(2 * f, 4 * f, 4, 2), sn(4 * f, 8 * f, 4, 2)])
        self.up = nn.ModuleList([sn(8 * f, 4 * f, 3, 1), sn(4 * f, 2 * f, 3, 1), sn(2 * f, f, 3, 1)])
        self.extra = nn.ModuleList([sn(f, f, 3, 1), sn(f, f, 3, 1)])
        self.conv_last = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ConfigError(f"UNetDiscriminatorSN: input of {h}×{w} px (valid: sides that are multiples of 8, for "
                              f"its three ×2 down- and upsamplings; the HR patch is data.patch_size)")
        act = nn.functional.leaky_relu
        skips = [act(self.conv0(x), 0.2)]
        for conv in self.down:
            skips.append(act(conv(skips[-1]), 0.2))
        y = skips.pop()
        for conv in self.up:
            y = act(conv(nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)), 0.2)
            if self.skip_connection:
                y = y + skips.pop()
        for conv in self.extra:
            y = act(conv(y), 0.2)
        return self.conv_last(y)  # (N, 1, H, W) logits, one per pixel
