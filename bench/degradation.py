"""Cost per batch of the on-device degradations, first and second order, against one training step of a net.

First order: task/degradation=blind; second order (Real-ESRGAN's): task/degradation=realesrgan. The training step is
that of a representative net on the LR they make.

    python bench/degradation.py [--batch 16] [--hr 256] [--scale 4] [--steps 12] [--train-steps 3] [--device cpu|cuda]
                                [overrides for the net, e.g. arch=edsr_baseline net.num_feat=32]

Each degradation runs on ``--steps`` consecutive steps of one seed (the second order's cost depends on its draws:
resize up or down, Gaussian or Poisson noise, …), after one warm-up call; the training step is forward + L1 +
backward + Adam on a batch of the degraded LR against its HR, timed over ``--train-steps`` after one warm-up. Printed:
median and mean ms per batch and the ratio to the training step's median. Default net: SRResNet (16 blocks × 64,
arch=srresnet); Real-ESRGAN trains RRDBNet, which is heavier, so the ratio here is an upper bound for it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hr", type=int, default=256, help="HR patch side")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12, help="degradation calls timed (consecutive steps)")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("overrides", nargs="*", help="net overrides (default arch=srresnet)")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir

    from srexp import CONF_DIR
    from srexp.nets import build_net
    from srexp.ops.degrade import RandomDegradation
    from srexp.ops.highorder import HighOrderDegradation

    dev = args.device
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        arch = [] if any(o.startswith("arch=") for o in args.overrides) else ["arch=srresnet"]
        cfg = compose("train", overrides=[*arch, f"scale={args.scale}", *args.overrides])
    torch.manual_seed(0)
    hr = torch.rand(args.batch, 3, args.hr, args.hr, device=dev)
    print(f"{machine()} · device {dev} · batch {args.batch} × 3 × {args.hr}² HR, ×{args.scale}")

    rows = {}
    for name, deg in (("first order (blind)", RandomDegradation(seed=0)),
                      ("second order (realesrgan)", HighOrderDegradation(seed=0))):
        deg(hr, args.scale, 10_000)  # warm-up
        rows[name] = [timed(lambda s=s: deg(hr, args.scale, s), dev) for s in range(args.steps)]
    lr = HighOrderDegradation(seed=0)(hr, args.scale, 0)

    net = build_net(cfg.net).to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        loss = torch.nn.functional.l1_loss(net(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    train = [timed(step, dev) for _ in range(args.train_steps)]
    t_train = statistics.median(train)
    params = sum(p.numel() for p in net.parameters())
    print(f"training step ({' '.join(arch + args.overrides)}: {params / 1e6:.2f} M params, LR "
          f"{tuple(lr.shape)}): median {t_train:.0f} ms over {len(train)}")
    for name, times in rows.items():
        med, mean = statistics.median(times), statistics.mean(times)
        print(f"{name:26s} median {med:7.1f} ms · mean {mean:7.1f} ms · min {min(times):7.1f} · max "
              f"{max(times):7.1f} · median / training step {med / t_train:.3f}")


if __name__ == "__main__":
    main()
