"""Patches/s of srexp's DataModule vs a naive per-sample pipeline (the BasicSR style), same images, same workers.

    python bench/data_pipeline.py [--workers 2] [--batches 60] [--scale 4] [--patch 96]

naive: every sample reads and decodes an image file, crops an HR patch, makes its LR with the (exact) bicubic
resize of the patch, converts to float tensors. srexp: images decoded once, LR made once per whole image, then
uint8 aligned crops (+ flips/rot90) in the same number of worker processes; float conversion happens on the
device. Prints both rates and their ratio (target ≥ 10×); the ratio is measured in one run, on one machine.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, image_specs, machine, median_rate  # noqa: E402

from srexp.data.benchmarks import resolve  # noqa: E402
from srexp.data.datamodule import SRDataModule  # noqa: E402
from srexp.ops.resize import imresize  # noqa: E402


def item_path(item: str) -> str:
    if item.startswith("skimage:"):
        from importlib import resources

        name = item.split(":", 1)[1]
        return str(next(p for p in (resources.files("skimage") / "data").iterdir() if p.name.split(".")[0] == name))
    return item


class NaiveDataset(Dataset):
    """Read PNG, crop, bicubic-resize, to tensor — per sample."""

    def __init__(self, files: list[str], patch: int, scale: int, length: int):
        self.files, self.patch, self.scale, self.length = files, patch, scale, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int):
        rng = random.Random(k)
        with Image.open(self.files[rng.randrange(len(self.files))]) as im:
            a = np.asarray(im.convert("RGB"))
        h, w = a.shape[:2]
        i, j = rng.randrange(h - self.patch + 1), rng.randrange(w - self.patch + 1)
        hr = torch.from_numpy(a[i : i + self.patch, j : j + self.patch].copy()).permute(2, 0, 1)
        lr = imresize(hr, scale=1 / self.scale)
        return lr.float() / 255, hr.float() / 255


def rate(loader: DataLoader, batches: int, batch_size: int, warmup: int = 5) -> float:
    it, times = iter(loader), []
    for _ in range(warmup):
        next(it)
    clock = Clock()
    for _ in range(batches):
        next(it)
        times.append(clock.lap())
    return median_rate(times, batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--patch", type=int, default=96)
    args = ap.parse_args()
    specs, what = image_specs()
    files = [item_path(it) for spec in specs for it in resolve(spec)]
    n = (args.batches + 10) * args.batch_size
    naive = DataLoader(NaiveDataset(files, args.patch, args.scale, n), batch_size=args.batch_size,
                       num_workers=args.workers, persistent_workers=args.workers > 0)
    dm = SRDataModule(train=specs, val=[], scale=args.scale, patch_size=args.patch, batch_size=args.batch_size,
                      num_workers=args.workers, samples=n)
    clock = Clock()
    dm.setup("fit")
    setup_s = clock.lap()
    r_naive = rate(naive, args.batches, args.batch_size)
    r_srexp = rate(dm.train_dataloader(), args.batches, args.batch_size)
    print(f"data pipeline · {machine()} · {what} · ×{args.scale}, HR patch {args.patch}, batch {args.batch_size}, "
          f"{args.workers} workers")
    print(f"  naive per-sample (decode+crop+resize): {r_naive:10.0f} patches/s")
    print(f"  srexp DataModule (decoded once):       {r_srexp:10.0f} patches/s   (one-off setup {setup_s:.1f} s)")
    print(f"  ratio srexp / naive: {r_srexp / r_naive:.1f}×")


if __name__ == "__main__":
    main()
