"""Small building blocks shared by bodies and strategies."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.nets import ConfigError

Act = Callable[[], nn.Module]  # a partial such as ``torch.nn.PReLU``: a fresh activation per call


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """``Conv2d`` with 'same' padding for odd kernels, so a stack of them keeps any ``H, W``."""
    if kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size={kernel_size} must be odd to keep the size (valid: 1, 3, 5, …)")
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)


def conv_act(in_channels: int, out_channels: int, kernel_size: int, act: Act | None) -> nn.Module:
    layer = conv(in_channels, out_channels, kernel_size)
    return nn.Sequential(layer, act()) if act is not None else layer


def check_scale(scale: int) -> None:
    """The one check of ``scale`` that every net and layer makes."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale={scale!r} is not supported (valid: integers >= 1)")


def exact_padding(kernel_size: int | None, scale: int, key: str) -> tuple[int, int, int]:
    """``(kernel_size, padding, output_padding)`` that make a stride-``scale`` transposed conv exactly ×scale on any
    size (and the strided conv with the same ``padding`` exactly ÷scale on a multiple of ``scale``); a null
    ``kernel_size`` is ``scale + 4``: DBPN's 6, 8, 12 at ×2, ×4, ×8.

    ``out = (H-1)·r - 2p + k + op = H·r``  ⇒  ``2p - op = k - r``, with ``op ∈ {0, 1} < r``.
    """
    kernel_size = scale + 4 if kernel_size is None else kernel_size
    if kernel_size < scale:
        raise ConfigError(
            f"{key}={kernel_size} cannot do scale={scale} (valid: kernel_size >= {scale}, or null for scale+4)"
        )
    pad = (kernel_size - scale + 1) // 2
    return kernel_size, pad, 2 * pad - (kernel_size - scale)


def cat(xs: list[Tensor]) -> Tensor:
    """Channel concatenation that skips the copy for a single tensor."""
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom and right of ``(…, H, W)`` to multiples of ``multiple`` by reflection (SwinIR's image padding;
    replication where the image is too small to reflect that far)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


class ResBlock(nn.Module):
    """conv–(BN)–act–conv–(BN), scaled by ``res_scale`` and added to the input.

    EDSR drops BN (it normalises away the range flexibility SR needs) and scales the residual by 0.1 in its
    wide 256-channel model, which otherwise diverges; SRResNet keeps BN and uses PReLU.
    """

    def __init__(self, num_feat: int, kernel_size: int = 3, bn: bool = False, act: Act = nn.ReLU,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv(num_feat, num_feat, kernel_size)]
        if bn:
            layers.append(nn.BatchNorm2d(num_feat))
        layers += [act(), conv(num_feat, num_feat, kernel_size)]
        if bn:
            layers.append(nn.BatchNorm2d(num_feat))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class UpProjection(nn.Module):
    """DBPN's up-projection: ``H0 = up(L)``, ``L0 = down(H0)``, ``H1 = up(L0 - L)``, out ``H0 + H1``.

    The low-resolution error ``L0 - L`` is projected back up and corrects ``H0`` (error feedback). With
    ``in_channels > num_feat`` (dense DBPN: the concatenation of all earlier outputs) a 1×1 conv reduces first.
    ``up`` and ``down`` build fresh ``num_feat → num_feat`` ×r / ÷r modules.
    """

    def __init__(self, in_channels: int, num_feat: int, up: Callable[[], nn.Module],
                 down: Callable[[], nn.Module], act: Act) -> None:
        super().__init__()
        self.reduce = conv_act(in_channels, num_feat, 1, act) if in_channels != num_feat else nn.Identity()
        self.up0, self.down0, self.up1 = up(), down(), up()

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        h0 = self.up0(x)
        return h0 + self.up1(self.down0(h0) - x)


class DownProjection(UpProjection):
    """DBPN's down-projection, the mirror image: ``L0 = down(H)``, ``H0 = up(L0)``, out ``L0 + down(H0 - H)``."""

    def __init__(self, in_channels: int, num_feat: int, up: Callable[[], nn.Module],
                 down: Callable[[], nn.Module], act: Act) -> None:
        super().__init__(in_channels, num_feat, down, up, act)  # same wiring with up and down swapped


class MeanShift(nn.Module):
    """Adds ``sign · mean`` per channel (EDSR subtracts the training set's RGB mean at the input, adds it back
    at the output). A non-persistent buffer: a constant, not a parameter, and not stored in checkpoints."""

    def __init__(self, mean: list[float], sign: float) -> None:
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.shift
