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
from typing import Callable

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


def cached(cache_dir: str | os.PathLike | None, key: str, fields: tuple[str, ...],
           make: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``make()`` once per key; later calls (this run or the next) map the saved arrays. No cache_dir: just make."""
    if not cache_dir:
        return make()
    folder = Path(cache_dir).expanduser() / key
    if (folder / "done").is_file():
        return _load(folder, fields)
    arrays = make()
    tmp = folder.with_name(f"{key}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in fields:
        np.save(tmp / f"{f}.npy", arrays[f].contiguous().numpy())
    (tmp / "done").touch()
    try:
        os.replace(tmp, folder)  # atomic: concurrent writers (DDP ranks, sweep jobs) race harmlessly
    except OSError:  # another process won; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(folder, fields) if (folder / "done").is_file() else arrays
