"""Community ("foreign") checkpoints: official weight layouts mapped onto srexp's own nets.

One module per family (``edsr``, ``rcan``, ``esrgan``, ``compact``, ``swinir``, …) defines ``LAYOUTS``, a list of
:class:`Layout`. A layout recognises its state dict by its keys (``detect``) and converts it (``convert``) into the
srexp config overrides that build the same network and the srexp state dict that gives the same output.

Loading never runs pickled code (``torch.load(weights_only=True)`` or safetensors); see :func:`load_foreign`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from torch import Tensor

from srexp.errors import ConfigError

StateDict = Mapping[str, Tensor]


class ForeignCheckpointError(ConfigError):
    """A foreign file that cannot be mapped: one line naming the file, what was expected and what was found."""


@dataclass
class Converted:
    """The srexp side of a foreign checkpoint.

    ``overrides``: Hydra overrides of ``train.yaml`` that build the same network, e.g.
    ``["arch=rrdb", "scale=4", "channels=3", "net.body.num_block=23"]`` (all hyper-parameters inferred from the
    tensors' names and shapes); ``state``: the state dict that srexp's net loads with ``strict=True``;
    ``protocol``: the evaluation protocol the family's papers report (e.g. ``y_uint8``), or None for the default.
    """

    overrides: list[str]
    state: dict[str, Tensor]
    protocol: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """One official weight layout. ``detect(state)``: cheap, keys only; ``convert(state)``: raises
    :class:`ForeignCheckpointError` (one line: what was expected, what was found) when names match but shapes do
    not."""

    name: str                                   # e.g. "esrgan-old", "realesrgan-compact"
    arch: str                                   # the srexp preset it maps onto, e.g. "rrdb"
    detect: Callable[[StateDict], bool]
    convert: Callable[[StateDict], Converted]
    description: str = ""


__all__ = ["Converted", "ForeignCheckpointError", "Layout", "StateDict"]
