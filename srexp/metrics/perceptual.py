"""Full-reference perceptual metrics, lower = more alike: LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness
of Deep Features as a Perceptual Metric", v0.1) and DISTS (Ding et al. 2020, "Image Quality Assessment: Unifying
Structure and Texture Similarity"). Written from the papers, checked against the official code (docs/metrics.md).

LPIPS: both images in [-1, 1], shifted and scaled per channel (the v0.1 "scaling layer"), through an ImageNet
backbone (AlexNet: the five ReLU outputs; VGG16: relu1_2 … relu5_3); each layer's features are unit-normalised over
channels, their squared difference is weighted per channel by the learned linear head (a 1×1 conv, no bias),
averaged over space and summed over layers.

DISTS: VGG16 to relu5_3 with every max-pool replaced by an L2 pooling (a 3×3 Hann window, stride 2, on the squared
features), applied to the ImageNet-normalised image; the image itself counts as a stage. Per stage and channel a
structure term (the SSIM-like ratio of the spatial means, c1 = 1e-6) and a texture term (of the variances and the
covariance, c2 = 1e-6), weighted by the learned α, β (normalised by Σα + Σβ); DISTS = 1 − the weighted sum.

Weights, all local (no torchvision, no import of the metric packages):

* backbones: torchvision's ImageNet files (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``): an explicit path,
  else the torch hub cache (``$TORCH_HOME/hub/checkpoints/``), else a download into it; offline, one line says
  which file to put where. The width is read from the file (64 in torchvision's), so small files in the same key
  layout serve the tests.
* LPIPS heads: ``weights/v0.1/{alex,vgg}.pth`` of the installed ``lpips`` wheel (BSD-2-Clause), found by path
  (``importlib.util.find_spec`` does not run the package, which imports torchvision), or an explicit path.
* DISTS α, β: ``weights.pt`` of the installed ``DISTS_pytorch`` wheel (MIT), likewise.

Images: ``(N, C, H, W)`` in [0, 1], C = 3 or 1 (a Y image is repeated to three channels); returns ``(N,)``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.errors import ConfigError, SrexpError
from srexp.nets.vgg import hub_cache_path as vgg_hub_cache_path, load_weights_file, torchvision_weights

TORCHVISION = {  # torchvision's IMAGENET1K_V1 weights
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # the v0.1 scaling layer, on images in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)
METRICS = ("lpips", "lpips_vgg", "dists")  # lpips = LPIPS with AlexNet, the paper's recommended forward metric
LABELS = {"lpips": "LPIPS", "lpips_vgg": "LPIPS-VGG", "dists": "DISTS"}
WEIGHT_KEYS = ("alexnet", "vgg16", "lpips_alex", "lpips_vgg", "dists")


def file_name(backbone: str) -> str:
    return TORCHVISION[backbone].rsplit("/", 1)[1]


def hub_cache_path(backbone: str) -> Path:
    return vgg_hub_cache_path(file_name(backbone))


def backbone_state_dict(backbone: str, path: str | Path | None = None, key: str = "metric_weights") -> dict:
    """torchvision's ``backbone`` state dict: from ``path``, else the hub cache, else downloaded into the cache."""
    name = file_name(backbone)
    return torchvision_weights(name, TORCHVISION[backbone], path, f"{backbone} weights", f"{key}.{backbone}",
                               f"{key}.{backbone}={{path}}: no such file (expected torchvision's {name})")


def package_file(package: str, relative: str, what: str, key: str, install: str) -> Path:
    """A data file shipped in an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / relative).is_file():
            return Path(folder) / relative
    found = f"{package} at {folders[0]} has no {relative}" if folders else f"{package} is not installed"
    raise SrexpError(f"{what}: {found}; `pip install --no-deps {install}` (only its {relative} is read), or set "
                     f"{key}=PATH")


# ------------------------------------------------------------------------------------------------------ backbones
def _conv(c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, pad)


def alexnet_layers(width: int) -> tuple[list[nn.Module], list[int]]:
    """torchvision's ``alexnet().features`` to the last ReLU, numbered as there (channels 64·(1, 3, 6, 4, 4) at
    width 64); the taps are the five ReLUs."""
    c = [width * m for m in (1, 3, 6, 4, 4)]
    layers = [_conv(3, c[0], 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2), _conv(c[0], c[1], 5, 1, 2), nn.ReLU(),
              nn.MaxPool2d(3, 2), _conv(c[1], c[2], 3), nn.ReLU(), _conv(c[2], c[3], 3), nn.ReLU(),
              _conv(c[3], c[4], 3), nn.ReLU()]
    return layers, [1, 4, 7, 9, 11]


class L2Pool(nn.Module):
    """DISTS' pooling: sqrt(Hann-weighted mean of x²), 3×3 window (a 5-tap Hann without its zero ends), stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("kernel", (g / g.sum()).float().expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x * x, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def vgg16_layers(width: int, l2pool: bool = False) -> tuple[list[nn.Module], list[int]]:
    """torchvision's ``vgg16().features`` to relu5_3 (index 29), numbered as there; the taps are relu1_2, relu2_2,
    relu3_3, relu4_3, relu5_3. ``l2pool``: DISTS' L2 pooling in place of each max-pool."""
    layers: list[nn.Module] = []
    c_in = 3
    for b, (n, k) in enumerate(((2, 1), (2, 2), (3, 4), (3, 8), (3, 8))):
        if b:
            layers.append(L2Pool(c_in) if l2pool else nn.MaxPool2d(2, 2))
        for _ in range(n):
            layers += [_conv(c_in, width * k, 3), nn.ReLU()]
            c_in = width * k
    return layers, [3, 8, 15, 22, 29]


