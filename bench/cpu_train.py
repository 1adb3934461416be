"""Where a CPU training step of the reproduction recipes goes, and what makes it faster — as ratios in one run.

    python bench/cpu_train.py                       # FSRCNN ×3 and ESPCN ×3, the recipes' batch and patch
    python bench/cpu_train.py --arch fsrcnn --scale 2 --steps 30

For each configuration it times forward, backward and optimizer step of srexp's own net (built from the preset)
on the recipes' batch (16) and LR patch (FSRCNN 16, ESPCN 17), in this process, and prints milliseconds per step, LR pixels per second and the ratio to
the first (baseline) row:

- ``deconv`` vs ``subpixel``: FSRCNN's transposed conv run as ConvTranspose2d or as its exact sub-pixel
  equivalent (``net.upsample.impl``);
- ``channels_last``: NHWC weights and batches (``task.channels_last``);
- threads 1 vs 2, and two 1-thread processes side by side (``--pair``: what bench/reproduction.py does);
- the data side: one batch of srexp's PatchDataset (crop, flips, collate) in the training process.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402


def build(arch: str, scale: int, impl: str | None):
    from hydra import compose, initialize_config_dir

    from srexp import CONF_DIR
    from srexp.nets import build_net

    over = [f"arch={arch}", f"scale={scale}"] + ([f"net.upsample.impl={impl}"] if impl else [])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=over)
    return build_net(cfg.net)


def time_steps(net, batch: int, lr_patch: int, scale: int, steps: int, channels_last: bool,
               compile: bool = False) -> dict:
    x = torch.rand(batch, 1, lr_patch, lr_patch)
    y = torch.rand(batch, 1, lr_patch * scale, lr_patch * scale)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    t_compile = time.perf_counter()
    if compile:
        net = torch.compile(net)
        F.mse_loss(net(x), y).backward()  # the compilation itself, left out of the step time
    t_compile = time.perf_counter() - t_compile
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for k in range(steps + 3):
        t0 = time.perf_counter()
        loss = F.mse_loss(net(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if k >= 3:  # warm-up steps left out
            for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[name] += dt / steps
    total = sum(parts.values())
    return {"compile_s": t_compile, "ms": total * 1e3, "lr_px_s": batch * lr_patch * lr_patch / total, **{k: v * 1e3 for k, v in parts.items()}}


def data_ms(scale: int, lr_patch: int, batch: int) -> float | None:
    from srexp.data.benchmarks import DataNotFoundError
    from srexp.data.datamodule import PatchDataset, load_pairs

    try:
        pairs = load_pairs(["T91"], os.environ.get("SREXP_DATA"), scale, 1, "y_float", min_hr=lr_patch * scale,
                           keep_ref=False)
    except DataNotFoundError:
        return None
    ds = PatchDataset(pairs, lr_patch * scale, scale, 10**7)
    t = time.perf_counter()
    for b in range(30):
        default_collate([ds[k] for k in range(b * batch, (b + 1) * batch)])
    return (time.perf_counter() - t) / 30 * 1e3


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=None, help="fsrcnn | espcn (default: both)")
    p.add_argument("--scale", type=int, default=3)
    p.add_argument("--batch", type=int, default=None, help="default: the recipes' 16")
    p.add_argument("--lr-patch", type=int, default=None, help="default: the recipe's (FSRCNN 16, ESPCN 17)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one 1-thread process of the --pair measurement
        torch.set_num_threads(1)
        arch, impl = args.child.split(":")
        r = time_steps(build(arch, args.scale, impl or None), args.batch, args.lr_patch, args.scale, args.steps, True)
        print(r["lr_px_s"])
        return
    print(f"# {machine()}")
    for arch in ([args.arch] if args.arch else ["fsrcnn", "espcn"]):
        batch = args.batch or 16
        lr_patch = args.lr_patch or (16 if arch == "fsrcnn" else 17)
        impls = ["deconv", "subpixel"] if arch == "fsrcnn" else [None]
        print(f"\n## {arch} ×{args.scale}, batch {batch}, LR patch {lr_patch}")
        print("| impl | channels_last | threads | ms/step | fwd | bwd | opt | LR px/s | ratio |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        base = None
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for impl in impls:
                for cl in (False, True):
                    r = time_steps(build(arch, args.scale, impl), batch, lr_patch, args.scale, args.steps, cl)
                    base = base or r["lr_px_s"]
                    print(f"| {impl or '–'} | {cl} | {threads} | {r['ms']:.1f} | {r['forward']:.1f} | "
                          f"{r['backward']:.1f} | {r['optimizer']:.1f} | {r['lr_px_s'] / 1e3:.0f}k | "
                          f"{r['lr_px_s'] / base:.2f} |", flush=True)
        impl = impls[-1] or ""
        try:  # torch.compile (inductor, C++ codegen on CPU) on the best eager configuration, 1 thread
            r = time_steps(build(arch, args.scale, impl or None), batch, lr_patch, args.scale, args.steps, True, True)
            print(f"| {impl or '–'} + torch.compile | True | 1 | {r['ms']:.1f} | {r['forward']:.1f} | "
                  f"{r['backward']:.1f} | {r['optimizer']:.1f} | {r['lr_px_s'] / 1e3:.0f}k | {r['lr_px_s'] / base:.2f} "
                  f"(compiling took {r['compile_s']:.0f} s) |", flush=True)
        except Exception as e:  # noqa: BLE001 - a missing compiler is a result too
            print(f"| torch.compile | – | 1 | failed: {str(e).splitlines()[0][:120]} |")
        cmd = [sys.executable, __file__, "--child", f"{arch}:{impl}", "--scale", str(args.scale), "--batch",
               str(batch), "--lr-patch", str(lr_patch), "--steps", str(args.steps)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        rates = [float(q.communicate()[0].strip().splitlines()[-1]) for q in procs]
        print(f"| {impl or '–'} | True | 2 × 1 (two processes) | – | – | – | – | {sum(rates) / 1e3:.0f}k in all | "
              f"{sum(rates) / base:.2f} |")
        torch.set_num_threads(1)
        d = data_ms(args.scale, lr_patch, batch)
        print("\ndata: one batch of PatchDataset + collate (1 thread): "
              + (f"{d:.1f} ms" if d is not None else "T91 not under SREXP_DATA: not measured"))


if __name__ == "__main__":
    main()
