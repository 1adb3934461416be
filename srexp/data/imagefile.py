"""Image files read and written as they are, for srexp-upscale: 8 or 16 bits, gray or RGB, with or without alpha.

Training converts everything to 8-bit gray/RGB (:mod:`srexp.data.images`); an upscaler must give back what it got.
Arrays are numpy ``(C, H, W)``, uint8 or uint16, C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).

Conversions on reading: palette → RGB (RGBA when it has a transparent colour), CMYK / YCbCr / LAB / HSV → RGB,
1-bit → gray, 32-bit integer gray → 16-bit (clipped), float gray → 16-bit (x·65535 for [0,1] data). 16-bit RGB(A) PNGs
(which Pillow reduces to 8 bits) are decoded by FFmpeg (PyAV), 16-bit TIFFs by tifffile.
"""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from srexp.data.images import ImageError

READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
WRITE_SUFFIXES = {  # what each output format holds: (bits, alpha)
    ".png": ({8, 16}, True), ".tif": ({8, 16}, True), ".tiff": ({8, 16}, True), ".bmp": ({8}, True),
    ".jpg": ({8}, False), ".jpeg": ({8}, False), ".webp": ({8}, True), ".ppm": ({8}, False), ".pgm": ({8}, False),
}


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, None for other files."""
    with path.open("rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 26:
        return None
    return head[24], head[25]


def _png16_via_ffmpeg(path: Path, colour: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        a = frame.to_ndarray(format="rgba64le" if colour in (4, 6) else "rgb48le")
    if colour == 4:  # gray + alpha: R and A
        a = a[..., [0, 3]]
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def _from_pil(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(im).astype(np.uint16)
    elif mode == "I":
        a = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    elif mode == "F":
        f = np.asarray(im, dtype=np.float64)
        a = np.clip(np.floor(f * (65535 if f.max() <= 1 else 1) + 0.5), 0, 65535).astype(np.uint16)
    elif mode in ("1", "L"):
        a = np.asarray(im.convert("L"))
    elif mode in ("LA", "La"):
        a = np.asarray(im.convert("LA"))
    elif mode == "P":
        a = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    elif mode in ("PA", "RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"))
    elif mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        a = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r} (valid: gray, RGB, RGBA, palette, CMYK, 16-bit)")
    return np.array(a[None]) if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def read_picture(path: str | Path) -> np.ndarray:
    """``(C, H, W)`` uint8/uint16 as stored (see the module doc for the conversions); :class:`ImageError` (one line
    naming the file) when it cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            a = _read_tiff(path)
            if a is not None:
                return a
        png = _png_header(path)
        if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
            return _png16_via_ffmpeg(path, png[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return _from_pil(im, path)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL, FFmpeg, tifffile: any decoder failure is a bad file for the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: cannot decode image ({reason})") from None


def _read_tiff(path: Path) -> np.ndarray | None:
    import tifffile

    try:
        a = tifffile.imread(path)
    except Exception:  # noqa: BLE001 - compressions tifffile lacks: Pillow tries
        return None
    if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        return None
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def check_writable(path: str | Path, bits: int, alpha: bool) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ImageError(f"output={path}: unknown image format {suffix!r} (valid: {', '.join(WRITE_SUFFIXES)})")
    ok_bits, ok_alpha = WRITE_SUFFIXES[suffix]
    lacks = [*(["16-bit samples"] if bits not in ok_bits else []), *(["alpha"] if alpha and not ok_alpha else [])]
    if lacks:
        raise ImageError(f"output={path}: {suffix} cannot hold {' and '.join(lacks)} (valid: .png, .tif)")


def write_picture(a: np.ndarray, path: str | Path) -> None:
    """Write ``(C, H, W)`` uint8/uint16 in the format of ``path``'s suffix (16 bits: PNG or TIFF). PNGs are
    written a band of rows at a time (:func:`write_png`), so a huge output needs no second copy in memory; a
    ``(C, H, W)`` view of ``(H, W, C)`` memory (what :class:`srexp.cli.upscale.Upscaler` returns) is written as is."""
    path = Path(path)
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
    with path.open("wb") as f:
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
