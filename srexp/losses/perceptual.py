"""Perceptual (VGG feature) loss: a distance between VGG19 feature maps of SR and HR (Johnson et al.; SRGAN)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from srexp.nets.vgg import VGGFeatures


class PerceptualLoss(nn.Module):
    """``criterion(φ(sr)·s, φ(hr)·s)`` with φ VGG19 features at ``layer`` and ``s = feature_scale``.

    SRGAN: ``layer=relu5_4`` (VGG5,4, after the activation), MSE, features rescaled by 1/12.75 — "equivalent to
    multiplying [the VGG loss] with a rescaling factor of ≈ 0.006", which brings it to the scale of the pixel MSE.

    The VGG is deliberately *not* a submodule: it never shows up in ``parameters()`` (no optimiser can touch it),
    in ``state_dict()`` (checkpoints stay small and load without it) or in ``train()`` (it stays in eval mode).
    ``_apply`` still moves and casts it with the loss, so ``.to(device)`` from Lightning reaches it.
    """

    def __init__(self, layer: str = "relu5_4", criterion: nn.Module | None = None, feature_scale: float = 1.0,
                 pretrained: bool = True, weights: str | None = None) -> None:
        super().__init__()
        self.__dict__["vgg"] = VGGFeatures(layer, pretrained=pretrained, weights=weights)
        self.criterion = criterion if criterion is not None else nn.MSELoss()
        self.feature_scale = feature_scale

    def _apply(self, fn, recurse: bool = True):
        self.vgg._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.vgg(hr) * self.feature_scale
        return self.criterion(self.vgg(sr) * self.feature_scale, target)