class Backbone(nn.Module):
    """A frozen torchvision feature net (``features.N.*`` keys) returning its taps; its width read from the file."""

    def __init__(self, kind: str, state: dict[str, Tensor], source: str, l2pool: bool = False):
        super().__init__()
        first = state.get("features.0.weight")
        if first is None or first.dim() != 4:
            raise SrexpError(f"{kind} weights {source}: no features.0.weight (not torchvision's {file_name(kind)}?)")
        width = first.shape[0]  # 64 in torchvision's files
        layers, self.taps = alexnet_layers(width) if kind == "alexnet" else vgg16_layers(width, l2pool)
        self.features = nn.Sequential(*layers)
        self.channels = [layers[t - 1].out_channels for t in self.taps]
        mine = self.features.state_dict()
        for k, v in mine.items():
            theirs = state.get(f"features.{k}")
            if theirs is None or theirs.shape != v.shape:
                found = "missing" if theirs is None else f"shape {tuple(theirs.shape)}"
                raise SrexpError(f"{kind} weights {source}: features.{k} is {found}, expected {tuple(v.shape)} "
                                 f"(not torchvision's {file_name(kind)}?)")
        self.features.load_state_dict({k: state[f"features.{k}"] for k in mine})
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, m in enumerate(self.features):
            x = m(x)
            if i in self.taps:
                out.append(x)
        return out


def _rgb(x: Tensor) -> Tensor:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"perceptual metric: images must be (N, 1 or 3, H, W), got {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _pair(x: Tensor, y: Tensor, min_side: int, name: str, dtype) -> tuple[Tensor, Tensor]:
    if x.shape != y.shape:
        raise ConfigError(f"{name}: the images differ in shape ({tuple(x.shape)} vs {tuple(y.shape)})")
    if min(x.shape[-2:]) < min_side:
        raise ConfigError(f"{name}: images of {x.shape[-1]}×{x.shape[-2]} pixels are too small (at least "
                          f"{min_side}×{min_side})")
    return _rgb(x).to(dtype), _rgb(y).to(dtype)


# ----------------------------------------------------------------------------------------------------------- LPIPS
class LPIPS(nn.Module):
    """LPIPS v0.1 with the ``net`` backbone (``alex`` | ``vgg``). ``backbone``: torchvision's weights file (null:
    hub cache / download); ``heads``: the linear heads' file (null: the installed lpips wheel's)."""

    def __init__(self, net: str = "alex", backbone: str | None = None, heads: str | None = None,
                 key: str = "metric_weights"):
        super().__init__()
        if net not in ("alex", "vgg"):
            raise ConfigError(f"LPIPS net={net!r} is unknown (valid: alex, vgg)")
        kind = "alexnet" if net == "alex" else "vgg16"
        self.name = "lpips" if net == "alex" else "lpips_vgg"
        self.net = Backbone(kind, backbone_state_dict(kind, backbone, key), str(backbone or hub_cache_path(kind)))
        head_key = f"{key}.lpips_{net}"
        path = Path(heads).expanduser() if heads else package_file("lpips", f"weights/v0.1/{net}.pth",
                                                                    f"LPIPS {net} heads", head_key, "lpips")
        if not path.is_file():
            raise SrexpError(f"{head_key}={path}: no such file (expected lpips' weights/v0.1/{net}.pth)")
        state = load_weights_file(path, f"LPIPS {net} heads")
        self.heads = nn.ParameterList()
        for i, c in enumerate(self.net.channels):
            w = state.get(f"lin{i}.model.1.weight")
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                found = "missing" if w is None else f"shape {tuple(w.shape)}"
                raise SrexpError(f"LPIPS {net} heads {path}: lin{i}.model.1.weight is {found}, the {kind} backbone "
                                 f"needs (1, {c}, 1, 1) (heads and backbone of different nets?)")
            self.heads.append(nn.Parameter(w.reshape(1, c, 1, 1).float(), requires_grad=False))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.min_side = 23 if net == "alex" else 16  # AlexNet's last pool needs 3×3 after a stride-4 conv
        self.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) for f in self.net(x)]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = _pair(x, y, self.min_side, f"LPIPS-{self.name}", self.shift.dtype)
        total = 0
        for fx, fy, w in zip(self.features(x), self.features(y), self.heads):
            total = total + ((fx - fy).pow(2) * w).sum(dim=1).mean(dim=(1, 2))
        return total


