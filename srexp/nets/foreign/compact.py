"""Real-ESRGAN's SRVGGNetCompact (xinntao/Real-ESRGAN, ``realesrgan/archs/srvgg_arch.py``: realesr-animevideov3,
realesr-general-x4v3) onto ``arch=compact``.

Keys: ``body.<k>`` in one list — conv_first at 0, a per-channel PReLU after every conv at the odd indices, the
``num_conv`` body convs at 2, 4, …, and the last conv (to ``C·r²`` channels, before the ×r pixel shuffle) at the
highest index. The nearest-upsampled input is added to the output (srexp: ``net.residual: nearest``). Only the PReLU
variant (every released model) is recognised: with ReLU or LeakyReLU the activations leave no weights, so the file
cannot tell which one it was.
"""
from __future__ import annotations

import math

from torch import Tensor

from srexp.nets.foreign import Converted, ForeignCheckpointError, Layout, StateDict


def _indices(state: StateDict) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()})


def detect(state: StateDict) -> bool:
    w, a = state.get("body.0.weight"), state.get("body.1.weight")
    return w is not None and a is not None and w.ndim == 4 and a.ndim == 1 and "body.0.body.0.weight" not in state


def convert(state: StateDict) -> Converted:
    idx = _indices(state)
    last = idx[-1]
    if idx != list(range(last + 1)) or last % 2 or last < 4:
        raise ForeignCheckpointError(f"body: expected body.0 … body.<2n+2> (convs even, PReLUs odd, n >= 1), found "
                                     f"body.{idx[0]} … body.{last}" + (" with gaps" if idx != list(range(last + 1)) else ""))
    feat, channels = state["body.0.weight"].shape[:2]
    for k in range(1, last, 2):
        if tuple(state[f"body.{k}.weight"].shape) != (feat,):
            raise ForeignCheckpointError(f"body.{k}.weight: expected a per-channel PReLU of shape ({feat},), found "
                                         f"{tuple(state[f'body.{k}.weight'].shape)}")
    out = state[f"body.{last}.weight"].shape[0]
    r = math.isqrt(out // channels)
    if r * r * channels != out:
        raise ForeignCheckpointError(f"body.{last}.weight: expected {channels}·r² output channels (r the scale), "
                                     f"found {out}")
    num_conv = (last - 2) // 2
    names = {0: "conv_first.0", 1: "conv_first.1", last: "upsample.0.conv"}
    names.update({2 + 2 * i: f"body.{i}.0" for i in range(num_conv)})
    names.update({3 + 2 * i: f"body.{i}.1" for i in range(num_conv)})
    converted: dict[str, Tensor] = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] != "body" or not parts[1].isdigit() or len(parts) != 3:
            raise ForeignCheckpointError(f"expected only body.<k>.weight/bias keys, found {k}")
        converted[f"{names[int(parts[1])]}.{parts[2]}"] = v.float().clone()
    overrides = ["arch=compact", f"scale={r}", f"channels={channels}", f"net.num_feat={feat}",
                 f"net.body.num_block={num_conv}"]
    return Converted(overrides, converted)


LAYOUTS = [Layout("realesrgan-compact", "compact", detect, convert,
                  "Real-ESRGAN SRVGGNetCompact: body.<k> convs and PReLUs, pixel shuffle, + nearest-upsampled input")]
