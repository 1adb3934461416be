"""A disk cache of decoded, degraded pairs: a second run (or each DDP rank, or a sweep's jobs) starts without
decoding or resizing again. One folder per pair, keyed by a hash of the source file's identity (path, size,
mtime) and of everything the pair depends on (scale, channels, protocol, LR source); arrays are ``.npy`` files
opened memory-mapped, so worker processes share the page cache instead of copying.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT = 1  # bump when the pair layout changes


def pair_key(item: str, **params) -> str:
    ident: dict = {"item": item, "format": FORMAT, **params}
    if not item.startswith("skimage:"):
        st = os.stat(item)
        ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns, path=os.path.realpath(item))
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _load(folder: Path, fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmap: nobody writes to these tensors
        return {f: torch.from_numpy(np.load(folder / f"{f}.npy", mmap_mode="r")) for f in fields}


def lookup(cache_dir: str | os.PathLike | None, key: str, fields: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The cached arrays of ``key`` (memory-mapped), or None."""
    if not cache_dir:
        return None
    folder = Path(cache_dir).expanduser() / key
    return _load(folder, fields) if (folder / "done").is_file() else None


def store(cache_dir: str | os.PathLike | None, key: str, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Save ``arrays`` under ``key`` and return them memory-mapped (as given where there is no cache_dir)."""
    if not cache_dir:
        return arrays
    folder = Path(cache_dir).expanduser() / key
    tmp = folder.with_name(f"{key}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for f, a in arrays.items():
        np.save(tmp / f"{f}.npy", a.contiguous().numpy())
    (tmp / "done").touch()
    try:
        os.replace(tmp, folder)  # atomic: concurrent writers (DDP ranks, sweep jobs) race harmlessly
    except OSError:  # another process won; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return lookup(cache_dir, key, tuple(arrays)) or arrays
