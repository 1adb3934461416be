"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021) of an HR batch into its LR, on the batch's device,
from the stages of :mod:`srexp.ops.degrade` (noise, resize, JPEG) and :mod:`srexp.ops.kernels` (blur, sinc).

Per round: blur (a random kernel per sample; the second round's with probability ``blur_prob``) → resize (up / down /
keep by ``resize_prob``, the factor in ``resize_range``, area / bilinear / bicubic; the first round relative to the HR,
the second to the LR size) → Gaussian noise (σ ∈ ``noise_range``, 0–255 scale) with probability
``gaussian_noise_prob``, else Poisson noise (scale ∈ ``poisson_scale_range``), gray with probability
``gray_noise_prob`` per sample → JPEG (quality ∈ ``jpeg_range``, per sample). The second round ends instead with
[resize to the LR size + the final sinc filter (per sample, probability ``final_sinc_prob``)] and JPEG, in random
order (even odds); then 8-bit rounding. As the reference (``realesrgan/models/realesrnet_model.py``), the resize,
the noise kind, the second blur's gate and the final order are one draw per batch; kernels, noise strengths, gray
gates and JPEG qualities are drawn per sample. Left out: the USM-sharpened target (``gt_usm``) and the training pair
pool (``queue_size``), which are the training loop's, not the degradation's.

Seeding: the per-batch choices come from a CPU generator (no device sync), everything per sample from a generator
on the batch's device; :meth:`HighOrderDegradation.__call__` seeds both from (seed, step, DDP rank), so a resumed run
(on as many devices) degrades its batches as the uninterrupted one did.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from srexp.errors import ConfigError
from srexp.ops.degrade import RESIZE_MODES, add_noise, jpeg, noise_field, poisson_noise, resize
from srexp.ops.kernels import KINDS, filter2d, random_kernels, random_sinc

# Real-ESRGAN's defaults: options/train_realesrnet_x4plus.yml of xinntao/Real-ESRGAN (the same in
# train_realesrgan_x4plus.yml); kernel sizes 7–21 and the sinc cutoffs from realesrgan/data/realesrgan_dataset.py.
FIRST = {
    "blur_prob": 1.0,  # the reference always blurs in the first round
    "kernel_size": (7, 21),
    "kernel_prob": dict(zip(KINDS, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03))),
    "sinc_prob": 0.1,
    "blur_sigma": (0.2, 3.0),
    "betag_range": (0.5, 4.0),
    "betap_range": (1.0, 2.0),
    "resize_prob": (0.2, 0.7, 0.1),  # up, down, keep
    "resize_range": (0.15, 1.5),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30.0, 95.0),
}
SECOND = {**FIRST, "blur_prob": 0.8, "blur_sigma": (0.2, 1.5), "resize_prob": (0.3, 0.4, 0.3),
          "resize_range": (0.3, 1.2), "noise_range": (1.0, 25.0), "poisson_scale_range": (0.05, 2.5)}
FINAL_SINC_PROB = 0.8
FINAL_SINC_CUTOFF = (math.pi / 3, math.pi)

_PROBS = ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob")
_RANGES = {"blur_sigma": (0, math.inf, False), "betag_range": (0, math.inf, False),
           "betap_range": (0, math.inf, False), "resize_range": (0, math.inf, False),
           "noise_range": (0, math.inf, True), "poisson_scale_range": (0, math.inf, True),
           "jpeg_range": (1, 100, True)}  # (low, high, low itself allowed)


