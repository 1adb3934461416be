"""The one VGG19 feature extractor: the perceptual and style losses and DFDNet's encoder all tap it. Built here (no
torchvision) and loaded from torchvision's state dict.

The layer list is VGG19's ``features``: five blocks of 3×3 convs (2, 2, 4, 4, 4 of them; 64 → 512 channels), each
conv followed by a ReLU, each block by a 2×2 max-pool — 37 layers, numbered as torchvision numbers them, so the keys
``features.0.weight`` … ``features.34.bias`` of ``vgg19-dcbb9e9d.pth`` load as they are. Layers are named
``conv{block}_{k}`` / ``relu{block}_{k}`` / ``pool{block}``: SRGAN's VGG5,4 is ``relu5_4`` ("the feature map
obtained by the 4th convolution (after activation) before the 5th max-pooling layer"); ESRGAN takes ``conv5_4``,
before the activation, which keeps more signal. :class:`VGG19Features` runs the layers up to the deepest of its
``taps`` and returns the features after each; ``width`` scales every block (VGG19 is 64: 64 → 512 channels), for
small random encoders in tests.

Weights, in this order: an explicit ``weights=PATH``; the torch hub cache
(``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``); a download into that cache. Offline with neither file, the
error says which file to put where.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from srexp.errors import ConfigError, SrexpError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 weights
VGG19_FILE = VGG19_URL.rsplit("/", 1)[1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCKS = ((2, 1), (2, 2), (4, 4), (4, 8), (4, 8))  # (convs, channels in units of width) per block


def vgg19_layers(width: int = 64) -> list[tuple[str, nn.Module]]:
    """VGG19's ``features`` as (name, module), in torchvision's order; ``width``: the first block's channels."""
    layers: list[tuple[str, nn.Module]] = []
    c_in = 3
    for b, (n, k) in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            layers += [(f"conv{b}_{i}", nn.Conv2d(c_in, width * k, 3, padding=1)), (f"relu{b}_{i}", nn.ReLU())]
            c_in = width * k
        layers.append((f"pool{b}", nn.MaxPool2d(2, 2)))
    return layers


# Built from the modules (not from _BLOCKS) as it always was: importing this module draws the convs' default init from
# the global RNG, and runs that import it after seeding (Hydra's lazy imports) keep the random streams they had.
LAYER_NAMES = [name for name, _ in vgg19_layers()]


def layer_channels(layer: str, width: int = 64) -> int:
    """Channels of the features after ``layer`` (``relu3_4`` → 256 at width 64)."""
    _check_layers([layer])
    return width * _BLOCKS[int(layer[4]) - 1][1]  # conv{b}_{k}, relu{b}_{k}, pool{b}


def _check_layers(layers: Sequence[str]) -> None:
    unknown = [layer for layer in layers if layer not in LAYER_NAMES]
    if unknown or not layers:
        raise ConfigError(f"VGG19 layer(s) {list(layers)}: unknown {unknown} (valid: {', '.join(LAYER_NAMES)})")


def hub_cache_path(file: str = VGG19_FILE) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / file


def load_weights_file(path: Path, what: str) -> dict[str, Tensor]:
    """A state dict from ``path`` with ``weights_only=True``; anything else is one line naming ``what`` and the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # map_location: files saved from a GPU
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad weights file for the user
        raise SrexpError(f"{what} {path}: not loadable ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, Mapping):
        raise SrexpError(f"{what} {path}: not a state dict (found {type(state).__name__})")
    return dict(state)


def torchvision_weights(file: str, url: str, path: str | Path | None, what: str, setting: str,
                        missing: str) -> dict[str, Tensor]:
    """torchvision's weights ``file``: from ``path``, else the torch hub cache, else downloaded from ``url`` into it.
    Used by the VGG loss and the perceptual metrics. ``what`` names the weights in errors, ``setting`` is the config
    key that takes a path, ``missing`` the one line for a ``path`` that is not a file (``{path}`` is filled in)."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise SrexpError(missing.format(path=p))
        return load_weights_file(p, what)
    cached = hub_cache_path(file)
    if cached.is_file():
        return load_weights_file(cached, what)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - offline (URLError), proxy, hash mismatch: the same advice
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise SrexpError(f"{what} not found and the download failed ({reason}): put torchvision's {file} ({url}) "
                         f"at {cached}, or set {setting}=PATH") from None


