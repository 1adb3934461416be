"""Regenerate docs/reproduction.md: train srexp's CPU reproduction recipes, record each one's PSNR-vs-time curve,
test it on Set5/Set14 (B100/Urban100 when under the data root), ship its weights and write the table.

    SREXP_DATA=/data python bench/reproduction.py                # every recipe, two at a time, one thread each
    python bench/reproduction.py --only fsrcnn_x3 --jobs 1 --threads 2
    python bench/reproduction.py --table-only                    # the table and plots from the records

Resumable: a recipe whose record (docs/reproduction/NAME.json) exists is skipped (``--force`` retrains it); a
recipe whose run folder (outputs/reproduction/NAME) holds a last.ckpt continues from it, its curve and clock
included. The runs are bounded by steps (the recipes' ``trainer.max_steps``), so a regeneration on another or a
busier machine trains the same networks; only the times move. Each finished recipe writes:

- ``srexp/models/NAME.safetensors``: the weights, with provenance (recipe, overrides, commit, steps, data hash)
  and the recorded test numbers in the metadata (``srexp-eval model=NAME``; tests/test_models.py re-checks them);
- ``docs/reproduction/NAME.json`` (the record), ``NAME.csv`` (the curve) and ``NAME.png`` (the plot).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "reproduction"
RUNS = REPO / "outputs" / "reproduction"
PAGE = REPO / "docs" / "reproduction.md"
MODELS = REPO / "srexp" / "models"

# name -> srexp-train overrides. The recipes carry everything else (conf/experiment/*_t91_cpu.yaml).
RECIPES: dict[str, list[str]] = {
    "fsrcnn_x2": ["experiment=fsrcnn_t91_cpu", "scale=2"],
    "fsrcnn_x3": ["experiment=fsrcnn_t91_cpu", "scale=3"],
    "fsrcnn_x4": ["experiment=fsrcnn_t91_cpu", "scale=4"],
    "espcn_x3": ["experiment=espcn_t91_cpu", "scale=3"],
}
# The GPU half (--gpu): bounded by wall time (the recipe's trainer.max_time), on one GPU, with perf=gpu.
GPU_RECIPES: dict[str, list[str]] = {
    "vdsr_x2": ["experiment=vdsr_gpu_fast", "scale=2", "perf=gpu"],
    "vdsr_x3": ["experiment=vdsr_gpu_fast", "scale=3", "perf=gpu"],
    "vdsr_x4": ["experiment=vdsr_gpu_fast", "scale=4", "perf=gpu"],
}
CPU_NAMES = frozenset(RECIPES)
TEST_SETS = ["Set5", "Set14", "B100", "Urban100"]
WITHIN_DB = 0.1  # "reproduced": within 0.1 dB of the paper, or above it


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def files_hash(folder: Path) -> str:
    """sha1 over the training set's file names and bytes (sorted): which T91 the weights were trained on."""
    h = hashlib.sha1()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = f"{torch.cuda.get_device_name(0)}; " if torch.cuda.is_available() else ""
    return f"{gpu}{cpu}, {os.cpu_count()} cores; torch {torch.__version__}"


def train_one(name: str, every_s: float) -> None:
    """Train (or resume) one recipe with the curve, then export, test and record it. Runs in its own process."""
    import torch
    from omegaconf import OmegaConf

    sys.path.insert(0, str(REPO / "bench"))
    from reproduce import TimedEval, compose

    from srexp.training.checkpoint import load_model, save_safetensors
    from srexp.cli.train import run

    out = RUNS / name
    resume = (out / "checkpoints" / "last.ckpt").is_file()
    overrides = [*RECIPES[name], "logger=csv", "callbacks.progress_bar=null", f"resume={str(resume).lower()}"]
    cfg = compose(overrides)
    sets = ["Set5"]
    channels = int(cfg.net.get("in_channels", cfg.channels))
    timed = TimedEval(sets, cfg.scale, channels, cfg.protocol, cfg.data.get("root"), every_s, out / "curve.csv",
                      resume=resume)
    print(f"reproduction: {name}: {'resuming' if resume else 'training'} "
          f"({' '.join(RECIPES[name])}, {torch.get_num_threads()} threads)", flush=True)
    t0, commit = time.time(), git_commit()  # the code this process imported
    summary = run(cfg, run_dir=str(out), callbacks=[timed])
    last = out / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    if step != summary["steps"] and cfg.trainer.max_time is None:
        raise SystemExit(f"reproduction: {last} is at step {step}, the run ended at {summary['steps']}: make "
                         "trainer.max_steps a multiple of callbacks.last_checkpoint.every_n_train_steps")
    config, choices, state = load_model(last)  # the final weights
    root = Path(cfg.data.root)
    provenance = {
        "name": name, "command": f"python bench/reproduction.py {'' if name in CPU_NAMES else '--gpu '}--only {name}",
        "overrides": RECIPES[name], "commit": commit, "steps": summary["steps"],
        "train_s": round(timed.rows[-1]["train_s"], 1), "date": str(date.today()), "machine": machine(),
        "threads": torch.get_num_threads(), "train_data": {s: files_hash(root / s) for s in cfg.data.train},
    }
    # CPU recipes ship (small nets, srexp/models/); a GPU recipe's weights stay in its run folder
    model = (MODELS if name in CPU_NAMES else out) / f"{name}.safetensors"
    save_safetensors(config, choices, state, model, provenance=provenance)
    rows = measure(model, str(root))  # the written file, through srexp-eval's own path
    save_safetensors(config, choices, state, model, provenance=provenance, recorded=rows)
    paper = OmegaConf.to_container(cfg.paper) if cfg.get("paper") else None
    record = {**provenance, "wall_s": round(time.time() - t0, 1), "scale": cfg.scale, "protocol": cfg.protocol,
              "params": summary["params"], "rows": with_paper(rows, paper, cfg.scale), "curve": f"{name}.csv",
              "paper_source": (paper or {}).get("source")}
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"{name}.csv").write_text((out / "curve.csv").read_text())
    (DOCS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"reproduction: {name}: recorded {DOCS / (name + '.json')}", flush=True)