# ----------------------------------------------------------------------------------------------------------- DISTS
class DISTS(nn.Module):
    """DISTS. ``backbone``: torchvision's VGG16 file (null: hub cache / download); ``weights``: the α, β file (null:
    the installed DISTS_pytorch wheel's ``weights.pt``)."""

    name = "dists"

    def __init__(self, backbone: str | None = None, weights: str | None = None, key: str = "metric_weights"):
        super().__init__()
        self.net = Backbone("vgg16", backbone_state_dict("vgg16", backbone, key),
                            str(backbone or hub_cache_path("vgg16")), l2pool=True)
        path = Path(weights).expanduser() if weights else package_file("DISTS_pytorch", "weights.pt", "DISTS α, β",
                                                                       f"{key}.dists", "DISTS_pytorch")
        if not path.is_file():
            raise SrexpError(f"{key}.dists={path}: no such file (expected DISTS_pytorch's weights.pt)")
        state = load_weights_file(path, "DISTS α, β")
        self.chans = [3, *self.net.channels]
        n = sum(self.chans)
        for k in ("alpha", "beta"):
            if k not in state or state[k].numel() != n:
                found = "missing" if k not in state else f"{state[k].numel()} values"
                raise SrexpError(f"DISTS α, β {path}: {k} is {found}, the VGG16 backbone needs {n} (channels "
                                 f"{'+'.join(map(str, self.chans))})")
        total = state["alpha"].sum() + state["beta"].sum()
        self.register_buffer("alpha", (state["alpha"].reshape(1, n) / total).float(), persistent=False)
        self.register_buffer("beta", (state["beta"].reshape(1, n) / total).float(), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def stages(self, x: Tensor) -> list[Tensor]:
        return [x, *self.net((x - self.mean) / self.std)]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = _pair(x, y, 16, "DISTS", self.mean.dtype)
        c1 = c2 = 1e-6
        structure, texture = [], []
        for fx, fy in zip(self.stages(x), self.stages(y)):
            mx, my = fx.mean(dim=(2, 3)), fy.mean(dim=(2, 3))
            vx = (fx - mx[..., None, None]).pow(2).mean(dim=(2, 3))
            vy = (fy - my[..., None, None]).pow(2).mean(dim=(2, 3))
            cov = (fx * fy).mean(dim=(2, 3)) - mx * my
            structure.append((2 * mx * my + c1) / (mx * mx + my * my + c1))
            texture.append((2 * cov + c2) / (vx + vy + c2))
        return 1 - (self.alpha * torch.cat(structure, 1) + self.beta * torch.cat(texture, 1)).sum(dim=1)


def build_metric(name: str, weights: Mapping | None = None, key: str = "metric_weights") -> nn.Module:
    """``name`` (one of :data:`METRICS`) with its weight files from ``weights`` (keys :data:`WEIGHT_KEYS`; a
    missing or null one: the default place). ``key``: the config key the weights came from, for the errors."""
    w = dict(weights or {})
    unknown = sorted(set(w) - set(WEIGHT_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown} (valid: {', '.join(WEIGHT_KEYS)})")
    if name == "lpips":
        return LPIPS("alex", w.get("alexnet"), w.get("lpips_alex"), key)
    if name == "lpips_vgg":
        return LPIPS("vgg", w.get("vgg16"), w.get("lpips_vgg"), key)
    if name == "dists":
        return DISTS(w.get("vgg16"), w.get("dists"), key)
    raise ConfigError(f"metric {name!r} is unknown (valid: {', '.join(METRICS)})")


class PerceptualMetrics(nn.Module):
    """The extra metrics of a validation, by name. The metric nets are held outside ``_modules`` (no parameters, no
    state_dict entries: checkpoints stay as they were and load either way, no ``train()``), yet ``.to()`` and
    casts reach them. Called as ``(sr, hr)`` on images in [0, 1], it returns ``{name: per-image float64}``."""

    def __init__(self, names=(), weights: Mapping | None = None, key: str = "metric_weights"):
        super().__init__()
        names = list(dict.fromkeys(names or ()))
        bad = [n for n in names if n not in METRICS]
        if bad:
            raise ConfigError(f"metrics={names}: unknown {bad} (valid: {', '.join(METRICS)})")
        with torch.random.fork_rng(devices=[]):  # building the nets draws their (then overwritten) initial weights:
            self.__dict__["nets"] = {n: build_metric(n, weights, key) for n in names}  # not from the run's stream

    @property
    def names(self) -> list[str]:
        return list(self.nets)

    def __bool__(self) -> bool:
        return bool(self.nets)

    def _apply(self, fn, recurse: bool = True):
        for net in self.nets.values():
            net._apply(fn, recurse)
            net.float()  # moves reach the nets, casts do not: a bf16 run still measures in float32
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def forward(self, sr: Tensor, hr: Tensor) -> dict[str, Tensor]:
        with torch.autocast(sr.device.type, enabled=False):  # mixed-precision validation: the metric in float32
            return {n: net(sr, hr).double() for n, net in self.nets.items()}
