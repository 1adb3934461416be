"""DFDNet (Li et al., ECCV 2020, "Blind Face Restoration via Deep Multi-scale Component Dictionaries").

**Contract** (not the SR nets' one, see ``srexp/nets/__init__.py``): ``forward(lq, boxes=None)``

* ``lq``: ``(N, 3, H, W)`` floats in [0, 1], the degraded *aligned* face already resized to the restored size
  (the paper's input is the degraded face upsampled to 512×512); ``H`` and ``W`` multiples of 16.
* ``boxes``: ``(N, 4, 4)`` pixel coordinates ``x1, y1, x2, y2`` (continuous: pixel ``i`` spans ``[i, i+1)``) of the
  components in :data:`PARTS` order (left eye, right eye, nose, mouth; left/right as seen in the image). None:
  :func:`canonical_boxes`, the components of an FFHQ-aligned face.
* returns the restored face ``(N, 3, H, W)`` (not clamped).

Pipeline: a frozen VGG19-layout encoder gives features at relu2_2, relu3_4, relu4_4, relu5_4 (strides 2–16). At
each scale and for each component, the box is RoI-aligned to the dictionary atoms' fixed size; every atom is
re-normalised to the input component's per-channel mean/std (**component AdaIN**: the *atoms* take the *input's*
statistics, as in the released code — illumination and skin tone come from the input, structure from the atom);
the atom with the largest **inner product** with the input component is selected (the released code's
``conv2d(input, atoms)`` + argmax; ``distance="l2"`` selects the nearest in Euclidean distance instead — after
component AdaIN every atom has the same energy up to ε, so both pick the same atom); a **confidence** map, a
conv–LeakyReLU–conv on the residual ``atom − input``, weights the atom, and ``confidence ⊙ atom`` is added back into
the box (inverse RoI: ``grid_sample`` from the box back onto the feature grid, zero outside it). The updated
features condition the decoder through **SFT** (``x·(1+γ) + β``, γ and β convs of the condition) from the coarsest
scale to the finest, each step ×2, after a multi-scale dilated block on the deepest features.

Departures from the paper, by choice: the output is added to the input (a residual; the paper's net ends in tanh
and predicts the image), SFT uses ``1+γ`` so a fresh net starts near the identity, no spectral norm in the
generator, and the encoder may be any width (``encoder.width``; the paper's is VGG19, width 64, ImageNet weights).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.errors import ConfigError
from srexp.nets.vgg import VGG19Features, layer_channels

log = logging.getLogger(__name__)

PARTS = ("left_eye", "right_eye", "nose", "mouth")
PART_SIZES = (80, 80, 50, 110)  # atom side in pixels of a 512 face (the released code's part_sizes)
# The components of an FFHQ-aligned 512 face (x1, y1, x2, y2), squares of PART_SIZES: centred on facexlib's 5-point
# FFHQ template (eyes (193, 240) and (319, 240), nose tip (257, 314), mouth corners (201, 371) and (313, 371)), eye
# boxes raised to take in the brows as DFDNet's landmark boxes do; checked by eye on shared/data/faces.
CANONICAL_BOXES = ((152, 188, 232, 268), (280, 188, 360, 268), (231, 280, 281, 330), (202, 318, 312, 428))
LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_4")
STRIDES = (2, 4, 8, 16)
DISTANCES = ("inner_product", "l2")
EPS = 1e-5  # inside the sqrt of the variance (the released code's)


def canonical_boxes(n: int, h: int, w: int, device=None, dtype=torch.float32) -> Tensor:
    """(n, 4, 4) component boxes of an aligned ``h × w`` face: :data:`CANONICAL_BOXES` scaled from 512."""
    b = torch.tensor(CANONICAL_BOXES, dtype=dtype, device=device) * torch.tensor([w, h, w, h], dtype=dtype,
                                                                                device=device) / 512
    return b.expand(n, -1, -1).clone()


def atom_side(part: int, layer: int, size: int) -> int:
    """Side of the atoms of component ``part`` at ``LAYERS[layer]`` for ``size``-px faces (at 512: eyes 40, 20, 10,
    5; nose 25, 12, 6, 3; mouth 55, 27, 13, 6 — the released code's); at least 2 so a std exists."""
    return max(2, int(PART_SIZES[part] * size / 512) // STRIDES[layer])


def dictionary_shapes(size: int, width: int, num_atoms: int) -> dict[str, tuple[int, int, int, int]]:
    """``{"<part>.<layer>": (K, C, h, w)}``: what a dictionary for this net config holds."""
    return {f"{part}.{layer}": (num_atoms, layer_channels(layer, width), *(atom_side(pi, li, size),) * 2)
            for li, layer in enumerate(LAYERS) for pi, part in enumerate(PARTS)}


# --------------------------------------------------------------------------------------------- RoI ops, AdaIN, match
def roi_align(feat: Tensor, boxes: Tensor, size: tuple[int, int], spatial_scale: float, sampling_ratio: int = 2
              ) -> Tensor:
    """RoIAlign (``aligned=True``) with ``grid_sample``: box ``n`` of ``boxes`` ``(N, 4)`` (image pixels) on feature map
    ``n`` → ``(N, C, h, w)``, each bin the mean of ``sampling_ratio²`` bilinear samples at regular points."""
    n, _, hf, wf = feat.shape
    h, w = size
    r = sampling_ratio
    b = boxes.to(feat.dtype) * spatial_scale
    t_y = (torch.arange(h * r, device=feat.device, dtype=feat.dtype) + 0.5) / (h * r)
    t_x = (torch.arange(w * r, device=feat.device, dtype=feat.dtype) + 0.5) / (w * r)
    ys = b[:, 1:2] + t_y[None] * (b[:, 3:4] - b[:, 1:2])  # (N, h·r) feature-pixel coordinates
    xs = b[:, 0:1] + t_x[None] * (b[:, 2:3] - b[:, 0:1])
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :] * 2 / wf - 1, ys[:, :, None] * 2 / hf - 1), -1)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, r) if r > 1 else out