def measure(model: Path, root: str) -> list[dict]:
    """A written model's numbers on every test set present, as ``srexp-eval model=NAME`` measures them."""
    from srexp.tasks.benchmark import benchmark
    from srexp.training.checkpoint import load_model, nets_from_checkpoint

    tcfg, _, state = load_model(model)
    nets = nets_from_checkpoint(tcfg, state, [tcfg["scale"]])
    rows, _ = benchmark(nets, TEST_SETS, tcfg["protocol"], root, "cpu")
    return [{k: r[k] for k in ("set", "scale", "psnr", "ssim", "n_images")} | {"protocol": r["protocol"]}
            for r in rows]


def with_paper(rows: list[dict], paper, scale: int) -> list[dict]:
    from srexp.metrics.published import from_recipe

    out = []
    for r in rows:
        pub = from_recipe(paper, r["set"], scale)
        out.append({**{k: r[k] for k in ("set", "psnr", "ssim", "n_images")},
                    "paper": pub[0] if pub else None, "delta": round(r["psnr"] - pub[0], 3) if pub else None})
    return out


def plot(record: dict, curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    t = [float(r["train_s"]) / 60 for r in curve]
    ax.plot(t, [float(r["Set5"]) for r in curve], marker=".", label="srexp (Set5, y_float)")
    paper = next((r["paper"] for r in record["rows"] if r["set"] == "Set5" and r["paper"]), None)
    if paper:
        ax.axhline(paper, color="k", ls="--", lw=1, label=f"paper {paper:.2f}")
        ax.axhspan(paper - WITHIN_DB, paper, color="g", alpha=0.12, label=f"within {WITHIN_DB} dB")
    lo = min(float(r["Set5"]) for r in curve[1:] or curve)
    ax.set_ylim(max(lo - 0.2, (paper or lo) - 3), (paper or lo) + 0.6)
    ax.set_xlabel("training time, minutes (CPU, %d thread%s)" % (record["threads"], "s" * (record["threads"] > 1)))
    ax.set_ylabel("Set5 PSNR (dB)")
    ax.set_title(f"{record['name']}: Set5 ×{record['scale']} vs training time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def time_to(curve: list[dict], target: float) -> float | None:
    return next((float(r["train_s"]) for r in curve if float(r["Set5"]) >= target), None)


def write_table() -> Path:
    """docs/reproduction.md's table section from the records (the prose around it stays as written)."""
    records = [json.loads((DOCS / f"{n}.json").read_text()) for n in [*RECIPES, *GPU_RECIPES]
               if (DOCS / f"{n}.json").is_file()]
    lines = ["| recipe | scale | set | ours | paper | Δ | within 0.1 dB | training time | steps | machine | date | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ttp = ["| recipe | Set5 at 5 min | at 15 min | at 30 min | final | time to paper − 0.5 dB | time to paper − 0.1 dB |",
           "|---|---|---|---|---|---|---|"]
    for rec in records:
        curve = list(csv.DictReader(open(DOCS / rec["curve"])))
        plot(rec, curve, DOCS / f"{rec['name']}.png")
        for r in rec["rows"]:
            ok = "—" if r["paper"] is None else ("**yes**" if r["delta"] >= -WITHIN_DB else "no")
            paper = f"{r['paper']:.2f}" if r["paper"] else "–"
            delta = f"{r['delta']:+.3f}" if r["delta"] is not None else "–"
            lines.append(f"| {rec['name']} | ×{rec['scale']} | {r['set']} | {r['psnr']:.3f} | {paper} | {delta} | {ok} "
                         f"| {rec['train_s'] / 60:.1f} min | {rec['steps']:,} | {rec['threads']} thread(s), "
                         f"{rec['machine'].split(';')[0]} | {rec['date']} | `{rec['command']}` |")
        at = []
        for minutes in (5, 15, 30):
            before = [r for r in curve if float(r["train_s"]) <= minutes * 60]
            at.append(f"{float(before[-1]['Set5']):.2f}" if before and float(curve[-1]["train_s"]) >= minutes * 60
                      else "–")
        paper = next((r["paper"] for r in rec["rows"] if r["set"] == "Set5" and r["paper"]), None)
        reach = [time_to(curve, paper - d) if paper else None for d in (0.5, WITHIN_DB)]
        ttp.append(f"| {rec['name']} | {' | '.join(at)} | {float(curve[-1]['Set5']):.2f} | "
                   + " | ".join(f"{x / 60:.1f} min" if x is not None else "not reached" for x in reach) + " |")
    doc = PAGE
    text = doc.read_text() if doc.is_file() else "# Reproduction\n\n<!-- table -->\n<!-- /table -->\n"
    head, rest = text.split("<!-- table -->", 1)
    tail = rest.split("<!-- /table -->", 1)[1]
    body = "\n".join(lines) + "\n\nTime to PSNR (Set5, from the curves; training time, evaluation excluded):\n\n" \
        + "\n".join(ttp) + "\n\nCurves: " + ", ".join(f"[{r['name']}](reproduction/{r['name']}.png)" for r in records)
    doc.write_text(f"{head}<!-- table -->\n{body}\n<!-- /table -->{tail}")
    write_summary(records)
    return doc


def write_summary(records: list[dict]) -> None:
    """The README's short version: Set5/Set14 ours | paper | Δ per shipped model."""
    lines = ["| model | Set5 ours | paper | Δ | Set14 ours | paper | Δ | training (CPU) |", "|---|---|---|---|---|---|---|---|"]
    for rec in records:
        if rec["name"] not in CPU_NAMES:
            continue
        cells = []
        for set_name in ("Set5", "Set14"):
            r = next((r for r in rec["rows"] if r["set"] == set_name), None)
            cells += ([f"{r['psnr']:.2f}", f"{r['paper']:.2f}" if r["paper"] else "–",
                       f"{r['delta']:+.2f}" if r["delta"] is not None else "–"] if r else ["–"] * 3)
        lines.append(f"| `{rec['name']}` | {' | '.join(cells)} | {rec['train_s'] / 60:.0f} min, {rec['steps']:,} steps |")
    readme = REPO / "README.md"
    text = readme.read_text()
    if "<!-- reproduction summary -->" in text:
        head, rest = text.split("<!-- reproduction summary -->", 1)
        tail = rest.split("<!-- /reproduction summary -->", 1)[1]
        readme.write_text(f"{head}<!-- reproduction summary -->\n" + "\n".join(lines)
                          + f"\n<!-- /reproduction summary -->{tail}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="comma-separated recipe names (default: all: %s)" % ", ".join(RECIPES))
    p.add_argument("--jobs", type=int, default=2, help="recipes trained at once (each in its own process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per recipe (1 each, 2 at a time, is the "
                   "fastest use of 2 cores for these small nets: bench/cpu_train.py)")
    p.add_argument("--every", type=float, default=60.0, help="seconds of training between Set5 measurements")
    p.add_argument("--force", action="store_true", help="retrain recipes that already have a record")
    p.add_argument("--table-only", action="store_true", help="rebuild docs/reproduction.md and the plots only")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gpu", action="store_true", help="the GPU recipes (%s), one at a time" % ", ".join(GPU_RECIPES))
    args = p.parse_args(argv)
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            p.error("--gpu: no CUDA device here (the GPU recipes are bounded by wall time on one GPU)")
        RECIPES.clear()
        RECIPES.update(GPU_RECIPES)
        args.jobs, args.threads, args.every = 1, max(args.threads, 8), min(args.every, 15.0)
    names = [n for n in (args.only.split(",") if args.only else RECIPES) if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"--only {','.join(unknown)}: unknown recipe (valid: {', '.join(RECIPES)})")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        for n in names:
            train_one(n, args.every)
        return
    if not args.table_only:
        todo = [n for n in names if args.force or not (DOCS / f"{n}.json").is_file()]
        if args.force:
            for n in todo:
                (DOCS / f"{n}.json").unlink(missing_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "WANDB_MODE": "disabled"}
        procs: list[subprocess.Popen] = []
        RUNS.mkdir(parents=True, exist_ok=True)
        for n in todo:
            while len([q for q in procs if q.poll() is None]) >= args.jobs:
                time.sleep(5)
            log = open(RUNS / f"{n}.log", "a")
            print(f"reproduction: {n} -> log {RUNS / (n + '.log')}", flush=True)
            procs.append(subprocess.Popen([sys.executable, __file__, "--child", "--only", n, "--threads",
                                           str(args.threads), "--every", str(args.every), *(["--gpu"] * args.gpu)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        failed = [n for n, q in zip(todo, procs) if q.wait() != 0]
        if failed:
            print(f"reproduction: failed: {', '.join(failed)} (logs in {RUNS}); rerun to resume them", flush=True)
    print(f"reproduction: wrote {write_table()}", flush=True)


if __name__ == "__main__":
    main()
