"""GANTask: adversarial SR training (SRGAN and kin) with manual optimisation of a generator and a discriminator."""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import nn

from srexp.errors import ConfigError
from srexp.losses.adversarial import AdversarialLoss
from srexp.tasks.sr import SRValidation
from srexp.training.checkpoint import load_generator

log = logging.getLogger(__name__)

Optimizer = Callable[..., torch.optim.Optimizer]
Scheduler = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class GANTask(SRValidation, L.LightningModule):
    """Trains the generator ``net`` against ``discriminator``: each step runs G once, updates G on
    ``Σ loss_weights[k]·loss[k](sr, hr) + loss_weights.adversarial·adversarial(D(sr))``, then D on ``hr`` vs
    ``sr.detach()``. Validation is SRTask's (the same protocol metrics, bicubic alongside).

    Lightning counts every optimiser step, so ``trainer.max_steps`` is twice the number of batches (iterations).
    Schedulers are stepped once per batch: their milestones count iterations, as the papers do.
    """

    def __init__(
        self,
        net: nn.Module,
        discriminator: nn.Module,
        loss: dict[str, nn.Module | None],
        adversarial: AdversarialLoss,
        loss_weights: dict[str, float],
        optimizer: Optimizer,
        d_optimizer: Optimizer,
        scheduler: Scheduler | None = None,
        d_scheduler: Scheduler | None = None,
        generator_init: str | None = None,
        scale: int = 4,
        protocol: str = "rgb_uint8",
        metrics: Sequence[str] = (),
        metric_weights: Mapping | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # plain values only in hparams (checkpoints load with weights_only=True); modules travel in the config
        self.save_hyperparameters(ignore=["net", "discriminator", "loss", "adversarial", "optimizer", "d_optimizer",
                                          "scheduler", "d_scheduler", "metrics", "metric_weights"])
        terms = {k: m for k, m in dict(loss or {}).items() if m is not None}
        weights = {k: float(w) for k, w in dict(loss_weights).items()}
        unweighted = sorted({*terms, "adversarial"} - weights.keys())
        if unweighted:
            raise ConfigError(f"task.loss_weights has no weight for {', '.join(unweighted)} "
                              f"(valid: a weight for every task.loss term and for adversarial)")
        self.net, self.discriminator, self.adversarial = net, discriminator, adversarial
        self.loss = nn.ModuleDict({k: m for k, m in terms.items() if weights[k] != 0})  # weight 0: not computed
        self.loss_weights = weights
        self.optimizer_factories = (optimizer, d_optimizer)
        self.scheduler_factories = (scheduler, d_scheduler)
        self.init_validation(scale, protocol, metrics, metric_weights)
        if generator_init:
            load_generator(self.net, generator_init)
            log.info("generator initialised from %s", generator_init)
        else:
            log.warning("task.generator_init is null: the generator starts from random weights (SRGAN starts from a "
                        "trained SRResNet: task.generator_init=…/checkpoints/last.ckpt)")

    def training_step(self, batch, batch_idx: int) -> None:
        lr, hr, *extra = batch  # extra: the net's further inputs, if any (DFDNet's component boxes)
        opt_g, opt_d = self.optimizers()
        sr = self(lr, *extra)
        w = self.loss_weights

        with self.toggled_optimizer(opt_g):  # D's parameters get no gradient from G's loss
            terms = {k: m(sr, hr) for k, m in self.loss.items()}
            d_fake = self.discriminator(sr)
            d_real = self.discriminator(hr).detach() if self.adversarial.needs_real_for_generator else None
            terms["adversarial"] = self.adversarial.generator(d_fake, d_real)
            g_loss = sum(w[k] * v for k, v in terms.items())
            opt_g.zero_grad()
            self.manual_backward(g_loss)
            opt_g.step()

        with self.toggled_optimizer(opt_d):
            d_real, d_fake = self.discriminator(hr), self.discriminator(sr.detach())
            d_loss = self.adversarial.discriminator(d_real, d_fake)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()

        for sched in self._schedulers():
            sched.step()
        self.log_dict({"train/loss": g_loss.detach(), "train/d_loss": d_loss.detach()}, prog_bar=True)
        self.log_dict({f"train/g_{k}": v.detach() for k, v in terms.items()})
        self.log_dict({"train/d_real": self.adversarial.score(d_real.detach()),
                       "train/d_fake": self.adversarial.score(d_fake.detach())})

    def _schedulers(self) -> list:
        s = self.lr_schedulers()
        return [] if s is None else s if isinstance(s, list) else [s]

    def configure_optimizers(self):
        g_params = [p for p in self.net.parameters() if p.requires_grad]
        opts = [self.optimizer_factories[0](params=g_params),
                self.optimizer_factories[1](params=self.discriminator.parameters())]
        scheds = [f(optimizer=o) for f, o in zip(self.scheduler_factories, opts) if f is not None]
        return (opts, scheds) if scheds else opts