def paste(content: Tensor, boxes: Tensor, shape: tuple[int, int], spatial_scale: float) -> Tensor:
    """Inverse of :func:`roi_align`: ``content`` ``(N, C, h, w)`` resampled (bilinear) into box ``n`` of an
    ``(N, C, *shape)`` zero map; feature pixels whose centre lies outside the box stay 0. A box is widened to at
    least one feature pixel, so a small component on a coarse map still lands somewhere."""
    hf, wf = shape
    b = boxes.to(content.dtype) * spatial_scale
    centre, half = (b[:, :2] + b[:, 2:]) / 2, ((b[:, 2:] - b[:, :2]) / 2).clamp_min(0.5)
    b = torch.cat([centre - half, centre + half], 1)
    cy = torch.arange(hf, device=content.device, dtype=content.dtype) + 0.5
    cx = torch.arange(wf, device=content.device, dtype=content.dtype) + 0.5
    v = (cy[None] - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]).clamp_min(1e-6)  # (N, hf) in [0, 1) inside the box
    u = (cx[None] - b[:, 0:1]) / (b[:, 2:3] - b[:, 0:1]).clamp_min(1e-6)
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :] * 2 - 1, v[:, :, None] * 2 - 1), -1)
    inside = ((u >= 0) & (u < 1))[:, None, None, :] & ((v >= 0) & (v < 1))[:, None, :, None]
    out = F.grid_sample(content, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out * inside.to(out.dtype)


def feature_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std over the spatial positions (population std, ε inside the sqrt), keepdim."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return mean, (x.var(dim=(-2, -1), keepdim=True, unbiased=False) + EPS).sqrt()


def component_adain(atoms: Tensor, target: Tensor) -> Tensor:
    """Every atom ``(K, C, h, w)`` re-normalised to each target's ``(N, C, h, w)`` per-channel mean/std: ``(N, K, C, h,
    w)``. (Memory grows as N·K; selection uses :func:`match_scores`, which never builds this.)"""
    a_mean, a_std = feature_stats(atoms)
    t_mean, t_std = feature_stats(target)
    return ((atoms - a_mean) / a_std)[None] * t_std[:, None] + t_mean[:, None]


def match_scores(x: Tensor, atoms: Tensor, distance: str = "inner_product") -> Tensor:
    """``(N, K)`` scores of every AdaIN'd atom against ``x`` ``(N, C, h, w)``, higher = closer: the inner product
    ``⟨x, AdaIN(atom_k, x)⟩``, or ``-‖x - AdaIN(atom_k, x)‖²`` for ``l2``. Computed from per-channel sums
    (``O(N·K·C)`` memory), equal to :func:`component_adain` followed by the full sums."""
    p = x.shape[-2] * x.shape[-1]
    x_mean, x_std = (s.flatten(-3) for s in feature_stats(x))  # (N, C)
    a_mean, a_std = (s.flatten(-3) for s in feature_stats(atoms))  # (K, C)
    gain = x_std[:, None] / a_std[None]  # (N, K, C)
    cross = torch.einsum("nchw,kchw->nkc", x, atoms)  # Σ_p x·atom per channel
    # ⟨x_c, g(a_c − μ_a) + μ_x⟩ = g(Σ x a − P μ_x μ_a) + P μ_x²
    inner = (gain * (cross - p * x_mean[:, None] * a_mean[None])).sum(-1) + p * x_mean.pow(2).sum(-1, keepdim=True)
    if distance == "inner_product":
        return inner
    a_var = a_std.pow(2) - EPS  # population variance
    atom_energy = p * (gain.pow(2) * a_var[None] + x_mean.pow(2)[:, None]).sum(-1)  # ‖AdaIN(atom)‖²
    return -(x.pow(2).sum(dim=(1, 2, 3))[:, None] - 2 * inner + atom_energy)


def select_atoms(x: Tensor, atoms: Tensor, distance: str = "inner_product") -> tuple[Tensor, Tensor]:
    """(index ``(N,)`` of the best atom for each ``x``, that atom AdaIN'd to ``x`` ``(N, C, h, w)``)."""
    index = match_scores(x, atoms, distance).argmax(dim=1)
    chosen = atoms[index]
    a_mean, a_std = feature_stats(chosen)
    x_mean, x_std = feature_stats(x)
    return index, (chosen - a_mean) / a_std * x_std + x_mean


# ------------------------------------------------------------------------------------------------------------ encoder
def vgg_encoder(width: int = 64, pretrained: bool = True, weights: str | None = None, seed: int = 0,
                frozen: bool = True) -> VGG19Features:
    """DFDNet's encoder (``net.encoder``): :class:`~srexp.nets.vgg.VGG19Features` tapped at :data:`LAYERS`, returning
    their features (strides 2–16). At ``width=64`` torchvision's ``vgg19-dcbb9e9d.pth`` loads (``pretrained``);
    otherwise He-initialised from ``seed`` alone, so ``srexp-face build-dictionary`` and the net get the same encoder
    without a weights file (tests; such features mean little). Its state-dict keys are torchvision's
    ``features.{0…34}.*``: a fine-tuned encoder is saved as ``encoder.features.N.*``, as it always was."""
    return VGG19Features(LAYERS, pretrained=pretrained, weights=weights, width=width, seed=seed, frozen=frozen)


# ------------------------------------------------------------------------------------------------------------- blocks
def _conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class DictionaryTransfer(nn.Module):
    """One scale of DFDNet's dictionary feature transfer: RoIAlign each component, select its AdaIN'd atom, add
    ``confidence(atom − input) ⊙ atom`` back into the box. The atoms are non-persistent buffers (they come from the
    dictionary file, not from checkpoints)."""

    def __init__(self, channels: int, atoms: Mapping[str, Tensor], stride: int, distance: str):
        super().__init__()
        self.stride, self.distance = stride, distance
        for part in PARTS:
            self.register_buffer(f"atoms_{part}", atoms[part].float().contiguous(), persistent=False)
        self.confidence = nn.ModuleDict({part: nn.Sequential(_conv(channels, channels), _lrelu(),
                                                             _conv(channels, channels)) for part in PARTS})
        self.last_index: Tensor | None = None  # (N, parts): the atoms the latest forward selected

    def forward(self, feat: Tensor, boxes: Tensor) -> Tensor:
        delta, chosen = torch.zeros_like(feat), []
        for p, part in enumerate(PARTS):
            atoms = getattr(self, f"atoms_{part}")
            x = roi_align(feat, boxes[:, p], atoms.shape[-2:], 1 / self.stride)
            index, atom = select_atoms(x, atoms, self.distance)
            chosen.append(index)
            delta = delta + paste(self.confidence[part](atom - x) * atom, boxes[:, p], feat.shape[-2:],
                                  1 / self.stride)
        self.last_index = torch.stack(chosen, 1).detach()
        return feat + delta


class MSDilateBlock(nn.Module):
    """Multi-scale dilated residual block on the deepest features: four conv–LeakyReLU–conv branches (dilations 4,
    3, 2, 1), concatenated, fused by a conv, added to the input (the released code's MSDilateBlock)."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (4, 3, 2, 1)):
        super().__init__()
        c = channels
        self.branches = nn.ModuleList(nn.Sequential(_conv(c, c, d), _lrelu(), _conv(c, c, d)) for d in dilations)
        self.fuse = _conv(channels * len(dilations), channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fuse(torch.cat([b(x) for b in self.branches], 1))


class SFTUpBlock(nn.Module):
    """conv → LeakyReLU → spatial feature transform ``x·(1+γ(cond)) + β(cond)`` → ×2 bilinear → conv → LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, c_cond: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(c_in, c_out), _lrelu())
        self.gamma = nn.Sequential(_conv(c_cond, c_out), _lrelu(), _conv(c_out, c_out))
        self.beta = nn.Sequential(_conv(c_cond, c_out), _lrelu(), _conv(c_out, c_out))
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _conv(c_out, c_out),
                                _lrelu())

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.conv(x)
        return self.up(x * (1 + self.gamma(cond)) + self.beta(cond))


