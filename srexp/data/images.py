"""Image files in and out: one reader, one mode table, one 16 → 8-bit rule, one writer.

:func:`read_image` gives a file as stored: a numpy ``(C, H, W)`` array, uint8 or uint16, C = 1 (gray), 2 (gray +
alpha), 3 (RGB) or 4 (RGBA). What it converts (``_PIL_MODES``): palette → RGB (RGBA when it has a transparent
colour), CMYK / YCbCr / LAB / HSV → RGB, 1-bit → gray, 32-bit integer gray → 16 bits (clipped), float gray → 16 bits
(x·65535 for [0, 1] data, else taken on the 16-bit scale and clipped). 16-bit RGB / gray + alpha PNGs (which Pillow
cuts to 8 bits) are decoded by FFmpeg (PyAV), 8/16-bit gray or RGB TIFFs by tifffile, everything else by Pillow.

:func:`load_image` is the training/eval view of the same array: a uint8 ``(C, H, W)`` tensor, C ∈ {1, 3}, alpha
dropped, 16 bits taken to 8 by :func:`to_uint8`, round(v / 257) (the inverse of v8 · 257), for every mode and format.
srexp-upscale reads with :func:`read_image` and keeps the 16 bits.

:func:`save_image` writes a uint8 / [0, 1] float tensor or a uint8 / uint16 array in the format of the suffix (16
bits: PNG or TIFF). Anything that cannot be decoded or written raises :class:`ImageError`, one line naming the file.
"""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from srexp.errors import SrexpError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
WRITE_SUFFIXES = {  # what each output format holds: (bits, alpha)
    ".png": ({8, 16}, True), ".tif": ({8, 16}, True), ".tiff": ({8, 16}, True), ".bmp": ({8}, True),
    ".jpg": ({8}, False), ".jpeg": ({8}, False), ".webp": ({8}, True), ".ppm": ({8}, False), ".pgm": ({8}, False),
}
# Pillow mode → what it becomes: a Pillow mode to convert to (8 bits), or "16" (16-bit gray), "32" (32-bit integer
# gray, clipped to 16 bits), "F" (float gray, see the module doc), "P" (RGB, or RGBA with a transparent colour).
_PIL_MODES = {
    "1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGBA": "RGBA", "RGBa": "RGBA",
    "RGB": "RGB", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
    "I;16": "16", "I;16B": "16", "I;16L": "16", "I;16N": "16", "I": "32", "F": "F", "P": "P",
}