def _check_round(cfg: Mapping | None, defaults: dict, key: str) -> dict:
    """The round's settings over ``defaults``, each checked: a bad one is one ConfigError line naming its key."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - defaults.keys()
    if unknown:
        raise ConfigError(f"{key} has unknown keys {sorted(unknown)} (valid: {', '.join(defaults)})")
    r = {**defaults, **cfg}
    for name in _PROBS:
        p = r[name] = float(r[name])
        if not 0 <= p <= 1:
            raise ConfigError(f"{key}.{name}={p:g} is not a probability (0–1)")
    for name, (low, high, closed) in _RANGES.items():
        v = r[name]
        try:
            lo, hi = r[name] = tuple(float(e) for e in v) if not isinstance(v, str) else ()
        except (TypeError, ValueError):
            lo = hi = None
        if lo is None or len(r[name]) != 2:
            raise ConfigError(f"{key}.{name}={v}: needs [low, high], two numbers")
        if not ((low <= lo) if closed else (low < lo)) or not lo <= hi <= high:
            raise ConfigError(f"{key}.{name}=[{lo:g}, {hi:g}]: needs {low} {'≤' if closed else '<'} low ≤ high ≤ "
                              f"{high}")
    lo, hi = r["resize_range"]
    if not lo <= 1 <= hi:
        raise ConfigError(f"{key}.resize_range=[{lo:g}, {hi:g}]: needs low ≤ 1 ≤ high (down to low, up to high)")
    sizes = r["kernel_size"]
    if (not isinstance(sizes, Sequence) or len(sizes) != 2 or any(int(s) != s or s < 1 or s % 2 == 0 for s in sizes)
            or sizes[0] > sizes[1]):
        raise ConfigError(f"{key}.kernel_size={list(sizes) if isinstance(sizes, Sequence) else sizes}: needs "
                          f"[low, high], odd, 1 ≤ low ≤ high")
    r["kernel_size"] = (int(sizes[0]), int(sizes[1]))
    probs = r["resize_prob"]
    if (not isinstance(probs, Sequence) or len(probs) != 3 or any(not 0 <= float(p) <= 1 for p in probs)
            or abs(sum(map(float, probs)) - 1) > 1e-6):
        raise ConfigError(f"{key}.resize_prob={list(probs) if isinstance(probs, Sequence) else probs}: needs three "
                          f"probabilities (up, down, keep) that sum to 1")
    r["resize_prob"] = tuple(float(p) for p in probs)
    kinds = r["kernel_prob"]
    if not isinstance(kinds, Mapping) or set(kinds) - set(KINDS):
        raise ConfigError(f"{key}.kernel_prob: needs a mapping of kernel kinds ({', '.join(KINDS)}) to probabilities"
                          f", found {dict(kinds) if isinstance(kinds, Mapping) else kinds}")
    if any(not 0 <= float(p) <= 1 for p in kinds.values()) or abs(sum(map(float, kinds.values())) - 1) > 1e-6:
        raise ConfigError(f"{key}.kernel_prob={dict(kinds)}: needs probabilities that sum to 1")
    r["kernel_prob"] = {k: float(p) for k, p in kinds.items()}
    return r


class HighOrderDegradation:
    """Real-ESRGAN's second-order degradation (the module docstring), a ``task.degradation`` for ``SRTask``:
    ``__call__(hr, scale, step)`` → the LR ``(N, C, H // scale, W // scale)``, 8-bit values, on ``hr``'s device.

    ``first`` / ``second``: the rounds' settings over :data:`FIRST` / :data:`SECOND` (Real-ESRGAN's defaults).
    JPEG needs RGB: a 1-channel batch (Y nets) skips it, the rest applies."""

    def __init__(self, first: Mapping | None = None, second: Mapping | None = None,
                 final_sinc_prob: float = FINAL_SINC_PROB, seed: int = 0, key: str = "task.degradation"):
        self.rounds = (_check_round(first, FIRST, f"{key}.first"), _check_round(second, SECOND, f"{key}.second"))
        self.final_sinc_prob = float(final_sinc_prob)
        if not 0 <= self.final_sinc_prob <= 1:
            raise ConfigError(f"{key}.final_sinc_prob={self.final_sinc_prob:g} is not a probability (0–1)")
        self.seed = int(seed)

    def generators(self, step: int, device, rank: int = 0) -> tuple[torch.Generator, torch.Generator]:
        """(per-sample generator on ``device``, per-batch CPU generator) of training step ``step`` on DDP rank
        ``rank`` (each rank degrades its share of the batch with its own draws, as each GPU's loader does in the
        reference)."""
        dev, host = (int(s) for s in np.random.SeedSequence([self.seed, step, rank]).generate_state(2))
        return torch.Generator(device=device).manual_seed(dev), torch.Generator().manual_seed(host)

    def __call__(self, hr: Tensor, scale: int, step: int) -> Tensor:
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return self.apply(hr, *self.generators(step, hr.device, rank), scale=scale)

    def apply(self, x: Tensor, generator: torch.Generator, host: torch.Generator | None = None,
              scale: int = 4) -> Tensor:
        """``x`` ``(N, C, H, W)`` floats in [0, 1] → its LR ``(N, C, H // scale, W // scale)``; per-sample draws from
        ``generator`` (on ``x``'s device), per-batch ones from ``host`` (a CPU generator; default: ``generator``
        itself when it is on the CPU)."""
        if host is None:
            if generator.device.type != "cpu":
                raise ValueError("HighOrderDegradation.apply: pass a CPU generator as host= for a device generator")
            host = generator
        n, c, h, w = x.shape
        lr_size = (h // scale, w // scale)

        def per_sample(k: int) -> Tensor:
            return torch.rand(k, n, generator=generator, device=x.device, dtype=x.dtype)

        def between(u: Tensor, lo_hi: Sequence[float]) -> Tensor:
            return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])

        def compress(x: Tensor, r: dict) -> Tensor:
            q = torch.round(between(per_sample(1)[0], r["jpeg_range"]))
            return jpeg(x.clamp(0, 1), q) if c == 3 else x

        for i, r in enumerate(self.rounds):
            gate, updown, factor, mode, kind = torch.rand(5, generator=host, dtype=torch.float64).tolist()
            kernels = random_kernels(n, generator, r["kernel_prob"], r["blur_sigma"], r["betag_range"],
                                     r["betap_range"], r["sinc_prob"], r["kernel_size"], x.device, x.dtype)
            if gate < r["blur_prob"]:
                x = filter2d(x, kernels)
            up, down, _ = r["resize_prob"]
            lo, hi = r["resize_range"]
            f = 1 + factor * (hi - 1) if updown < up else lo + factor * (1 - lo) if updown < up + down else 1.0
            base = (h, w) if i == 0 else lr_size
            x = resize(x, (int(base[0] * f), int(base[1] * f)), RESIZE_MODES[min(int(mode * 3), 2)])
            u = per_sample(2)
            gray = u[1] < r["gray_noise_prob"]
            if kind < r["gaussian_noise_prob"]:
                x = add_noise(x, noise_field(x, generator, gray), between(u[0], r["noise_range"]))
            else:
                x = poisson_noise(x, between(u[0], r["poisson_scale_range"]), generator, gray)
            if i == 0:
                x = compress(x, r)
        order, mode = torch.rand(2, generator=host, dtype=torch.float64).tolist()
        sinc = random_sinc(n, generator, self.final_sinc_prob, self.rounds[1]["kernel_size"], FINAL_SINC_CUTOFF,
                           x.device, x.dtype)
        mode = RESIZE_MODES[min(int(mode * 3), 2)]
        if order < 0.5:  # [resize back + sinc] then JPEG, or the other way round (Real-ESRGAN: even odds)
            x = compress(filter2d(resize(x, lr_size, mode), sinc), self.rounds[1])
        else:
            x = filter2d(resize(compress(x, self.rounds[1]), lr_size, mode), sinc)
        return torch.round(x.clamp(0, 1) * 255) / 255
