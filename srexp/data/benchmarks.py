"""Named image sets under the data root, and how a data source spec resolves to image files.

A source spec is one of: a named set (``Set5``, ``Set14``, ``B100``, ``Urban100``, ``Manga109``, ``T91``, ``BSD200``,
``DIV2K``, ``DIV2K_valid``), a folder path (anything containing ``/`` or starting with ``.`` or ``~``), or
``skimage:NAME`` (an image bundled with scikit-image, used by the default experiment).
The data root is ``data.root`` when set, else ``$SREXP_DATA``.
"""
from __future__ import annotations

from srexp.errors import SrexpError

import os
from pathlib import Path

from srexp.data.images import IMAGE_SUFFIXES, list_images

# Folder layouts searched, relative to the data root, in order. {name} is the set's folder name.
LAYOUTS: dict[str, list[str]] = {
    "Set5": ["Set5", "Set5/HR", "benchmark/Set5/HR", "Set5/original"],
    "Set14": ["Set14", "Set14/HR", "benchmark/Set14/HR", "Set14/original"],
    "B100": ["B100", "B100/HR", "BSD100", "BSDS100", "benchmark/B100/HR"],
    "Urban100": ["Urban100", "Urban100/HR", "benchmark/Urban100/HR"],
    "Manga109": ["Manga109", "Manga109/HR", "benchmark/Manga109/HR"],
    "T91": ["T91", "T91/HR", "91-image"],
    "BSD200": ["BSD200", "BSD200/HR", "BSDS200"],
    "DIV2K": ["DIV2K/DIV2K_train_HR", "DIV2K_train_HR"],
    "DIV2K_valid": ["DIV2K/DIV2K_valid_HR", "DIV2K_valid_HR"],
}
COMPOSITES: dict[str, list[str]] = {"291": ["T91", "BSD200"]}
# Image counts of the published sets: what `srexp-data list/verify` expect to find.
EXPECTED: dict[str, int] = {"Set5": 5, "Set14": 14, "B100": 100, "Urban100": 100, "Manga109": 109, "T91": 91,
                            "BSD200": 200, "DIV2K": 800, "DIV2K_valid": 100}


class DataNotFoundError(SrexpError, FileNotFoundError):
    """A named set or folder is missing; the message says where we looked and what was expected."""


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    r = root if root not in (None, "") else os.environ.get("SREXP_DATA")
    return Path(r).expanduser() if r else None


def find_set(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Image files of a named set (or of a composite like ``291``)."""
    if name in COMPOSITES:
        return [p for part in COMPOSITES[name] for p in find_set(part, root)]
    return list_images(find_set_folder(name, root))


def find_set_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding a named set's HR images (the first layout in ``LAYOUTS`` that has images)."""
    if name not in LAYOUTS:
        raise DataNotFoundError(
            f"unknown set {name!r} (named sets: {', '.join([*LAYOUTS, *COMPOSITES])}; or give a folder path)"
        )
    base = data_root(root)
    if base is None:
        raise DataNotFoundError(
            f"set {name!r} needs a data root: set SREXP_DATA=/path (or data.root=/path for srexp-train, "
            f"eval.root=/path for srexp-eval) "
            f"(expected {name} under it as {LAYOUTS[name][0]}/*.png)"
        )
    for rel in LAYOUTS[name]:
        if (base / rel).is_dir() and list_images(base / rel):
            return base / rel
    tried = ", ".join(str(base / rel) for rel in LAYOUTS[name])
    raise DataNotFoundError(
        f"set {name!r} not found under data root {base}: looked in {tried}; "
        f"expected a folder of HR images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES[:4])})"
    )


def premade_lr_file(hr: str | os.PathLike, scale: int) -> Path | None:
    """The bicubic LR image a published layout ships beside an HR image, or None where there is none:
    ``DIV2K_train_HR/0001.png`` → ``DIV2K_train_LR_bicubic/X2/0001x2.png`` (DIV2K) and
    ``benchmark/Set5/HR/baby.png`` → ``benchmark/Set5/LR_bicubic/X2/babyx2.png`` (EDSR's benchmark.tar)."""
    hr = Path(hr)
    folder, name = hr.parent, f"{hr.stem}x{scale}{hr.suffix}"
    if folder.name.endswith("_HR"):
        lr_folder = folder.parent / f"{folder.name[:-3]}_LR_bicubic" / f"X{scale}"
    elif folder.name == "HR":
        lr_folder = folder.parent / "LR_bicubic" / f"X{scale}"
    else:
        return None
    return lr_folder / name if (lr_folder / name).is_file() else None


def is_path_spec(spec: str) -> bool:
    return "/" in spec or spec.startswith((".", "~")) or os.sep in spec


def resolve(spec: str, root: str | os.PathLike | None = None) -> list[str]:
    """A source spec → list of loadable items (file paths, or ``skimage:NAME``)."""
    spec = str(spec)
    if spec.startswith("skimage:"):
        return [spec]
    if is_path_spec(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(f"image folder {folder} does not exist")
        files = list_images(folder)
        if not files:
            raise DataNotFoundError(
                f"image folder {folder} has no images (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
            )
        return [str(p) for p in files]
    return [str(p) for p in find_set(spec, root)]
