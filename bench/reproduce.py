"""Train a paper recipe for a fixed wall-time budget and print test-set PSNR against elapsed time.

    python bench/reproduce.py experiment=vdsr_291 scale=3 --budget 1800 --every 120
    python bench/reproduce.py experiment=srcnn_x3_t91_short --budget 60 --every 15 --sets Set5   # CPU smoke run

Everything after the flags is a Hydra override of ``srexp-train``'s config. The run is bounded by
``trainer.max_time = --budget`` (``trainer.max_steps`` is lifted unless ``--keep-steps``) and the learning rate
decays over that budget (``task/scheduler=budget``: progress = max(step / max_steps, elapsed / max_time)), so the
curve answers "how good after N minutes" on the machine it runs on. Every ``--every`` seconds of training the
net is measured on ``--sets`` under the recipe's protocol (whole images; the measuring time is not counted as
training time but does count toward Lightning's ``max_time``). The curve is printed as it grows and written to
``<out>/reproduce.csv``; the recipe's published numbers (``paper:``) are printed beside the last row.

GPU: the script picks the GPU when there is one (``trainer.accelerator=auto``) and says which device the numbers
come from; no GPU timings have been recorded for this project yet.
"""
from __future__ import annotations

import argparse
import csv
import time
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from srexp.data.benchmarks import DataNotFoundError
from srexp.data.datamodule import load_pairs
from srexp.metrics import get_protocol, psnr_ssim
from srexp.metrics.published import reference
from srexp.ops.color import to_float


class TimedEval(L.Callback):
    """Measures PSNR on whole test images every ``every_s`` seconds of training (and at the start and the end)."""

    def __init__(self, sets: list[str], scale: int, channels: int, protocol: str, root, every_s: float,
                 out_csv: Path, resume: bool = False):
        """``resume``: the run continues from a checkpoint; the curve already in ``out_csv`` is kept and its
        clock continues from its last row."""
        self.sets, self.scale, self.channels, self.protocol, self.root = sets, scale, channels, protocol, root
        self.every_s, self.out_csv = every_s, out_csv
        self.pairs: dict[str, list] = {}
        self.rows: list[dict] = []
        if resume and out_csv.is_file():
            self.rows = [{k: float(v) if k != "step" else int(v) for k, v in r.items()} for r in
                         csv.DictReader(open(out_csv))]
        self.offset = (self.rows[-1]["wall_s"], self.rows[-1]["train_s"]) if self.rows else (0.0, 0.0)
        self.t0 = self.last = 0.0
        self.eval_s = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        for name in self.sets:
            try:
                self.pairs[name] = load_pairs([name], self.root, self.scale, self.channels, self.protocol)
            except DataNotFoundError as e:
                print(f"reproduce: {name} skipped: {e}", flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = self.last = time.monotonic()
        if not self.rows:
            self.measure(trainer, pl_module)

    @torch.no_grad()
    def measure(self, trainer, pl_module) -> None:
        start = time.monotonic()
        was_training = pl_module.training
        pl_module.eval()
        proto = get_protocol(self.protocol)
        row = {"wall_s": round(start - self.t0 + self.offset[0], 2),
               "train_s": round(start - self.t0 - self.eval_s + self.offset[1], 2), "step": trainer.global_step}
        for name, pairs in self.pairs.items():
            psnrs = []
            for p in pairs:
                sr = pl_module(to_float(p.lr[None].to(pl_module.device)))
                psnrs.append(psnr_ssim(proto.sr_to_y(sr).cpu(), p.ref_y[None], self.scale)[0].item())
            row[name] = round(sum(psnrs) / len(psnrs), 3)
        pl_module.train(was_training)
        self.eval_s += time.monotonic() - start
        self.last = time.monotonic()
        self.rows.append(row)
        print("reproduce: " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        self.out_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[-1]))
            w.writeheader()
            w.writerows(self.rows)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.rows or self.rows[-1]["step"] != trainer.global_step:
            self.measure(trainer, pl_module)


def device_line() -> str:
    if torch.cuda.is_available():
        return f"device: cuda ({torch.cuda.get_device_name(0)})"
    return "device: cpu — no GPU here: these are CPU numbers (run on a GPU machine for the GPU curve)"


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from srexp import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
        sched = cfg.task.get("scheduler")
        if sched is not None and not str(sched.get("_target_", "")).endswith("BudgetLR"):
            cfg = hydra_compose("train", overrides=[*overrides, "task/scheduler=budget"])  # decay over the budget
    return cfg


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, required=True, help="training wall time, seconds")
    p.add_argument("--every", type=float, default=60.0, help="seconds of training between measurements")
    p.add_argument("--sets", default="Set5,Set14", help="comma-separated test sets (named sets or folders)")
    p.add_argument("--out", default=None, help="run folder (default: outputs/reproduce/<time>)")
    p.add_argument("--keep-steps", action="store_true", help="keep the recipe's trainer.max_steps as a second bound")
    args, overrides = p.parse_known_args(argv)
    m, sec = divmod(max(int(round(args.budget)), 1), 60)
    h, m = divmod(m, 60)
    budget = f"{h // 24:02d}:{h % 24:02d}:{m:02d}:{sec:02d}"  # Lightning's DD:HH:MM:SS
    overrides = [*overrides, f"trainer.max_time={budget}"] + ([] if args.keep_steps else ["trainer.max_steps=-1"])
    cfg = compose(overrides)
    out = Path(args.out or f"outputs/reproduce/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    sets = [s for s in args.sets.split(",") if s]
    channels = int(cfg.net.get("in_channels", cfg.channels))
    timed = TimedEval(sets, cfg.scale, channels, cfg.protocol, cfg.data.get("root"), args.every, out / "reproduce.csv")
    print(f"reproduce: {device_line()}; budget {args.budget:g} s; measuring {', '.join(sets)} every {args.every:g} s "
          f"(×{cfg.scale}, {cfg.protocol})", flush=True)
    from srexp.cli.train import run

    run(cfg, run_dir=str(out), callbacks=[timed])
    paper = OmegaConf.to_container(cfg.paper) if cfg.get("paper") else None
    if timed.rows:
        last = timed.rows[-1]
        for name in sets:
            pub, proto = reference(paper, None, name, cfg.scale)
            if name in last:
                tail = f"; paper {pub[0]:.2f} ({proto})" if pub else ""
                print(f"reproduce: {name} ×{cfg.scale}: {last[name]:.3f} dB after {last['train_s']:.0f} s of "
                      f"training, {last['step']} steps{tail}", flush=True)
    return timed.rows


if __name__ == "__main__":
    main()
