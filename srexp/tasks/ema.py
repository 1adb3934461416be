"""An exponential moving average of a net's weights (``task.ema_decay``): validation and export use it when enabled.

The average is a deep copy of the net kept as the task's ``net_ema`` submodule, so it is in every checkpoint
(``state_dict`` keys ``net_ema.*``), moves with the task between devices and is restored on resume.

Why not Lightning 2.6's ``WeightAveraging`` / ``EMAWeightAveraging`` (read in lightning/pytorch/callbacks/
weight_averaging.py): it averages the whole LightningModule — for a GAN or face task also the discriminator and the
frozen VGG of the perceptual loss, twice their memory for weights no one uses; it swaps every parameter in and out
at each validation instead of validating the average in place; and it writes the average into the checkpoint's
``state_dict`` with the training weights moved to ``current_model_state``, so every loader (srexp-eval, -export,
-upscale, resume) would read another layout. Its decay has no warm-up (``get_ema_avg_fn``). The copy here is the
net only, and ``net_ema.*`` beside ``net.*`` keeps both sets of weights in the one layout the loaders know.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).requires_grad_(False)


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float, step: int) -> None:
    """``ema ← d·ema + (1-d)·net`` with ``d = min(decay, (1+step)/(10+step))`` (a warm-up, so the average
    forgets the random init quickly); buffers (BatchNorm statistics) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    ema_p = [p for p in ema.parameters()]
    net_p = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(ema_p, net_p, 1.0 - d)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)
