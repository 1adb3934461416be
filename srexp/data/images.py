"""Decode, validate and convert image files into uint8 ``(C,H,W)`` tensors, C ∈ {1, 3}.

Conversions are explicit: RGBA/LA drop alpha, palette (P) and CMYK/YCbCr become RGB, 16-bit (I;16, I) and float
(F) grayscale are scaled to 8 bits (x/257, rounded). Anything PIL cannot decode raises :class:`ImageError` with
one line naming the file.
"""
from __future__ import annotations

from srexp.errors import SrexpError

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(SrexpError, ValueError):
    """A file that is not a usable image; the message is one line naming the file."""


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pil_to_tensor(im: Image.Image, path: str | Path = "<image>") -> Tensor:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(np.floor(a / 257 + 0.5), 0, 255).astype(np.uint8)
    elif mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max() <= 1.0 else 1.0
        a = np.clip(np.floor(a * scale + 0.5), 0, 255).astype(np.uint8)
    elif mode in ("L", "1"):
        a = np.asarray(im.convert("L"))
    elif mode == "LA":
        a = np.asarray(im.convert("L"))
    elif mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        a = np.asarray(im.convert("RGB"))
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r}")
    t = torch.from_numpy(np.array(a, dtype=np.uint8, copy=True))
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def load_image(path: str | Path) -> Tensor:
    """Read ``path`` into a uint8 ``(C,H,W)`` tensor (C = 1 for grayscale, 3 otherwise)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return pil_to_tensor(im, path)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: cannot decode image ({reason})") from None


def to_channels(img: Tensor, channels: int) -> Tensor:
    """Gray → RGB by replication when an RGB net needs it; RGB kept (Y is taken later by the protocol)."""
    if channels == 3 and img.shape[-3] == 1:
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).contiguous()
    return img


def save_image(img: Tensor, path: str | Path) -> None:
    """Save a uint8 or [0,1] float ``(C,H,W)`` tensor."""
    if img.is_floating_point():
        img = torch.round(img.detach().clamp(0, 1) * 255).to(torch.uint8)
    a = img.cpu().permute(1, 2, 0).numpy()
    Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(path)
