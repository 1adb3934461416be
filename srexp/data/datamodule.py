"""Aligned LR/HR patch pairs for training, whole images for validation/test.

Each image is decoded and converted once, modcropped, and its LR made once by the protocol's exact degradation
of the whole image (``srexp.metrics.Protocol.degrade``); both are kept in memory as uint8 where exact. Training
samples are random aligned crops (LR crop at (i, j) ↔ HR crop at (i·s, j·s)) with flips/rot90, drawn in worker
processes. Sample ``k`` is a pure function of (seed, k), so a run is reproducible whatever the worker count.
uint8 batches become float on the device (``SRTask.on_after_batch_transfer``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from srexp.data.cache import lookup, pair_key, store
from srexp.data.benchmarks import DataNotFoundError, premade_lr_file, resolve
from srexp.data.images import ImageError, load_image, to_channels
from srexp.errors import ConfigError
from srexp.metrics import get_protocol, images_hash
from srexp.ops.resize import imresize

LR_SOURCES = ("make", "files", "auto")

log = logging.getLogger(__name__)


def load_item(item: str) -> Tensor:
    """A resolved item (file path or ``skimage:NAME``) → uint8 (C,H,W)."""
    if item.startswith("skimage:"):
        name = item.split(":", 1)[1]
        folder = resources.files("skimage") / "data"
        matches = [p for p in folder.iterdir() if p.name.rsplit(".", 1)[0] == name]
        if not matches:
            raise DataNotFoundError(f"{item}: scikit-image has no bundled image named {name!r}")
        return load_image(str(matches[0]))
    return load_image(item)


@dataclass
class Pair:
    name: str
    lr: Tensor  # (C,h,w) uint8, or float32 in [0,1] where the protocol makes LR in float
    hr: Tensor  # (C,H,W) uint8 (or float32 Y) — the training target in the network's channels
    ref_y: Tensor  # (1,H,W) float64 0–255: the metric reference


def make_pair(name: str, img: Tensor, scale: int, channels: int, protocol: str, lr_img: Tensor | None = None) -> Pair:
    """HR image → aligned pair. ``lr_img``: a shipped bicubic LR image (uint8, e.g. DIV2K's) used instead of
    making the LR by the protocol's degradation."""
    proto = get_protocol(protocol)
    img = to_channels(img, 3) if channels == 3 else img
    try:
        lr, ref_y = proto.degrade(img, scale, channels) if lr_img is None else proto.premade(img, lr_img, scale,
                                                                                            channels)
    except ValueError as e:  # a shipped LR of the wrong size
        raise DataNotFoundError(str(e)) from None
    h, w = ref_y.shape[-2:]
    lr, hr = proto.training_pair(img[..., :h, :w], lr, ref_y, channels)
    return Pair(name, lr.contiguous(), hr.contiguous(), ref_y)


def load_pairs(specs: Sequence[str], root, scale: int, channels: int, protocol: str, min_hr: int = 0,
               lr_source: str = "make", cache_dir: str | None = None, keep_ref: bool = True,
               downscale: Sequence[float] = ()) -> list[Pair]:
    """``lr_source``: ``make`` the LR by the protocol's degradation; ``files``: use the bicubic LR shipped beside
    each HR image (DIV2K's ``DIV2K_train_LR_bicubic/X2/0001x2.png``; an error where one is missing); ``auto``:
    shipped files where present, made otherwise. ``cache_dir``: keep the decoded pairs there (memory-mapped;
    the next run skips decoding and resizing). ``keep_ref=False`` drops the float64 metric reference, which
    training does not use (8 bytes per HR pixel: 18 GB for DIV2K). ``downscale``: each image also enters as
    copies shrunk by these factors (MATLAB bicubic of the uint8 image, then the protocol's degradation): FSRCNN's
    "augmented 91-image" set is ``[0.9, 0.8, 0.7, 0.6]``; copies smaller than ``min_hr`` are left out."""
    if lr_source not in LR_SOURCES:
        raise DataNotFoundError(f"data.lr_source={lr_source} is unknown (valid: {', '.join(LR_SOURCES)})")
    items = [it for spec in specs for it in resolve(spec, root)]
    pairs, skipped = [], []
    fields = ("lr", "hr", "ref_y") if keep_ref else ("lr", "hr")
    factors = [1.0, *(float(f) for f in downscale)]
    if any(not 0 < f <= 1 for f in factors):
        raise ConfigError(f"data.downscale={list(downscale)} must hold factors in (0, 1] (valid: e.g. [0.9, 0.8])")
    too_small = 0
    decoded: tuple[str | None, Tensor | None] = (None, None)  # the item last decoded: its shrunk copies reuse it
    for it, factor in ((it, f) for it in items for f in factors):
        name = Path(it).stem if "/" in it else it.split(":")[-1]
        name = name if factor == 1 else f"{name}@{factor:g}"
        key = pair_key(it, scale=scale, channels=channels, protocol=protocol, lr_source=lr_source,
                       keep_ref=keep_ref, **({"downscale": factor} if factor != 1 else {})) if cache_dir else None
        hit = lookup(cache_dir, key, fields) if key else None
        if hit is not None:
            pairs.append(Pair(name, hit["lr"], hit["hr"], hit.get("ref_y", _NO_REF)))
            continue
        if decoded[0] != it:
            try:
                decoded = (it, load_item(it))
            except ImageError as e:
                decoded = (it, None)
                skipped.append(str(e))
        if decoded[1] is None:
            continue
        img = decoded[1] if factor == 1 else imresize(decoded[1], scale=factor)
        if min(img.shape[-2:]) < max(min_hr, scale):
            if factor == 1:
                skipped.append(f"{it}: {img.shape[-1]}×{img.shape[-2]} is smaller than the HR patch {min_hr}")
            else:
                too_small += 1
            continue
        lr_file = premade_lr_file(it, scale) if lr_source != "make" and not it.startswith("skimage:") and factor == 1 \
            else None
        if lr_source == "files" and lr_file is None and factor == 1:
            raise DataNotFoundError(f"data.lr_source=files: no shipped bicubic LR for {it} at ×{scale} (expected "
                                    f"<name>_LR_bicubic/X{scale}/<stem>x{scale}.png beside <name>_HR/, or "
                                    f"LR_bicubic/X{scale}/ beside HR/; valid: data.lr_source=make|auto)")
        try:
            lr_img = load_item(str(lr_file)) if lr_file is not None else None
            p = make_pair(name, img, scale, channels, protocol, lr_img)
            if not keep_ref:
                p.ref_y = _NO_REF
            if key:
                saved = store(cache_dir, key, {f: getattr(p, f) for f in fields})
                p.lr, p.hr, p.ref_y = saved["lr"], saved["hr"], saved.get("ref_y", p.ref_y)
            pairs.append(p)
        except (ImageError, DataNotFoundError) as e:
            skipped.append(f"{lr_file}: {e}")
    if skipped:
        log.warning("skipped %d of %d images: %s", len(skipped), len(items), "; ".join(skipped[:5]))
    if too_small:
        log.info("data.downscale: %d shrunk copies smaller than the HR patch %d left out", too_small, min_hr)
    if not pairs:
        raise DataNotFoundError(f"no usable images in {list(specs)} ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
    return pairs


_NO_REF = torch.empty(0, dtype=torch.float64)  # training pairs carry no metric reference


class PatchDataset(Dataset):
    """``length`` random aligned patch pairs; item k depends only on (seed, k)."""

    def __init__(self, pairs: list[Pair], patch_size: int, scale: int, length: int, augment: bool = True,
                 seed: int = 0):
        if patch_size % scale:
            raise ConfigError(f"data.patch_size={patch_size} must be a multiple of scale={scale} "
                              f"(valid: e.g. data.patch_size={patch_size // scale * scale or scale})")
        self.pairs, self.scale, self.length, self.augment, self.seed = pairs, scale, length, augment, seed
        self.lr_patch = patch_size // scale
        # sample images in proportion to the number of patch positions they offer
        pos = np.array([max(p.lr.shape[-2] - self.lr_patch + 1, 1) * max(p.lr.shape[-1] - self.lr_patch + 1, 1)
                        for p in pairs], dtype=np.float64)
        self.cum = np.cumsum(pos / pos.sum())

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        # numpy views and one copy at the end: ~4× cheaper per patch than torch slicing (the loader runs in the
        # training process on a small CPU: data.num_workers=0)
        rng = np.random.default_rng((self.seed, k))
        p = self.pairs[min(int(np.searchsorted(self.cum, rng.random(), side="right")), len(self.pairs) - 1)]
        lr, hr = p.lr.numpy(), p.hr.numpy()
        h, w = lr.shape[-2:]
        ps, s = self.lr_patch, self.scale
        i, j = int(rng.integers(0, h - ps + 1)), int(rng.integers(0, w - ps + 1))
        lr = lr[:, i : i + ps, j : j + ps]
        hr = hr[:, i * s : (i + ps) * s, j * s : (j + ps) * s]
        if self.augment:
            hflip, vflip, rot = rng.random(3) < 0.5
            if hflip:
                lr, hr = lr[..., ::-1], hr[..., ::-1]
            if vflip:
                lr, hr = lr[..., ::-1, :], hr[..., ::-1, :]
            if rot:
                lr, hr = lr.swapaxes(-1, -2), hr.swapaxes(-1, -2)
        return torch.from_numpy(np.ascontiguousarray(lr)), torch.from_numpy(np.ascontiguousarray(hr))


class MultiScalePatches(Dataset):
    """Patches at a scale drawn per batch (VDSR's multi-scale training): item k belongs to batch
    ``k // group`` whose scale is a function of (seed, batch), so a batch stacks and a run is reproducible.
    ``group`` = batch size × world size: with DDP's sampler (no shuffle) rank r's batch j holds exactly the items
    ``j·group … (j+1)·group - 1``. The HR patch is ``patch_size`` rounded down to a multiple of each scale."""

    def __init__(self, pairs: dict[int, list[Pair]], patch_size: int, length: int, group: int, augment: bool = True,
                 seed: int = 0):
        self.scales = sorted(pairs)
        self.sets = {s: PatchDataset(p, patch_size // s * s, s, length, augment, seed) for s, p in pairs.items()}
        self.length, self.group, self.seed = length, group, seed

    def __len__(self) -> int:
        return self.length

    def scale_of(self, k: int) -> int:
        rng = np.random.default_rng((self.seed, k // self.group, 1))
        return self.scales[int(rng.integers(len(self.scales)))]

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        return self.sets[self.scale_of(k)][k]


class ImageDataset(Dataset):
    """Whole images for validation/test: (LR input, reference Y, index, HR in the net's channels: the perceptual
    metrics' reference)."""

    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor, int, Tensor]:
        p = self.pairs[k]
        return p.lr, p.ref_y, k, p.hr


class SRDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: Sequence[str],
        val: Sequence[str],
        scale: int,
        channels: int = 3,
        protocol: str = "rgb_uint8",
        patch_size: int | None = 96,
        batch_size: int = 16,
        num_workers: int = 2,
        samples: int = 100_000,
        augment: bool = True,
        root: str | None = None,
        seed: int = 0,
        pin_memory: bool = True,
        train_dir: str | None = None,
        val_dir: str | None = None,
        lr_source: str = "make",
        scales: Sequence[int] | None = None,
        cache_dir: str | None = None,
        downscale: Sequence[float] = (),
        lr_patch_size: int | None = None,
    ):
        """``train``/``val``: source specs (named sets, folders, ``skimage:NAME``); ``train_dir``/``val_dir``: one
        more folder each (the ``data=folder`` shortcut). ``lr_source`` (training pairs only; validation always
        makes its LR by the protocol, which is the measurement): ``make`` | ``files`` | ``auto``, see
        :func:`load_pairs`. ``lr_patch_size``: the patch's LR side; when set it overrides ``patch_size`` (the HR
        side) with ``lr_patch_size × scale``. ``scales``: train on these scales mixed, one drawn per batch (multi-scale VDSR; the
        net must accept any scale, as pre-upsampling nets do); null = ``[scale]``. Validation stays at ``scale``."""
        super().__init__()
        if lr_patch_size:  # the LR side (EDSR's 48, ESPCN's 17): one recipe serves every scale
            patch_size = int(lr_patch_size) * scale
        elif patch_size is None:
            raise ConfigError("data.patch_size=null needs data.lr_patch_size (the LR side): set one of them")
        self.train_specs = [*(train or []), *([train_dir] if train_dir else [])]
        self.val_specs = [*(val or []), *([val_dir] if val_dir else [])]
        self.scale, self.channels, self.protocol = scale, channels, protocol
        self.patch_size, self.batch_size, self.num_workers = patch_size, batch_size, num_workers
        self.samples, self.augment, self.root, self.seed, self.pin_memory = samples, augment, root, seed, pin_memory
        self.lr_source, self.scales = lr_source, sorted({int(s) for s in (scales or [scale])})
        self.cache_dir = cache_dir  # decoded pairs on disk (srexp.data.cache); null = decode every run
        self.downscale = list(downscale or [])  # training images also enter shrunk by these factors (FSRCNN)
        self.train_pairs: dict[int, list[Pair]] | list[Pair] | None = None  # {scale: pairs} when multi-scale
        self.val_pairs: list[Pair] | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_pairs is None and self.train_specs:
            by_scale = {s: load_pairs(self.train_specs, self.root, s, self.channels, self.protocol,
                                      min_hr=self.patch_size, lr_source=self.lr_source, cache_dir=self.cache_dir,
                                      keep_ref=False, downscale=self.downscale) for s in self.scales}
            self.train_pairs = by_scale if self.multiscale else by_scale[self.scales[0]]
        if self.val_pairs is None and self.val_specs:
            self.val_pairs = load_pairs(self.val_specs, self.root, self.scale, self.channels, self.protocol,
                                        cache_dir=self.cache_dir)

    @property
    def multiscale(self) -> bool:
        return self.scales != [self.scale]

    @property
    def val_hash(self) -> str | None:
        return images_hash(p.ref_y for p in self.val_pairs) if self.val_pairs else None

    def _loader(self, ds: Dataset, batch_size: int, workers: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                          pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        if self.multiscale:
            world = self.trainer.world_size if self.trainer is not None else 1
            ds = MultiScalePatches(self.train_pairs, self.patch_size, self.samples, self.batch_size * world,
                                   self.augment, self.seed)
        else:
            ds = PatchDataset(self.train_pairs, self.patch_size, self.scale, self.samples, self.augment, self.seed)
        from srexp.training.resume import Shifted, samples_drawn  # a resumed run starts at the sample it had reached

        start = samples_drawn(self.trainer, self.batch_size)
        return self._loader(Shifted(ds, start) if start else ds, self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(ImageDataset(self.val_pairs), 1, 0)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