def vgg19_state_dict(weights: str | Path | None = None) -> dict[str, Tensor]:
    """torchvision's VGG19 state dict: from ``weights``, else the hub cache, else downloaded into the cache."""
    return torchvision_weights(VGG19_FILE, VGG19_URL, weights, "VGG19 weights", "task.loss.perceptual.weights",
                               f"VGG19 weights {{path}}: no such file (give torchvision's {VGG19_FILE} to the "
                               f"perceptual loss's weights=, e.g. task.loss.perceptual.weights=PATH)")


class VGG19Features(nn.Module):
    """VGG19 ``features`` up to the deepest of ``taps``, returning what each tap gives: a tensor for one layer name,
    a list (in the order of ``taps``) for a sequence of them.

    Takes RGB in [0, 1] (one channel is repeated to three) and normalises with the ImageNet mean/std the weights
    were trained with (``normalize``). ``pretrained``: torchvision's weights (:func:`vgg19_state_dict`: ``weights``,
    else the hub cache, else a download; ``width`` 64 only). Otherwise He-initialised, so random features keep their
    scale through 16 layers (PyTorch's default shrinks them): from a generator seeded by ``seed``, or from the global
    RNG when ``seed`` is None (for tests: such features mean little). ``frozen``: no gradients and always in eval
    mode (a fixed extractor); DFDNet's fine-tuned encoder passes False. ``identity`` names the weights (DFDNet's
    dictionaries record it). Every VGG19 conv is built, also past the last tap: their default init draws from the
    global RNG, and the draws that follow stay the same whatever the taps.
    """

    def __init__(self, taps: str | Sequence[str] = "relu5_4", pretrained: bool = True, weights: str | None = None,
                 normalize: bool = True, width: int = 64, seed: int | None = None, frozen: bool = True) -> None:
        super().__init__()
        self.single = isinstance(taps, str)
        self.taps = [taps] if self.single else list(taps)
        _check_layers(self.taps)
        if pretrained and width != 64:
            raise ConfigError(f"VGG19 width={width} with pretrained=true: torchvision's weights are width 64 (valid: "
                              f"width=64, or pretrained=false)")
        self.layer = max(self.taps, key=LAYER_NAMES.index)  # the deepest: the net ends there
        self.tap_index = [LAYER_NAMES.index(t) for t in self.taps]
        self.channels = [layer_channels(t, width) for t in self.taps]
        self.features = nn.Sequential(*[m for _, m in vgg19_layers(width)[: LAYER_NAMES.index(self.layer) + 1]])
        self.normalize, self.frozen = normalize, frozen
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            self.load_torchvision(vgg19_state_dict(weights), source=str(weights or hub_cache_path()))
            self.identity = f"vgg19[width=64]:{Path(weights).name if weights else VGG19_FILE}"
        else:
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                    nn.init.zeros_(m.bias)
            self.identity = f"vgg19[width={width}]:random(seed={seed})"
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def load_torchvision(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Loads the ``features.N.*`` entries this truncated net has; the rest (deeper layers, classifier) is unused."""
        mine = self.features.state_dict()
        for key, value in mine.items():
            theirs = state.get(f"features.{key}")
            if theirs is None:
                raise SrexpError(f"VGG19 weights {source}: no features.{key} (not torchvision's VGG19 state dict?)")
            if theirs.shape != value.shape:
                raise SrexpError(f"VGG19 weights {source}: features.{key} has shape {tuple(theirs.shape)}, "
                                 f"VGG19 needs {tuple(value.shape)} (not torchvision's VGG19 state dict?)")
        self.features.load_state_dict({k: state[f"features.{k}"] for k in mine})

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(mode and not self.frozen)  # a fixed extractor never leaves eval mode

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize:
            x = (x - self.mean) / self.std
        tapped = {}
        for i, m in enumerate(self.features):
            x = m(x)
            if i in self.tap_index:
                tapped[i] = x
        return tapped[self.tap_index[0]] if self.single else [tapped[i] for i in self.tap_index]
