"""Evaluation on the standard test sets through the shared validation code (:class:`srexp.tasks.sr.SRValidation`),
with the published numbers beside: used by srexp-eval and after training."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from srexp.data.benchmarks import DataNotFoundError
from srexp.data.datamodule import load_pairs
from srexp.data.images import save_image
from srexp.metrics import images_hash
from srexp.metrics.perceptual import LABELS, METRICS, PerceptualMetrics
from srexp.metrics.published import reference
from srexp.tasks.sr import Evaluator
from srexp.nets.strategies import at_scale

log = logging.getLogger("srexp.eval")


@torch.no_grad()
def evaluate_set(net: nn.Module, set_name: str, scale: int, protocol: str, channels: int, root, device,
                 save_dir: Path | None = None, metrics: PerceptualMetrics | None = None) -> dict:
    """One set at one scale, measured by :class:`~srexp.tasks.sr.Evaluator` (the validation code of training):
    the set means, bicubic's beside them, the per-image values and the protocol stamp. ``metrics``: the
    perceptual metrics to measure as well (LPIPS, DISTS)."""
    pairs = load_pairs([set_name], root, scale, channels, protocol)
    ev = Evaluator(net, scale, protocol, metrics or ()).to(device).eval()
    for i, p in enumerate(pairs):
        lr, ref_y, _ = ev.on_after_batch_transfer((p.lr[None].to(device), p.ref_y[None].to(device), None))
        hr = p.hr[None].to(device) if ev.perceptual else None
        sr = ev.measure(lr, ref_y, torch.tensor([i], device=device), hr=hr)
        if save_dir is not None:
            (save_dir / set_name / f"x{scale}").mkdir(parents=True, exist_ok=True)
            save_image(sr[0].cpu(), save_dir / set_name / f"x{scale}" / f"{p.name}.png")
    means, per_image = ev.validation_result()
    return {
        "set": set_name, "scale": scale, **{k: v.item() for k, v in means.items()}, "n_images": len(pairs),
        "protocol": ev.protocol.stamp(scale, images_hash(p.ref_y for p in pairs)),
        "per_image": {pairs[r["index"]].name: {k: v for k, v in r.items() if k != "index"} for r in per_image},
    }


def benchmark(nets: dict[int, tuple[nn.Module, int]], sets, protocol: str, root, device,
              save_dir: Path | None = None, metrics: PerceptualMetrics | None = None) -> tuple[list[dict], list[dict]]:
    """Every set × scale: (measured rows, missing rows ``{set, scale, reason}``). A set that cannot be found is
    reported, not fatal, so the table of the others still comes out. ``metrics``: perceptual metrics beside
    PSNR/SSIM, built once for every set."""
    rows, missing = [], []
    for set_name in sets:
        for s, (net, ch) in nets.items():
            try:
                row = evaluate_set(net.to(device), set_name, s, protocol, ch, root, device, save_dir, metrics)
            except DataNotFoundError as e:
                missing.append({"set": set_name, "scale": s, "reason": str(e)})
                log.warning("%s ×%d: missing (%s)", set_name, s, e)
                continue
            rows.append(row)
            log.info("%s ×%d: %.3f dB / %.4f (%d images)", set_name, s, row["psnr"], row["ssim"], row["n_images"])
    return rows, missing


def add_paper(rows: list[dict], method: str | None, paper=None) -> None:
    """Stamp each row with the published numbers (and the protocol they were measured under)."""
    for row in rows:
        pub, proto = reference(paper, method, row["set"], row["scale"])
        if method:
            row["method"] = method
        row["paper_psnr"], row["paper_ssim"] = pub if pub else (None, None)
        row["paper_protocol"] = proto if pub else None


def markdown_table(rows: list[dict], method: str | None, paper=None, missing: list[dict] = (),
                   protocol: str | None = None) -> str:
    """ours | paper | Δ per set and scale; a Δ measured under another protocol than the paper's is marked †.
    Perceptual metrics the rows carry (LPIPS, DISTS; lower is better) get a column each, bicubic's beside."""
    extra = [m for m in METRICS if any(m in r for r in rows)]
    more = [f"{LABELS[m]} ↓ | bicubic {LABELS[m]}" for m in extra]
    lines = ["| set | scale | PSNR | SSIM | bicubic PSNR | paper PSNR | paper SSIM | Δ PSNR |" + "".join(
             f" {c} |" for c in more), "|---|---|---|---|---|---|---|---|" + "---|---|" * len(extra)]
    order = {name: k for k, name in enumerate(dict.fromkeys(r["set"] for r in [*rows, *missing]))}
    entries = sorted([*rows, *missing], key=lambda r: (order[r["set"]], r["scale"]))
    proto = protocol or (rows[0]["protocol"]["name"] if rows else "?")
    others = set()
    for r in entries:
        pub, pub_proto = reference(paper, method, r["set"], r["scale"])
        pp = f"{pub[0]:.2f}" if pub else "–"
        psim = f"{pub[1]:.4f}" if pub and pub[1] is not None else "–"
        if "reason" in r:
            lines.append(f"| {r['set']} | ×{r['scale']} | missing | – | – | {pp} | {psim} | – |" + " – | – |" * len(extra))
            continue
        same = pub_proto == r["protocol"]["name"]
        if pub and not same:
            others.add(pub_proto or "an unknown protocol")
        delta = f"{r['psnr'] - pub[0]:+.2f}" + ("" if same else " †") if pub else "–"
        bic = f"{r['bicubic_psnr']:.3f}" if "bicubic_psnr" in r else "–"
        lines.append(f"| {r['set']} | ×{r['scale']} | {r['psnr']:.3f} | {r['ssim']:.4f} | {bic} | {pp} | {psim} | "
                     f"{delta} |" + "".join(f" {r[m]:.4f} | {r[f'bicubic_{m}']:.4f} |" for m in extra))
    lines.append("")
    lines.append(f"Protocol `{proto}`: Y channel, shave = scale, SR quantised to 8 bits."
                 + (f" † the paper measured under `{'`, `'.join(sorted(others))}`." if others else ""))
    for name in dict.fromkeys(r["set"] for r in missing):
        reason = next(r["reason"] for r in missing if r["set"] == name)
        lines.append(f"Missing {name}: {reason.split('; expected')[0]} (`srexp-data list` shows what is there, "
                     f"`srexp-data download {name}` fetches it).")
    return "\n".join(lines)


