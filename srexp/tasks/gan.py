"""GANTask: adversarial SR training (SRGAN and kin) with manual optimisation of a generator and a discriminator,
optionally after a pixel-loss phase of the generator alone in the same run (Real-ESRNet → Real-ESRGAN)."""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import nn

from srexp.errors import ConfigError
from srexp.losses.adversarial import AdversarialLoss
from srexp.tasks.ema import ema_copy, ema_update
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

    ``pretrain_steps`` N > 0 makes it two phases in one run. Phase 1, the first N batches: G alone on
    ``pretrain_loss`` with its own ``pretrain_optimizer`` / ``pretrain_scheduler`` (one Lightning step per batch;
    D is neither run nor stepped). Phase 2, from Lightning step N on: the GAN training above with fresh optimisers,
    G starting from the phase-1 weight average when ``gan_from_ema`` (Real-ESRGAN starts from Real-ESRNet's
    ``params_ema``) — so ``trainer.max_steps = N + 2 × GAN iterations``. The phase is a function of
    ``global_step`` alone, so a resume anywhere continues where it stopped. ``ema_decay``: an average of G's
    weights (``net_ema``) that validates, as in SRTask. ``degradation``: training LR made on the device, as SRTask's.
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
        pretrain_steps: int = 0,
        pretrain_loss: nn.Module | None = None,
        pretrain_optimizer: Optimizer | None = None,
        pretrain_scheduler: Scheduler | None = None,
        gan_from_ema: bool = True,
        ema_decay: float | None = None,
        degradation: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None,
        metrics: Sequence[str] = (),
        metric_weights: Mapping | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # plain values only in hparams (checkpoints load with weights_only=True); modules travel in the config
        self.save_hyperparameters(ignore=["net", "discriminator", "loss", "adversarial", "optimizer", "d_optimizer",
                                          "scheduler", "d_scheduler", "pretrain_loss", "pretrain_optimizer",
                                          "pretrain_scheduler", "degradation", "metrics",
                                          "metric_weights"])
        if pretrain_steps < 0 or (pretrain_steps and (pretrain_loss is None or pretrain_optimizer is None)):
            raise ConfigError(f"task.pretrain_steps={pretrain_steps} (valid: 0, or N > 0 with task.pretrain_loss and "
                              f"task.pretrain_optimizer set; found loss {type(pretrain_loss).__name__}, optimizer "
                              f"{'set' if pretrain_optimizer else 'None'})")
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
        self.pretrain_loss = pretrain_loss if pretrain_steps else None
        self.pretrain_factories = (pretrain_optimizer, pretrain_scheduler)
        self.scheduler_phases: list[int] = []  # the phase each of lr_schedulers() steps in (configure_optimizers)
        self.degradation = degradation
        self.init_validation(scale, protocol, metrics, metric_weights)
        if generator_init:
            load_generator(self.net, generator_init)
            log.info("generator initialised from %s", generator_init)
        else:
            log.warning("task.generator_init is null: the generator starts from random weights (SRGAN starts from a "
                        "trained SRResNet: task.generator_init=…/checkpoints/last.ckpt)")
        self.net_ema = ema_copy(self.net) if ema_decay else None  # after generator_init: the average starts there

    @property
    def phase(self) -> int:
        """1 while the generator is pretrained alone (the first ``pretrain_steps`` Lightning steps), then 2 (GAN)."""
        return 1 if self.global_step < self.hparams.pretrain_steps else 2

    def on_fit_start(self) -> None:
        n, max_steps = self.hparams.pretrain_steps, self.trainer.max_steps
        if n and 0 <= max_steps <= n:
            log.warning("trainer.max_steps=%d <= task.pretrain_steps=%d: phase 2 (GAN) never starts (max_steps = "
                        "pretrain_steps + 2 × GAN iterations)", max_steps, n)

    def _update_ema(self) -> None:
        if self.net_ema is not None:
            ema_update(self.net_ema, self.net, self.hparams.ema_decay, self.global_step)

    def _step_schedulers(self, phase: int) -> None:
        for sched, p in zip(self._schedulers(), self.scheduler_phases):
            if p == phase:
                sched.step()

    def _pretrain_step(self, lr, hr, extra) -> None:
        opt = self.optimizers()[2]
        loss = self.pretrain_loss(self(lr, *extra), hr)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self._update_ema()
        self._step_schedulers(1)
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log("train/phase", 1.0)

    def _start_gan(self) -> None:
        """The hand-over at the first phase-2 batch: G and its average start phase 2 equal."""
        if self.net_ema is None:
            return
        if self.hparams.gan_from_ema:
            self.net.load_state_dict(self.net_ema.state_dict())
        else:
            self.net_ema.load_state_dict(self.net.state_dict())
        log.info("step %d: phase 2 (GAN) starts from the generator's %s", self.global_step,
                 "weight average" if self.hparams.gan_from_ema else "weights")

    def training_step(self, batch, batch_idx: int) -> None:
        lr, hr, *extra = batch  # extra: the net's further inputs, if any (DFDNet's component boxes)
        if self.phase == 1:
            return self._pretrain_step(lr, hr, extra)
        if self.hparams.pretrain_steps and self.global_step == self.hparams.pretrain_steps:
            self._start_gan()
        opt_g, opt_d = self.optimizers()[:2]
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
        self._update_ema()

        with self.toggled_optimizer(opt_d):
            d_real, d_fake = self.discriminator(hr), self.discriminator(sr.detach())
            d_loss = self.adversarial.discriminator(d_real, d_fake)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()

        self._step_schedulers(2)
        self.log_dict({"train/loss": g_loss.detach(), "train/d_loss": d_loss.detach()}, prog_bar=True)
        if self.hparams.pretrain_steps:
            self.log("train/phase", 2.0)
        self.log_dict({f"train/g_{k}": v.detach() for k, v in terms.items()})
        self.log_dict({"train/d_real": self.adversarial.score(d_real.detach()),
                       "train/d_fake": self.adversarial.score(d_fake.detach())})

    def _schedulers(self) -> list:
        s = self.lr_schedulers()
        return [] if s is None else s if isinstance(s, list) else [s]

    def configure_optimizers(self):
        """G's and D's optimisers (phase 2) at 0 and 1, then phase 1's for G when ``pretrain_steps``."""
        g_params = [p for p in self.net.parameters() if p.requires_grad]
        opts = [self.optimizer_factories[0](params=g_params),
                self.optimizer_factories[1](params=self.discriminator.parameters())]
        factories = list(zip(self.scheduler_factories, opts, (2, 2)))
        if self.hparams.pretrain_steps:
            opts.append(self.pretrain_factories[0](params=g_params))
            factories.append((self.pretrain_factories[1], opts[-1], 1))
        scheds = [f(optimizer=o) for f, o, _ in factories if f is not None]
        self.scheduler_phases = [phase for f, _, phase in factories if f is not None]
        return (opts, scheds) if scheds else opts
