"""Aligned faces for DFDNet: HQ faces with component boxes, degraded on the device into the network's input.

**Sources.** ``train`` / ``val``: lists of folders (searched recursively, so FFHQ's ``images1024x1024/00000/…``
works as is) or image files; relative paths are tried against the data root too. Every face is resized to
``size × size`` (antialiased bicubic): it must already be *aligned* (FFHQ-style crops, the eyes at fixed places).

**Component boxes.** ``landmarks``: a JSON file ``{"<file name>": {"left_eye": [x1, y1, x2, y2], "right_eye": [...],
"nose": [...], "mouth": [...]}}`` in the file's own pixel coordinates (scaled to ``size`` here; left/right as seen in
the image; DFDNet's boxes are squares around the 68-point landmarks: brow + eye, nose 29–35, mouth 48–67). Faces not
in the file, or no file: the canonical boxes of the FFHQ-aligned layout (:data:`srexp.nets.face.dfdnet.CANONICAL_BOXES`,
at 512: left eye (152, 188, 232, 268), right eye (280, 188, 360, 268), nose (231, 280, 281, 330), mouth (202, 318,
312, 428), scaled with the size).

**Degradation** (the released DFDNet's data code, ``data/aligned_dataset.py``): with probability 0.9 a Gaussian blur
σ ∈ [0.3, 2.0] px (their motion-blur branch needs their kernel files and is left out), with probability 0.95 a
bicubic downscale by r ∈ [2, 10], with probability 0.9 Gaussian noise σ ∈ [1, 10] (0–255 scale), with probability
0.6 JPEG at quality ∈ [40, 80], then bicubic back to ``size`` and 8-bit rounding. All on the device, batched, in
:meth:`FaceDataModule.on_after_batch_transfer`, by the pipeline blind-SR training uses too
(:class:`srexp.ops.degrade.Degradation`, configured by :class:`FaceDegradation`): per-sample blur, noise and JPEG,
one ``r`` per batch (so the resize is one op; over a run the factors cover the range). The random draws of a batch
come from a generator seeded by (seed, index of its first sample): a resumed run degrades its batches as the
uninterrupted one. Validation faces are degraded once, on the CPU, with a fixed seed and ``r = scale``: the numbers compare
across runs.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from srexp.data.images import IMAGE_SUFFIXES, load_image, to_channels
from srexp.errors import ConfigError
from srexp.metrics import get_protocol, images_hash
from srexp.nets.face.dfdnet import PARTS, canonical_boxes
from srexp.ops.color import to_float
from srexp.ops.degrade import Degradation
from srexp.ops.resize import resize_pil

log = logging.getLogger(__name__)

DEGRADE = {"blur_sigma": (0.3, 2.0), "downscale": (2.0, 10.0), "noise_sigma": (1.0, 10.0), "jpeg_quality": (40, 80),
           "p_blur": 0.9, "p_downscale": 0.95, "p_noise": 0.9, "p_jpeg": 0.6}


def list_faces(specs: Sequence[str], root: str | None = None, key: str = "data.train") -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if not p.exists() and root and (Path(root) / spec).exists():
            p = Path(root) / spec
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{key}: {spec} is neither a folder nor an image file (data root: {root})")
    if not files:
        raise ConfigError(f"{key}={list(specs)}: no images found")
    return files


def load_landmarks(path: str | Path | None) -> dict[str, Tensor]:
    """``{file name: (4, 4) boxes in the file's pixels}`` from the JSON described in the module docstring."""
    if not path:
        return {}
    path = Path(path).expanduser()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"landmarks={path}: not a readable JSON file ({str(e).splitlines()[0][:120]})") from None
    out = {}
    for name, parts in raw.items():
        try:
            out[name] = torch.tensor([[float(v) for v in parts[p]] for p in PARTS])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"landmarks={path}: entry {name!r} needs {', '.join(PARTS)} as [x1, y1, x2, y2] "
                              f"each") from None
        if out[name].shape != (4, 4):
            raise ConfigError(f"landmarks={path}: entry {name!r}: every box is [x1, y1, x2, y2]")
    return out