@torch.no_grad()
def benchmark_run(cfg: DictConfig, net: nn.Module, run_dir: str | Path, method: str | None = None) -> dict:
    """After training: the standard table (``test_sets``, at ``data.scales`` or ``scale``) for the trained net,
    ours vs the recipe's ``paper:`` numbers; printed and written to ``<run>/benchmark.json``."""
    was_training = net.training
    net.eval()
    scales = list(cfg.data.get("scales") or [cfg.scale])
    channels = int(cfg.net.get("in_channels", cfg.channels))
    nets = {s: (at_scale(net, s, f"data.scales={scales}: the net is built for ×{cfg.scale} only"), channels)
            for s in scales}
    device = next(net.parameters()).device
    task = cfg.get("task") or {}
    metrics = PerceptualMetrics(list(task.get("metrics") or []), task.get("metric_weights"), "task.metric_weights")
    rows, missing = benchmark(nets, cfg.test_sets, cfg.protocol, cfg.data.get("root"), device, metrics=metrics)
    paper = OmegaConf.to_container(cfg.paper) if cfg.get("paper") else None
    add_paper(rows, method, paper)
    print(markdown_table(rows, method, paper, missing, cfg.protocol))
    out = {"rows": rows, "missing": missing}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "benchmark.json").write_text(json.dumps(out, indent=2))
    net.train(was_training)
    return out
