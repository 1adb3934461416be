"""GPU training throughput: srexp end to end vs a bare PyTorch loop, per preset and precision mode.

    python bench/gpu_train.py [--presets srcnn vdsr srresnet edsr_baseline] [--modes fp32 bf16 compile] [--steps 60]

Setting as the anchors in shared/device/README.md: HR patch 96, ×4, batch 64, patches/s. ``bare``: a plain loop on
one batch already on the GPU (the ceiling). ``srexp``: Lightning + SRTask + the real DataModule (images decoded
once, crops in workers, uint8 → float on the device) with ``perf=gpu`` (bf16 + channels_last + fused Adam) or
``perf=compile``. Prints patches/s of both, their ratio (target ≥ 0.97 for EDSR-baseline and VDSR) and the anchor.
Without a GPU it says so and measures nothing (CPU speed is bench/overhead.py's job).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SKIMAGE, machine  # noqa: E402

from srexp import CONF_DIR  # noqa: E402
from srexp.nets import build_net  # noqa: E402

ANCHORS = {  # bare PyTorch on one H200, patches/s (shared/device/README.md)
    ("srcnn", "bf16"): 23080, ("vdsr", "bf16"): 5238, ("vdsr", "compile"): 7420, ("srresnet", "fp32"): 4011,
    ("edsr_baseline", "fp32"): 6742, ("edsr_baseline", "compile"): 8480,
}
PERF = {"fp32": [], "bf16": ["perf=gpu"], "compile": ["perf=compile"]}


class Rate(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.times, self._t = warmup, [], None

    def on_train_batch_end(self, trainer, *args):
        torch.cuda.synchronize()
        now = time.perf_counter()
        if self._t is not None and trainer.global_step > self.warmup:
            self.times.append(now - self._t)
        self._t = now


def bare(net, batch: int, scale: int, mode: str, steps: int, warmup: int, channels: int) -> float:
    net = net.cuda()
    fwd = torch.compile(net) if mode == "compile" else net
    if mode != "fp32":
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    lr = torch.rand(batch, channels, 96 // scale, 96 // scale, device="cuda")
    hr = torch.rand(batch, channels, 96, 96, device="cuda")
    if mode != "fp32":
        lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
    times = []
    for k in range(steps + warmup):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode != "fp32"):
            out = fwd(lr)
            out = out[-1] if isinstance(out, list) else out
            loss = torch.nn.functional.l1_loss(out.float(), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def srexp_rate(preset: str, mode: str, steps: int, warmup: int) -> tuple[float, torch.nn.Module, int]:
    over = [f"arch={preset}", "scale=4", "data.patch_size=96", "data.batch_size=64", f"trainer.max_steps={steps + warmup}",
            "trainer.val_check_interval=1000000", "logger=none", f"data.train=[{','.join(SKIMAGE)}]", *PERF[mode]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=over)
    net = build_net(cfg.net)
    dm = instantiate(cfg.data, samples=(steps + warmup) * 64, val=[])
    task = instantiate(cfg.task, net=net)
    rate = Rate(warmup)
    trainer = L.Trainer(accelerator="gpu", devices=1, max_steps=steps + warmup, precision=cfg.trainer.precision,
                        benchmark=cfg.trainer.benchmark, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[rate], limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    return 64 / statistics.median(rate.times), build_net(cfg.net), cfg.channels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["srcnn", "vdsr", "srresnet", "edsr_baseline"])
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16", "compile"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu_train: no CUDA device here ({machine()}); nothing measured. Run this script on a GPU machine "
              f"(see bench/README.md); CPU overhead is measured by bench/overhead.py.")
        return
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    print(f"gpu_train · {machine()} · HR 96, ×4, batch 64, patches/s")
    print("| preset | mode | bare | srexp | srexp/bare | anchor (H200 bare) |")
    print("|---|---|---|---|---|---|")
    for preset in args.presets:
        for mode in args.modes:
            ours, net, ch = srexp_rate(preset, mode, args.steps, args.warmup)
            ref = bare(net, 64, 4, mode, args.steps, args.warmup, ch)
            anchor = ANCHORS.get((preset, mode))
            print(f"| {preset} | {mode} | {ref:,.0f} | {ours:,.0f} | {ours / ref:.3f} | {anchor or '–'} |", flush=True)


if __name__ == "__main__":
    main()