def load_face(path: Path, size: int, landmarks: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(uint8 ``(3, size, size)``, boxes ``(4, 4)`` at that size) of one aligned face."""
    img = to_channels(load_image(path), 3)
    h, w = img.shape[-2:]
    if (h, w) != (size, size):
        img = resize_pil(img, (size, size))
    boxes = landmarks.get(path.name)
    if boxes is None:
        boxes = canonical_boxes(1, size, size)[0]
    else:
        boxes = boxes * torch.tensor([size / w, size / h, size / w, size / h])
    return img, boxes


def flip_face(img: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror a face: the image, the boxes' x, and the two eyes' roles."""
    w = img.shape[-1]
    b = boxes[..., [2, 1, 0, 3]] * torch.tensor([-1.0, 1, -1, 1]) + torch.tensor([w, 0.0, w, 0])
    return img.flip(-1), b[..., [1, 0, 2, 3], :]


class FaceDegradation(Degradation):
    """The random degradation of the module docstring: the shared :class:`~srexp.ops.degrade.Degradation` with
    :data:`DEGRADE`'s parameters (overridden by ``data.degrade``), PIL-style resizing and the LQ brought back to the
    input size; ``__call__(hq, generator, downscale)`` takes HQ ``(N, 3, S, S)`` floats in [0, 1]."""

    def __init__(self, **cfg):
        unknown = set(cfg) - DEGRADE.keys()
        if unknown:
            raise ConfigError(f"data.degrade has unknown keys {sorted(unknown)} (valid: {', '.join(DEGRADE)})")
        c = {**DEGRADE, **cfg}
        super().__init__(c["blur_sigma"], c["noise_sigma"], c["jpeg_quality"], c["p_blur"], c["p_noise"], c["p_jpeg"],
                         resample="pil", restore_size=True, noise_field_first=False, key="data.degrade")
        self.down, self.p_down = tuple(float(v) for v in c["downscale"]), float(c["p_downscale"])

    def draw_downscale(self, rng: np.random.Generator) -> float:
        """The batch's downscale factor (1 = none), drawn on the host: no device sync."""
        on, u = rng.random(2)
        return self.down[0] + u * (self.down[1] - self.down[0]) if on < self.p_down else 1.0

    def __call__(self, hq: Tensor, generator: torch.Generator, downscale: float) -> Tensor:
        """``downscale``: this batch's factor (:meth:`draw_downscale`, or ``scale`` for validation)."""
        return self.apply(hq, generator, downscale)


def batch_generator(seed: int, first: int, device) -> torch.Generator:
    """The generator of the batch whose first sample has index ``first``."""
    state = int(np.random.SeedSequence([seed, first]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


@dataclass
class FacePair:
    name: str
    lr: Tensor  # (3, S, S) uint8: the degraded face resized to S, the network input
    hr: Tensor  # (3, S, S) uint8
    ref_y: Tensor  # (1, S, S) float64 0–255: the metric reference (the protocol's Y)
    boxes: Tensor  # (4, 4)


class FaceDataset(Dataset):
    """``length`` samples; item k = (HQ uint8, boxes, k), the face and a mirror flip drawn from (seed, k)."""

    def __init__(self, files: list[Path], size: int, length: int, landmarks: Mapping[str, Tensor], flip: bool = True,
                 seed: int = 0, cache: bool = True):
        self.files, self.size, self.length, self.landmarks = files, size, length, landmarks
        self.flip, self.seed = flip, seed
        self.cached = [load_face(f, size, landmarks) for f in files] if cache else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor, int]:
        rng = np.random.default_rng((self.seed, k))
        i = int(rng.integers(len(self.files)))
        img, boxes = self.cached[i] if self.cached is not None else load_face(self.files[i], self.size,
                                                                               self.landmarks)
        if self.flip and rng.random() < 0.5:
            img, boxes = flip_face(img, boxes)
        return img.contiguous(), boxes.float(), k


class _Faces(Dataset):
    def __init__(self, pairs: list[FacePair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int):
        p = self.pairs[k]
        return p.lr, p.ref_y, k, p.boxes, p.hr


class FaceDataModule(L.LightningDataModule):
    """Training batches ``(lq, hq, boxes)`` (after the transfer: floats on the device) and validation batches
    ``(lq, ref_y, index, boxes, hq)`` of whole faces (the HQ face: the perceptual metrics' reference). ``cache_gb``: decode the training faces once into memory when they
    take at most this much (uint8 at ``size``), else decode in the workers (FFHQ at 512: 55 GB)."""

    def __init__(self, train: Sequence[str], val: Sequence[str], size: int = 512, scale: int = 4,
                 landmarks: str | None = None, degrade: Mapping | None = None, batch_size: int = 16,
                 num_workers: int = 2, samples: int = 100_000, flip: bool = True, root: str | None = None,
                 seed: int = 0, protocol: str = "rgb_uint8", cache_gb: float = 4.0, pin_memory: bool = True):
        super().__init__()
        for key, value in (("train", train), ("val", val)):
            if not value:
                raise ConfigError(f"data.{key} is empty: give folders or files of aligned faces, e.g. "
                                  f"data.{key}=[DIR]")
        if size % 16:
            raise ConfigError(f"data.size={size} is not a multiple of 16 (DFDNet's deepest stride)")
        self.train_specs, self.val_specs = list(train or []), list(val or [])
        self.size, self.scale, self.landmarks_file = size, scale, landmarks
        self.degradation = FaceDegradation(**dict(degrade or {}))
        self.batch_size, self.num_workers, self.samples, self.flip = batch_size, num_workers, samples, flip
        self.root, self.seed, self.protocol, self.cache_gb = root, seed, get_protocol(protocol), cache_gb
        self.pin_memory = pin_memory
        self.train_files: list[Path] | None = None
        self.val_pairs: list[FacePair] | None = None
        self._batch_first: int | None = None

    def setup(self, stage: str | None = None) -> None:
        self.landmarks = load_landmarks(self.landmarks_file)
        if stage in (None, "fit") and self.train_files is None and self.train_specs:
            self.train_files = list_faces(self.train_specs, self.root, "data.train")
        if self.val_pairs is None and self.val_specs:
            self.val_pairs = self.degrade_faces(list_faces(self.val_specs, self.root, "data.val"))

    def degrade_faces(self, files: list[Path]) -> list[FacePair]:
        """Validation pairs: each face degraded once at ``r = scale`` by a generator seeded from ``seed``."""
        pairs, g = [], torch.Generator().manual_seed(self.seed + 7919)
        for f in files:
            img, boxes = load_face(f, self.size, self.landmarks)
            lq = self.degradation(to_float(img)[None], g, downscale=float(self.scale))[0]
            ref_y = self.protocol.sr_to_y(to_float(img)[None])[0]
            pairs.append(FacePair(f.stem, torch.round(lq * 255).to(torch.uint8), img, ref_y, boxes))
        return pairs

    @property
    def val_hash(self) -> str | None:
        return images_hash(p.hr for p in self.val_pairs) if self.val_pairs else None

    def _loader(self, ds: Dataset, batch_size: int, workers: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                          pin_memory=self.pin_memory and torch.cuda.is_available(), persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        from srexp.training.resume import Shifted, samples_drawn  # a resumed run starts at the sample it had reached

        fits = len(self.train_files) * 3 * self.size**2 <= self.cache_gb * 2**30
        ds = FaceDataset(self.train_files, self.size, self.samples, self.landmarks, self.flip, self.seed, cache=fits)
        start = samples_drawn(self.trainer, self.batch_size)
        return self._loader(Shifted(ds, start) if start else ds, self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(_Faces(self.val_pairs), 1, 0)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def on_before_batch_transfer(self, batch, dataloader_idx: int = 0):
        if len(batch) == 3:  # training: keep the sample indices on the host, they only seed the degradation
            hq, boxes, k = batch
            self._batch_first = int(k[0])
            return hq, boxes
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        if len(batch) == 2:
            hq, boxes = batch
            hq = to_float(hq)
            first = self._batch_first if self._batch_first is not None else 0
            factor = self.degradation.draw_downscale(np.random.default_rng((self.seed, first, 1)))
            return self.degradation(hq, batch_generator(self.seed, first, hq.device), factor), hq, boxes.float()
        lq, ref_y, idx, boxes, hq = batch
        return to_float(lq), ref_y, idx, boxes.float(), hq

