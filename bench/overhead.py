"""Steady-state step time of srexp training (Lightning Trainer + SRTask + the real DataModule) vs a bare PyTorch
loop on the same net, the same batches and the same optimiser.

    python bench/overhead.py [--steps 80] [--warmup 15] [--workers 0] [overrides for the net, e.g. arch=espcn]

Both runs start from the same initial weights. The bare loop iterates over batches drawn beforehand from the same
PatchDataset (uint8 → float like srexp does); srexp draws them through its DataLoader. The ratio is the median step
time of srexp over that of the bare loop, after ``--warmup`` steps (target ≤ 1.03 on CPU).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from srexp import CONF_DIR  # noqa: E402
from srexp.nets import build_net  # noqa: E402
from srexp.tasks.sr import SRTask
from srexp.ops.color import to_float  # noqa: E402


class StepTimes(L.Callback):
    def __init__(self):
        self.times, self._t = [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now


def bare(net: torch.nn.Module, batches: list, lr: float) -> list[float]:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.L1Loss()
    times, t = [], None
    net.train()
    for lr_u8, hr_u8 in batches:
        x, y = to_float(lr_u8), to_float(hr_u8)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        now = time.perf_counter()
        if t is not None:
            times.append(now - t)
        t = now
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.num_workers={args.workers}", f"data.samples={args.steps * 64}",
                                          *args.overrides])
    from hydra.utils import instantiate

    L.seed_everything(0)
    net0 = build_net(cfg.net)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    ds = dm.train_dataloader().dataset
    bs = cfg.data.batch_size
    batches = [torch.utils.data.default_collate([ds[k * bs + i] for i in range(bs)]) for k in range(args.steps)]
    lr = cfg.task.optimizer.lr

    t_bare = bare(copy.deepcopy(net0), batches, lr)[args.warmup :]

    task = SRTask(copy.deepcopy(net0), torch.nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=lr),
                  scheduler=None, scale=cfg.scale, protocol=cfg.protocol)
    times = StepTimes()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[times],
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(task, train_dataloaders=dm.train_dataloader())
    t_srexp = times.times[args.warmup :]

    mb, ms = statistics.median(t_bare), statistics.median(t_srexp)
    print(f"overhead · {machine()} · net {type(net0).__name__} ({sum(p.numel() for p in net0.parameters()):,} params)"
          f" · batch {bs}, HR patch {dm.patch_size}, ×{cfg.scale}, {args.workers} loader workers, "
          f"{len(t_srexp)} steady steps")
    print(f"  bare PyTorch loop : {mb * 1000:8.1f} ms/step")
    print(f"  srexp (Lightning) : {ms * 1000:8.1f} ms/step")
    print(f"  ratio srexp / bare: {ms / mb:.3f}")


if __name__ == "__main__":
    main()
