"""Pixel losses beyond torch's ``L1Loss`` / ``MSELoss`` (use those directly through ``_target_``)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((x - y)² + ε²))``: L1 with a smooth minimum (LapSRN), so the gradient does not flip sign at 0."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sqrt((x - y).pow(2) + self.eps**2).mean()