class _ResBlock(nn.Sequential):
    def __init__(self, c: int):
        super().__init__(_conv(c, c), _lrelu(), _conv(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


# ---------------------------------------------------------------------------------------------------------------- net
class DFDNet(nn.Module):
    """DFDNet: see the module docstring for the contract.

    ``dictionary``: a file from ``srexp-face build-dictionary`` (or, in code, its ``{"<part>.<layer>": tensor}``);
    its shapes must be :func:`dictionary_shapes` ``(size, encoder.width, num_atoms)`` and its encoder this one.
    ``size``: the face side the dictionary was built at (atom sizes scale with it). ``num_feat``: decoder width
    (the paper's 64: 512 → 256 → 128 → 64 channels from coarse to fine). ``encoder``: :func:`vgg_encoder` arguments
    (width, pretrained, weights, seed) plus ``trainable`` (default false: frozen, as in the paper, and kept out of
    checkpoints; true: fine-tuned and saved, while the dictionary stays in the initial encoder's feature space).
    ``distance``: atom selection, ``inner_product`` (the released code's) or ``l2``.
    """

    in_channels = 3

    def __init__(self, dictionary: str | Path | Mapping[str, Tensor] | None, size: int = 512, num_atoms: int = 512,
                 num_feat: int = 64, encoder: Mapping | None = None, distance: str = "inner_product"):
        super().__init__()
        from srexp.nets.face.dictionary import check_dictionary, load_dictionary  # file I/O lives there

        if distance not in DISTANCES:
            raise ConfigError(f"net.distance={distance} is unknown (valid: {', '.join(DISTANCES)})")
        if size % 16:
            raise ConfigError(f"net.size={size} is not a multiple of 16 (the encoder's deepest stride)")
        enc = dict(encoder or {})
        trainable = bool(enc.pop("trainable", False))
        vgg = vgg_encoder(**enc, frozen=not trainable)
        if trainable:
            self.encoder = vgg
        else:  # frozen and out of state_dict()/parameters(); moved with the net by _apply
            self.__dict__["encoder"] = vgg
        self.trainable_encoder, self.size = trainable, size
        shapes = dictionary_shapes(size, enc.get("width", 64), num_atoms)
        if dictionary is None:
            raise ConfigError("net.dictionary is null: build one with `srexp-face build-dictionary images=[DIR] "
                              "output=dict.safetensors` and pass net.dictionary=PATH")
        if isinstance(dictionary, Mapping):
            atoms = check_dictionary(dict(dictionary), shapes, "net.dictionary=<in memory>")
            self.dictionary_info: dict = {}
        else:
            atoms, self.dictionary_info = load_dictionary(dictionary, shapes, vgg.identity)
            p = self.dictionary_info
            log.info("DFDNet dictionary %s: K=%d, %s faces (sha1 %s), encoder %s", dictionary, num_atoms,
                     p.get("images", "?"), p.get("images_sha1", "?"), vgg.identity)
        self.transfer = nn.ModuleList(
            DictionaryTransfer(c, {part: atoms[f"{part}.{layer}"] for part in PARTS}, stride, distance)
            for c, layer, stride in zip(vgg.channels, LAYERS, STRIDES))
        dec = [num_feat * 8, num_feat * 4, num_feat * 2, num_feat]
        self.bottom = MSDilateBlock(vgg.channels[-1])
        self.up = nn.ModuleList(SFTUpBlock(c_in, c_out, c_cond) for c_in, c_out, c_cond
                                in zip([vgg.channels[-1], *dec[:-1]], dec, reversed(vgg.channels)))
        self.conv_last = nn.Sequential(_conv(num_feat, num_feat), _lrelu(), _ResBlock(num_feat), _ResBlock(num_feat),
                                       _conv(num_feat, 3))
        nn.init.zeros_(self.conv_last[-1].weight)  # a fresh net returns its input: training starts at the input's PSNR
        nn.init.zeros_(self.conv_last[-1].bias)

    def _apply(self, fn, recurse: bool = True):
        if not self.trainable_encoder:
            self.encoder._apply(fn, recurse)
        return super()._apply(fn, recurse)

    @property
    def last_index(self) -> Tensor | None:
        """(N, scales, parts): the atoms the latest forward selected."""
        idx = [t.last_index for t in self.transfer]
        return None if any(i is None for i in idx) else torch.stack(idx, 1)

    def forward(self, lq: Tensor, boxes: Tensor | None = None) -> Tensor:
        n, _, h, w = lq.shape
        if h % 16 or w % 16:
            raise ValueError(f"DFDNet: input {h}×{w} is not a multiple of 16 (resize the aligned face to net.size)")
        if boxes is None:
            boxes = canonical_boxes(n, h, w, lq.device, lq.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable_encoder):
            feats = self.encoder(lq)
        cond = [t(f, boxes) for t, f in zip(self.transfer, feats)]
        x = self.bottom(feats[-1])
        for up, c in zip(self.up, reversed(cond)):
            x = up(x, c)
        return lq + self.conv_last(x)

