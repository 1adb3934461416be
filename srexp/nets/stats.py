"""Model size and cost: parameters, MACs per LR pixel, receptive-field radius (the bound that makes tiling exact)."""
from __future__ import annotations

import math

import torch
from torch import nn

from srexp.nets.upsample import InterpolateUp, ReshapeUp


PROBE = 16  # LR side of the probe input


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@torch.no_grad()
def macs_per_lr_pixel(net: nn.Module, channels: int | None = None, probe: int = PROBE) -> float | None:
    """MACs of the conv/transposed-conv/linear layers (and of the modules that count their own activation products
    with ``matmul_macs(inputs, output)``: attention) of one forward pass, per LR input pixel; None for a net that
    does not take a plain LR image (a statistic must not stop a run)."""
    total = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal total
        if isinstance(mod, nn.ConvTranspose2d):  # every input pixel is scattered into a k×k patch per output channel
            kh, kw = mod.kernel_size
            total += inp[0].numel() * (mod.out_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features
        else:  # products between activations, e.g. attention's q·kᵀ and attn·v (srexp.nets.swinir)
            total += mod.matmul_macs(inp, out)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) or hasattr(m, "matmul_macs")]
    channels = getattr(net, "in_channels", None) or channels or 3
    p = next(iter(net.parameters()), None)
    x = torch.rand(1, channels, probe, probe, device=p.device if p is not None else "cpu")
    was_training = net.training
    try:
        net.eval()
        net(x)
    except (RuntimeError, TypeError, ValueError):
        return None
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return total / (probe * probe)


# taps either side of MATLAB bicubic (kernel width 4 → 2, plus the rounding of u - 2); 1 for nearest/bilinear
INTERPOLATE_RADIUS = {"bicubic": 3, "bilinear": 1, "nearest": 1}


def _conv_reach(m: nn.Conv2d | nn.ConvTranspose2d) -> float:
    """Pixels of the layer's input grid that one of its outputs reaches (the larger side)."""
    reach = 0.0
    for k, d, p, s in zip(m.kernel_size, m.dilation, m.padding if isinstance(m.padding, tuple) else (0, 0),
                          m.stride):
        span = (k - 1) * d
        if isinstance(m.padding, str):  # 'same' / 'valid'
            p = span // 2 if m.padding == "same" else 0
        if isinstance(m, nn.ConvTranspose2d):
            reach = max(reach, math.floor(max(p, span - p) / s) + 1)
        else:
            reach = max(reach, max(p, span - p))
    return reach


@torch.no_grad()
def receptive_radius(net: nn.Module, channels: int, probe: int = 16) -> int | None:
    """An upper bound of the receptive-field radius in LR pixels: the sum, over every spatial layer the forward pass
    calls, of its reach divided by its grid's resolution relative to the LR input (convs at ×2 count half). A sum
    bounds every path through skips, concatenations and branches. None when the net mixes distant pixels on purpose
    (the ``reshape`` upsample layer; any module with ``mixes_globally = True``: global pooling as in channel attention,
    attention windows aligned to the image), so tiling cannot be exact."""
    if hasattr(net, "recorded_radius"):  # a net that cannot be probed (an ONNX session) records its radius
        return net.recorded_radius
    if any(isinstance(m, ReshapeUp) or getattr(m, "mixes_globally", False) for m in net.modules()):
        return None
    total = 0.0

    def hook(m: nn.Module, inputs, output) -> None:
        nonlocal total
        grid = inputs[0].shape[-1] / probe  # this layer's input resolution relative to the LR image
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            total += _conv_reach(m) / grid
        elif isinstance(m, InterpolateUp):
            total += INTERPOLATE_RADIUS[m.mode] / grid
        elif isinstance(m, nn.Upsample):
            total += 2 / grid

    kinds = (nn.Conv2d, nn.ConvTranspose2d, InterpolateUp, nn.Upsample)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        p = next(net.parameters(), None)
        x = torch.zeros(1, channels, probe, probe, device=p.device if p is not None else "cpu")
        net.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return math.ceil(total - 1e-9)