class ImageError(SrexpError, ValueError):
    """A file that is not a usable image; the message is one line naming the file."""


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------------------------------------- reading
def read_image(path: str | Path) -> np.ndarray:
    """``(C, H, W)`` uint8/uint16 as stored (see the module doc for the conversions); :class:`ImageError` (one line
    naming the file) when it cannot be decoded."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if path.suffix.lower() in (".tif", ".tiff"):
                a = _read_tiff(path)
                if a is not None:
                    return a
            png = _png_header(path)
            if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
                _check_size(png[2], png[3])
                return _png16_via_ffmpeg(path, png[1])
            with Image.open(path) as im:
                im.load()
                return _from_pil(im, path)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow, FFmpeg, tifffile: any decoder failure is a bad file for the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: cannot decode image ({reason})") from None


def to_uint8(a: np.ndarray) -> np.ndarray:
    """The one 16 → 8-bit rule: round(v / 257), exact in integers ((v + 128) // 257; v / 257 is never a tie), so
    v8 · 257 comes back as v8 and 65280 → 254. uint8 is returned as is."""
    if a.dtype == np.uint8:
        return a
    if a.dtype != np.uint16:
        raise TypeError(f"to_uint8 takes uint8 or uint16, not {a.dtype}")
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def load_image(path: str | Path) -> Tensor:
    """Read ``path`` into a uint8 ``(C,H,W)`` tensor (C = 1 for grayscale, 3 otherwise): :func:`read_image`, alpha
    dropped, :func:`to_uint8`."""
    a = read_image(path)
    a = to_uint8(a[:1] if a.shape[0] == 2 else a[:3])
    return torch.from_numpy(np.ascontiguousarray(a))


def to_channels(img: Tensor, channels: int) -> Tensor:
    """Gray → RGB by replication when an RGB net needs it; RGB kept (Y is taken later by the protocol)."""
    if channels == 3 and img.shape[-3] == 1:
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).contiguous()
    return img


def _check_size(w: int, h: int) -> None:
    """Pillow's decompression-bomb limit, for the decoders that are not Pillow."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > 2 * limit:
        raise Image.DecompressionBombError(f"Image size ({w * h} pixels) exceeds limit of {2 * limit} pixels, "
                                           f"could be decompression bomb DOS attack.")


def _from_pil(im: Image.Image, path: Path) -> np.ndarray:
    to = _PIL_MODES.get(im.mode)
    if to is None:
        raise ImageError(f"{path}: unsupported image mode {im.mode!r} (valid: gray, RGB, RGBA, palette, CMYK, 16-bit)")
    if to == "16":
        a = np.asarray(im).astype(np.uint16)
    elif to == "32":
        a = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    elif to == "F":
        f = np.asarray(im, dtype=np.float64)
        a = np.clip(np.floor(f * (65535 if f.max() <= 1 else 1) + 0.5), 0, 65535).astype(np.uint16)
    elif to == "P":
        a = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    else:
        a = np.asarray(im if im.mode == to else im.convert(to))
    return np.array(a[None] if a.ndim == 2 else a.transpose(2, 0, 1), order="C")  # a copy: Pillow's is read-only


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(bit depth, colour type, width, height) of a PNG file, None for other files."""
    with path.open("rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return head[24], head[25], w, h


def _png16_via_ffmpeg(path: Path, colour: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        a = frame.to_ndarray(format="rgba64le" if colour in (4, 6) else "rgb48le")
    if colour == 4:  # gray + alpha: R and A
        a = a[..., [0, 3]]
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def _read_tiff(path: Path) -> np.ndarray | None:
    """8/16-bit unsigned gray or RGB TIFFs (1–4 samples, contiguous or planar) by tifffile; None for the rest
    (palette, CMYK, YCbCr, float, …: Pillow reads them). An 8-bit file tifffile cannot decompress also goes to
    Pillow; a 16-bit one is an error (Pillow would cut it to 8 bits another way)."""
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except Exception:  # noqa: BLE001 - not a TIFF tifffile understands: Pillow tries
        return None
    with tf:
        page = tf.pages[0]
        if (page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
                or page.sampleformat != tifffile.SAMPLEFORMAT.UINT or page.bitspersample not in (8, 16)
                or page.samplesperpixel not in (1, 2, 3, 4)):
            return None
        _check_size(page.imagewidth, page.imagelength)
        try:
            a = page.asarray()
        except Exception:  # a compression tifffile lacks
            if page.bitspersample == 8:
                return None
            raise
        axes = page.axes
    if "S" not in axes:
        return a[None]
    return np.ascontiguousarray(np.moveaxis(a, axes.index("S"), 0))


# ----------------------------------------------------------------------------------------------------------- writing
def check_writable(path: str | Path, bits: int, alpha: bool) -> None:
    """:class:`ImageError` when ``path``'s format cannot hold ``bits``-bit samples (or alpha)."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ImageError(f"output={path}: unknown image format {suffix!r} (valid: {', '.join(WRITE_SUFFIXES)})")
    ok_bits, ok_alpha = WRITE_SUFFIXES[suffix]
    lacks = [*(["16-bit samples"] if bits not in ok_bits else []), *(["alpha"] if alpha and not ok_alpha else [])]
    if lacks:
        raise ImageError(f"output={path}: {suffix} cannot hold {' and '.join(lacks)} (valid: .png, .tif)")


def save_image(img: Tensor | np.ndarray, path: str | Path) -> None:
    """Write ``(C, H, W)``, C ∈ 1–4 (alpha last): a uint8 or [0, 1] float tensor, or a uint8/uint16 array, in the
    format of ``path``'s suffix (16 bits: PNG or TIFF; JPEG at quality 95). PNGs are written a band of rows at a time
    (:func:`write_png`), so a huge output needs no second copy in memory; a ``(C, H, W)`` view of ``(H, W, C)``
    memory (what :class:`srexp.cli.upscale.Upscaler` returns) is written as is."""
    if isinstance(img, Tensor):
        if img.is_floating_point():
            img = torch.round(img.detach().clamp(0, 1) * 255).to(torch.uint8)
        img = img.detach().cpu().numpy()
    a, path = img, Path(path)
    if a.dtype not in (np.uint8, np.uint16) or a.ndim != 3 or a.shape[0] not in (1, 2, 3, 4):
        raise ImageError(f"output={path}: cannot write a {a.dtype} array of shape {tuple(a.shape)} "
                         f"(valid: (C, H, W), C = 1–4, uint8 or uint16)")
    bits = 16 if a.dtype == np.uint16 else 8
    check_writable(path, bits, a.shape[0] in (2, 4))
    suffix = path.suffix.lower()
    hwc = a.transpose(1, 2, 0)
    if suffix == ".png":
        write_png(hwc, path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, np.ascontiguousarray(hwc), photometric="rgb" if a.shape[0] >= 3 else "minisblack",
                         extrasamples=("unassalpha",) if a.shape[0] in (2, 4) else None)
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[0]]
        im = Image.fromarray(np.ascontiguousarray(hwc[..., 0] if mode == "L" else hwc), mode=mode)
        im.save(path, **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}))


def write_png(hwc: np.ndarray, path: Path, rows_per_band: int = 128) -> None:
    """A PNG of 1–4 channels, 8 or 16 bits, compressed a band of rows at a time with the Sub filter (each byte
    minus the same byte of the pixel to its left). Pillow cannot write 16-bit RGB(A) and copies whole images."""
    h, w, c = hwc.shape
    depth = 16 if hwc.dtype == np.uint16 else 8
    bpp = c * depth // 8
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    z = zlib.compressobj(6)
    with Path(path).open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)))
        for y in range(0, h, rows_per_band):
            band = np.ascontiguousarray(hwc[y : y + rows_per_band], dtype=">u2" if depth == 16 else np.uint8)
            raw = band.view(np.uint8).reshape(band.shape[0], w * bpp)
            rows = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
            rows[:, 0] = 1  # Sub
            rows[:, 1 : 1 + bpp] = raw[:, :bpp]
            np.subtract(raw[:, bpp:], raw[:, :-bpp], out=rows[:, 1 + bpp :])  # wraps mod 256, as PNG wants
            data = z.compress(rows.tobytes())
            if data:
                f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IDAT", z.flush()) + chunk(b"IEND", b""))
