"""Adversarial losses on discriminator logits: ``vanilla`` (BCE, SRGAN), ``lsgan`` (least squares, Mao et al.),
``ragan`` (relativistic average, ESRGAN: D judges whether real is *more* realistic than fake on average) and
``hinge`` (SNGAN/SAGAN; DFDNet's released losses)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.errors import ConfigError


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _mse(out: Tensor, target: float) -> Tensor:
    return F.mse_loss(out, torch.full_like(out, target))


def _ra(a: Tensor, b: Tensor) -> Tensor:
    """RaGAN's relativistic logit: C(a) - E[C(b)]."""
    return a - b.mean()


def _vanilla_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return _bce(fake, 1.0)


def _vanilla_d(real: Tensor, fake: Tensor) -> Tensor:
    return _bce(real, 1.0) + _bce(fake, 0.0)


def _lsgan_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return _mse(fake, 1.0)


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return _mse(real, 1.0) + _mse(fake, 0.0)


# RaGAN averages its two terms (as BasicSR's ESRGAN does), so its scale matches the one-term losses.
def _ragan_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return (_bce(_ra(real, fake), 0.0) + _bce(_ra(fake, real), 1.0)) / 2


def _ragan_d(real: Tensor, fake: Tensor) -> Tensor:
    return (_bce(_ra(real, fake), 1.0) + _bce(_ra(fake, real), 0.0)) / 2


def _hinge_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return -fake.mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


# kind -> (generator loss(fake, real), discriminator loss(real, fake))
_KINDS = {"vanilla": (_vanilla_g, _vanilla_d), "lsgan": (_lsgan_g, _lsgan_d), "ragan": (_ragan_g, _ragan_d),
          "hinge": (_hinge_g, _hinge_d)}


class AdversarialLoss(nn.Module):
    """The generator's and the discriminator's losses for one GAN ``kind``.

    SRGAN's generator term is ``-log D(G(z))`` (the non-saturating form), which ``vanilla`` is.
    """

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ConfigError(f"adversarial kind={kind!r} is unknown (valid: {', '.join(_KINDS)})")
        self.kind = kind

    @property
    def needs_real_for_generator(self) -> bool:
        return self.kind == "ragan"

    def generator(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return _KINDS[self.kind][0](fake, real)

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return _KINDS[self.kind][1](real, fake)

    def score(self, out: Tensor) -> Tensor:
        """Mean D output as logged: a probability σ(logit) for the BCE kinds, the raw score for LSGAN and hinge."""
        return (out if self.kind in ("lsgan", "hinge") else torch.sigmoid(out)).mean()
