"""EDSR's official weights (sanghyun-son/EDSR-PyTorch, ``src/model/edsr.py``) onto ``arch=edsr`` /
``arch=edsr_baseline``.

Keys: ``sub_mean``/``add_mean`` (the DIV2K mean shift, a fixed 1×1 conv), ``head.0`` (conv_first),
``body.<i>.body.{0,2}`` (the residual blocks' convs), ``body.<n>`` (the conv after them), ``tail.0.<2k>`` (one
conv to 4·C or 9·C channels per ×2 / ×3 pixel shuffle), ``tail.1`` (conv_last).

EDSR-PyTorch feeds its nets 0–255 images (``--rgb_range 255``); srexp's nets take 0–1. Convs, ReLU, the residual
adds and the pixel shuffle are all positively homogeneous once the biases scale with the input, so the same net on
0–1 images is the one with every bias divided by the range: ``f₂₅₅(255·x) = 255·f₁(x)``. The range is read from the
mean shift's bias (−range·mean). ``res_scale`` is not in the weights: EDSR uses 0.1 for its 256-wide model and 1 for
the 64-wide baseline, so it is inferred from the width (and said so).
"""
from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from srexp.nets.foreign import Converted, ForeignCheckpointError, Layout, StateDict

BLOCK = re.compile(r"body\.(\d+)\.body\.0\.weight$")
UPCONV = re.compile(r"tail\.0\.(\d+)\.weight$")


def detect(state: StateDict) -> bool:
    return all(k in state for k in ("head.0.weight", "body.0.body.0.weight", "tail.0.0.weight", "tail.1.weight"))


def _range_and_mean(state: StateDict) -> tuple[float, list[float] | None]:
    """(rgb_range, mean or None) from the mean shift; without one, EDSR-PyTorch's default range 255 and no shift."""
    if "sub_mean.bias" not in state:
        return 255.0, None
    w, b = state["sub_mean.weight"].double(), state["sub_mean.bias"].double()
    if w.shape != (3, 3, 1, 1) or not torch.allclose(w.flatten(1), torch.eye(3, dtype=w.dtype), atol=1e-6):
        raise ForeignCheckpointError(f"sub_mean.weight: expected the identity 1×1 conv (rgb_std 1), found shape "
                                     f"{tuple(w.shape)} values {w.flatten().tolist()[:4]}…")
    if "add_mean.bias" in state and not torch.allclose(state["add_mean.bias"].double(), -b, rtol=1e-5, atol=1e-4):
        raise ForeignCheckpointError(f"add_mean.bias: expected {(-b).tolist()} (minus sub_mean.bias), found "
                                     f"{state['add_mean.bias'].tolist()}")
    rgb_range = 255.0 if b.abs().max() > 1.5 else 1.0  # −range·mean with mean in [0, 1]: 255 ⇒ |b| ≫ 1
    return rgb_range, (-b / rgb_range).tolist()


def convert(state: StateDict) -> Converted:
    blocks = sorted(int(m.group(1)) for k in state if (m := BLOCK.match(k)))
    n = len(blocks)
    if blocks != list(range(n)) or f"body.{n}.weight" not in state:
        raise ForeignCheckpointError(f"body: expected blocks body.0 … body.{n - 1} then the conv body.{n}, found "
                                     f"blocks {blocks[:3]}…{blocks[-1:]} and body.{n}.weight "
                                     f"{'present' if f'body.{n}.weight' in state else 'missing'}")
    feat, channels = state["head.0.weight"].shape[:2]
    steps = []
    for i in sorted(int(m.group(1)) for k in state if (m := UPCONV.match(k))):
        out = state[f"tail.0.{i}.weight"].shape[0]
        r = math.isqrt(out // feat)
        if r * r * feat != out:
            raise ForeignCheckpointError(f"tail.0.{i}.weight: expected r²·{feat} output channels, found {out}")
        steps.append(r)
    scale = math.prod(steps)
    if steps != ([2] * len(steps) if len(steps) > 1 else steps) or not set(steps) <= {2, 3}:
        raise ForeignCheckpointError(f"tail.0: expected ×2 steps or one ×3 (EDSR's upsampler), found {steps}")
    if state["tail.1.weight"].shape[0] != channels:
        raise ForeignCheckpointError(f"tail.1.weight: expected {channels} output channels (as head.0), found "
                                     f"{state['tail.1.weight'].shape[0]}")
    rgb_range, mean = _range_and_mean(state)
    res_scale = 0.1 if feat == 256 else 1.0

    out: dict[str, Tensor] = {}
    used = {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"}

    def take(src: str, dst: str) -> None:
        for suffix in (".weight", ".bias"):
            if src + suffix in state:
                t = state[src + suffix].float()
                out[dst + suffix] = t / rgb_range if suffix == ".bias" else t.clone()
                used.add(src + suffix)

    take("head.0", "conv_first")
    for i in range(n):
        take(f"body.{i}.body.0", f"body.blocks.{i}.body.0")
        take(f"body.{i}.body.2", f"body.blocks.{i}.body.2")
    take(f"body.{n}", f"body.blocks.{n}")
    for j in range(len(steps)):
        take(f"tail.0.{2 * j}", f"upsample.{j}.conv")
    take("tail.1", "conv_last")
    extra = [k for k in state if k not in used]
    if extra:
        raise ForeignCheckpointError(f"expected only EDSR's keys, found {len(extra)} more, e.g. {extra[:3]}")
    arch = "edsr" if feat == 256 else "edsr_baseline"  # the wide model or the baseline, by width as res_scale
    overrides = [f"arch={arch}", f"scale={scale}", f"channels={channels}", f"net.num_feat={feat}",
                 f"net.body.num_block={n}", f"net.body.res_scale={res_scale}",
                 f"net.rgb_mean={mean}" if mean is not None else "net.rgb_mean=null"]
    notes = [f"res_scale {res_scale} inferred from the width {feat} (EDSR: 0.1 at 256 channels, else 1; the weights "
             f"do not store it)", f"biases divided by rgb_range {rgb_range:g}"]
    return Converted(overrides, out, notes=notes)


LAYOUTS = [Layout("edsr", "edsr_baseline", detect, convert,
                  "EDSR-PyTorch: sub_mean, head.0, body.<i>.body.{0,2}, tail.0.<k>, tail.1, add_mean")]
