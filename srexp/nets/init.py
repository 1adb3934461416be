"""Weight initialisations, as the papers report them. A strategy takes ``init``: one partial or a list,
applied in order to the finished net (``init: [{_target_: srexp.nets.init.he, _partial_: true}]``).

``layers`` picks the layers: ``conv`` (``Conv2d``), ``transposed`` (``ConvTranspose2d``) or ``all``. Biases are
zeroed, as the papers do. No ``init`` keeps PyTorch's default (uniform, std 1/√(3·fan_in)), which shrinks
the activations' variance ~6× per ReLU layer; He init (std √(2/fan_in)) keeps it through VDSR's 20 layers.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from srexp.nets import ConfigError

_KINDS = {"conv": (nn.Conv2d,), "transposed": (nn.ConvTranspose2d,), "all": (nn.Conv2d, nn.ConvTranspose2d)}


def _layers(net: nn.Module, layers: str) -> Iterator[nn.Conv2d | nn.ConvTranspose2d]:
    if layers not in _KINDS:
        raise ConfigError(f"net.init.layers={layers} is unknown (valid: {', '.join(_KINDS)})")
    return (m for m in net.modules() if isinstance(m, _KINDS[layers]))


@torch.no_grad()
def gaussian(net: nn.Module, std: float = 1e-3, layers: str = "all") -> None:
    """N(0, std²) weights, zero biases (SRCNN: std 1e-3 everywhere; FSRCNN's deconv: std 1e-3)."""
    for m in _layers(net, layers):
        nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            m.bias.zero_()


@torch.no_grad()
def he(net: nn.Module, a: float = 0.0, layers: str = "all") -> None:
    """He/Kaiming normal, fan-in, for ReLU (``a=0``) or PReLU/LeakyReLU slope ``a`` (VDSR, FSRCNN, LapSRN)."""
    for m in _layers(net, layers):
        nn.init.kaiming_normal_(m.weight, a=a, mode="fan_in", nonlinearity="leaky_relu")
        if m.bias is not None:
            m.bias.zero_()


@torch.no_grad()
def bilinear(net: nn.Module, layers: str = "transposed") -> None:
    """Transposed convs start as bilinear upsampling (LapSRN): the bilinear kernel from channel c to channel c,
    zero across channels, so the image branch begins as plain bilinear interpolation."""
    for m in _layers(net, layers):
        k = m.weight.shape[-1]
        factor = (k + 1) // 2
        centre = factor - 1 if k % 2 == 1 else factor - 0.5
        r = torch.arange(k, dtype=m.weight.dtype)
        w1 = 1 - (r - centre).abs() / factor
        kernel = w1[:, None] * w1[None, :]
        m.weight.zero_()
        for c in range(min(m.weight.shape[0], m.weight.shape[1])):
            m.weight[c, c] = kernel
        if m.bias is not None:
            m.bias.zero_()
