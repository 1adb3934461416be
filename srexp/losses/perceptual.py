"""Perceptual (VGG feature) loss: a distance between VGG19 feature maps of SR and HR (Johnson et al.; SRGAN), and the
style loss: a distance between their Gram matrices (Gatys et al.; DFDNet). Both tap :class:`VGG19Features`."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
from torch import Tensor

from srexp.errors import ConfigError
from srexp.nets.vgg import LAYER_NAMES, VGG19Features


class _VGGLoss(nn.Module):
    """Holds a frozen :class:`VGG19Features` as ``self.vgg``, deliberately *not* a submodule: it never shows up in
    ``parameters()`` (no optimiser can touch it), in ``state_dict()`` (checkpoints stay small and load without it) or
    in ``train()`` (it stays in eval mode). ``_apply`` still moves and casts it with the loss, so ``.to(device)`` from
    Lightning reaches it."""

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.__dict__["vgg"] = vgg

    def _apply(self, fn, recurse: bool = True):
        self.vgg._apply(fn, recurse)
        return super()._apply(fn, recurse)


class PerceptualLoss(_VGGLoss):
    """``criterion(φ(sr)·s, φ(hr)·s)`` with φ VGG19 features at ``layer`` and ``s = feature_scale``.

    SRGAN: ``layer=relu5_4`` (VGG5,4, after the activation), MSE, features rescaled by 1/12.75 — "equivalent to
    multiplying [the VGG loss] with a rescaling factor of ≈ 0.006", which brings it to the scale of the pixel MSE.
    ``layer`` may also map layers to weights, ``Σ_l w_l · criterion(φ_l(sr)·s, φ_l(hr)·s)`` from one VGG pass:
    Real-ESRGAN's ``{conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}`` with L1 (before the ReLUs).
    The VGG is kept out of parameters and checkpoints (see ``_VGGLoss``).
    """

    def __init__(self, layer: str | Mapping[str, float] = "relu5_4", criterion: nn.Module | None = None,
                 feature_scale: float = 1.0, pretrained: bool = True, weights: str | None = None) -> None:
        if isinstance(layer, Mapping):  # {layer: weight}: one VGG up to the deepest, each layer's distance weighted
            if not layer:
                raise ConfigError("perceptual loss layer={} (valid: a VGG19 layer name, or {layer: weight, ...})")
            self.layer_weights = {str(k): float(w) for k, w in layer.items()}
            taps: str | list[str] = list(self.layer_weights)
        else:
            self.layer_weights, taps = None, layer
        super().__init__(VGG19Features(taps, pretrained=pretrained, weights=weights))
        self.criterion = criterion if criterion is not None else nn.MSELoss()
        self.feature_scale = feature_scale

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        s = self.feature_scale
        with torch.no_grad():
            target = self.vgg(hr)
        if self.layer_weights is None:
            return self.criterion(self.vgg(sr) * s, target * s)
        return sum(w * self.criterion(f * s, t * s)
                   for w, f, t in zip(self.layer_weights.values(), self.vgg(sr), target))


class StyleLoss(_VGGLoss):
    """``Σ_l criterion(G(φ_l(sr)), G(φ_l(hr)))`` over the VGG19 ``layers``, with ``G(φ) = φφᵀ / (C·H·W)`` the Gram
    matrix of a layer's ``C × HW`` features: it matches which features occur together (texture), not where.
    One VGG19 up to the deepest layer, each layer counted once, summed from the shallowest; kept out of parameters
    and checkpoints as in :class:`PerceptualLoss`."""

    def __init__(self, layers: tuple[str, ...] = ("relu2_2", "relu3_4", "relu4_4", "relu5_4"),
                 criterion: nn.Module | None = None, pretrained: bool = True, weights: str | None = None) -> None:
        unknown = [layer for layer in layers if layer not in LAYER_NAMES]
        if unknown or not layers:
            raise ConfigError(f"style loss layers={list(layers)}: unknown {unknown} (valid: {', '.join(LAYER_NAMES)})")
        taps = sorted(set(layers), key=LAYER_NAMES.index)
        super().__init__(VGG19Features(taps, pretrained=pretrained, weights=weights))
        self.criterion = criterion if criterion is not None else nn.MSELoss()

    @staticmethod
    def gram(f: Tensor) -> Tensor:
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    def grams(self, x: Tensor) -> list[Tensor]:
        return [self.gram(f) for f in self.vgg(x)]

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            targets = self.grams(hr)
        return sum(self.criterion(g, t) for g, t in zip(self.grams(sr), targets))
