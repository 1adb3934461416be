"""Learning-rate schedules over a training budget of steps, wall time, or both (``conf/task/scheduler/``).

:class:`BudgetLR` makes "best PSNR in N minutes" a real mode: its progress is
``p = max(step / max_steps, elapsed / max_time)`` in [0, 1], so the decay (cosine, linear, step at fractions of the
run, …) completes exactly when the first of the two budgets runs out — the same run bounded by
``trainer.max_time`` on a slow CPU or a fast GPU ends at the low learning rate either way, instead of being cut
off while the rate is still high (what a step-based cosine does under a time limit).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from srexp.errors import ConfigError

SHAPES = ("cosine", "linear", "step", "constant")


def parse_duration(value) -> float | None:
    """Lightning's ``trainer.max_time`` forms → seconds: ``"DD:HH:MM:SS"``, ``{days:, hours:, minutes:, seconds:}``,
    a ``timedelta``, or a number of seconds; ``None`` stays ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return timedelta(**{k: float(v) for k, v in value.items()}).total_seconds()
    parts = str(value).split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        d, h, m, s = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"trainer.max_time={value!r} is not a duration (valid: \"DD:HH:MM:SS\", e.g. "
                          f"\"00:00:10:00\", or {{minutes: 10}})") from None
    return timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()


class BudgetLR(LambdaLR):
    """lr = base_lr · factor(p), p = max(step / max_steps, elapsed / max_time), clipped to 1.

    ``shape``: ``cosine`` (from 1 to ``final_ratio``), ``linear`` (same ends), ``step`` (× ``gamma`` at each
    fraction in ``milestones``: VDSR's "÷10 every 20 of 80 epochs" is ``milestones: [0.25, 0.5, 0.75]``),
    ``constant``. ``warmup``: a fraction of the budget with a linear ramp from 0 first. Elapsed time runs from the
    scheduler's creation (the start of fit) and is kept in the checkpoint, so a resumed run continues its clock.
    Step at ``interval: step``.
    """

    def __init__(self, optimizer: Optimizer, max_steps: int | None = None, max_time=None, shape: str = "cosine",
                 warmup: float = 0.0, final_ratio: float = 0.01, milestones: Sequence[float] = (0.5, 0.75),
                 gamma: float = 0.1, clock: Callable[[], float] = time.monotonic, last_epoch: int = -1):
        self.max_steps = int(max_steps) if max_steps is not None and int(max_steps) > 0 else None
        self.max_time = parse_duration(max_time)
        if self.max_steps is None and self.max_time is None:
            raise ConfigError("task/scheduler=budget needs a budget: set trainer.max_steps > 0 or trainer.max_time "
                              "(valid: e.g. trainer.max_time=00:00:10:00)")
        if shape not in SHAPES:
            raise ConfigError(f"task.scheduler.shape={shape} is unknown (valid: {', '.join(SHAPES)})")
        if not 0 <= warmup < 1:
            raise ConfigError(f"task.scheduler.warmup={warmup} is not a fraction of the budget (valid: 0 <= x < 1)")
        self.shape, self.warmup, self.final_ratio, self.gamma = shape, float(warmup), float(final_ratio), float(gamma)
        self.milestones = tuple(sorted(float(m) for m in milestones))  # plain floats: checkpoints load weights_only
        self.clock = clock
        self.t0 = clock()
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def progress(self, step: int) -> float:
        p = step / self.max_steps if self.max_steps else 0.0
        if self.max_time:
            p = max(p, self.elapsed() / self.max_time)
        return min(max(p, 0.0), 1.0)

    def factor(self, step: int) -> float:
        p = self.progress(step)
        if p < self.warmup:
            return p / self.warmup
        q = (p - self.warmup) / (1 - self.warmup)
        if self.shape == "cosine":
            return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * q))
        if self.shape == "linear":
            return 1 - (1 - self.final_ratio) * q
        if self.shape == "step":
            return self.gamma ** sum(q >= m for m in self.milestones)
        return 1.0

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas", "clock", "t0")}
        state["elapsed"] = self.elapsed()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        elapsed = float(state.pop("elapsed", 0.0))
        state.pop("lr_lambdas", None)
        self.__dict__.update(state)
        self.t0 = self.clock() - elapsed
