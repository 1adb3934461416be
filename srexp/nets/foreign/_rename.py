"""Shared plumbing of the layout converters: rename by rules, check shapes, refuse in one line."""
from __future__ import annotations

import re
from typing import Callable, Sequence

from torch import Tensor

from srexp.nets.foreign import ForeignCheckpointError, StateDict

Rule = tuple[str, Callable[[re.Match], str]]  # (regex over the whole foreign key, srexp key from the match)


def rename(layout: str, state: StateDict, rules: Sequence[Rule]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every foreign key through the first rule that matches it: (the renamed state, srexp key → foreign key). A key
    no rule knows is refused (a variant this layout does not cover, e.g. ESRGAN+'s extra 1×1 convs), never dropped."""
    out: dict[str, Tensor] = {}
    names: dict[str, str] = {}
    for key, value in state.items():
        for pattern, target in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out[target(m)] = value
                names[target(m)] = key
                break
        else:
            raise ForeignCheckpointError(f"{layout}: unexpected key {key!r} ({len(state)} keys; not a tensor of the "
                                         f"official layout)")
    return out, names


def shape_of(layout: str, state: dict[str, Tensor], key: str, shape: tuple[int, ...], what: str = "") -> Tensor:
    """``state[key]``, refused in one line when absent or of another shape."""
    if key not in state:
        raise ForeignCheckpointError(f"{layout}: missing {what or key!r}")
    t = state[key]
    if tuple(t.shape) != tuple(shape):
        raise ForeignCheckpointError(f"{layout}: {what or key!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t


def conv_shapes(out_ch: int, in_ch: int, k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (out_ch, in_ch, k, k), (out_ch,)


def check_convs(layout: str, state: dict[str, Tensor], convs: dict[str, tuple[int, int, int]],
                names: dict[str, str]) -> None:
    """Each srexp conv ``prefix`` (``prefix.weight``/``.bias``) has the ``(out, in, k)`` shape of ``convs``; the
    error names the foreign key (``names``: srexp key → foreign key). Any srexp key left over is refused too."""
    expected = set()
    for prefix, (o, i, k) in convs.items():
        for suffix, shape in zip(("weight", "bias"), conv_shapes(o, i, k)):
            key = f"{prefix}.{suffix}"
            shape_of(layout, state, key, shape, names.get(key, key))
            expected.add(key)
    extra = sorted(set(state) - expected)
    if extra:
        raise ForeignCheckpointError(f"{layout}: unexpected tensor {names.get(extra[0], extra[0])!r} (not part of "
                                     f"the network its other tensors describe)")


def count(layout: str, indices: set[int], what: str) -> int:
    """``len(indices)`` where the indices are exactly ``0 … n-1``."""
    n = len(indices)
    if n == 0 or indices != set(range(n)):
        raise ForeignCheckpointError(f"{layout}: {what} are numbered {sorted(indices)[:8]}, expected 0 … n-1")
    return n
