"""srexp-eval: PSNR/SSIM on the standard test sets under a named protocol, with the published numbers beside.

Writes ``metrics.json`` (a list of rows ``{set, scale, psnr, ssim, n_images, protocol}``, ``protocol`` being the
stamp: name, shave, how LR was made, test-images hash) in its run folder, and to ``eval.json`` when given.
``eval.metrics=[lpips,dists]`` adds perceptual metrics (``lpips``, ``lpips_vgg``, ``dists``, with ``bicubic_…``)
to every row and a column each to the table (:mod:`srexp.metrics.perceptual`).
A set that is not under the data root is one line of the table ("missing") and the other sets are still measured.
The paper column comes from the recipe's ``paper:`` block stamped in the checkpoint's config
(``conf/experiment/``), else from the arch preset's row in :mod:`srexp.metrics.published`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from srexp import CONF_DIR
from srexp.data.benchmarks import DataNotFoundError
from srexp.errors import ConfigError
from srexp.ops.device import resolve_device
from srexp.tasks.benchmark import add_paper, benchmark, markdown_table
from srexp.training.checkpoint import load_model, load_net, nets_from_checkpoint
from srexp.training.onnx import is_onnx
from srexp.metrics import get_protocol
from srexp.metrics.perceptual import PerceptualMetrics
from srexp.models import TOLERANCE_DB, metadata, model_path
from srexp.metrics.published import from_recipe
from srexp.cli import command
from srexp.cli import one_line_errors

log = logging.getLogger("srexp.eval")


def run(cfg: DictConfig) -> list[dict]:
    device = resolve_device(cfg.eval.device)
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    if cfg.get("model") and cfg.ckpt:
        raise ConfigError("give model=NAME or ckpt=PATH, not both")
    if cfg.get("model") or cfg.ckpt:
        onnx = is_onnx(cfg.ckpt or "")  # srexp-export format=onnx, run by onnxruntime
        if onnx:
            from srexp.training.onnx import OnnxNet

            net = OnnxNet(cfg.ckpt)
            tcfg, tchoices, state = net.config or {"scale": net.scale}, net.choices or {}, None
        else:
            one = cfg.eval.scales if cfg.eval.scales and len(cfg.eval.scales) == 1 else [None]
            tcfg, tchoices, state = load_model(model_path(cfg.model) if cfg.get("model") else cfg.ckpt,
                                               cfg.get("ckpt_layout"), one[0])
        method = tchoices.get("arch") if tchoices.get("arch") not in (None, "custom") else None
        protocol = cfg.eval.protocol or tcfg.get("protocol", "rgb_uint8")
        scales = list(cfg.eval.scales or (tcfg.get("data") or {}).get("scales") or [tcfg["scale"]])
        nets = net.at_scales(scales, f"ckpt={cfg.ckpt}") if onnx else nets_from_checkpoint(tcfg, state, scales)
        paper = tcfg.get("paper")
    else:
        method = choices.get("arch")
        paper = None
        protocol = cfg.eval.protocol or cfg.protocol
        scales = list(cfg.eval.scales or [cfg.scale])
        nets = {}
        for s in scales:
            scfg = OmegaConf.merge(cfg, {"scale": s})
            net = load_net(scfg.net)
            if sum(p.numel() for p in net.parameters()):
                raise ConfigError(f"arch={method} has learned parameters: pass ckpt=PATH to evaluate a trained net")
            # zero-parameter baselines run at the protocol's native channels, exactly as the papers did
            nets[s] = (net, get_protocol(protocol).native_channels)
    run_dir = Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "outputs/eval")
    save_dir = run_dir / "images" if cfg.eval.save_images else None
    metrics = PerceptualMetrics(list(cfg.eval.get("metrics") or []), cfg.eval.get("metric_weights"),
                                "eval.metric_weights")
    rows, missing = benchmark(nets, cfg.eval.sets, protocol, cfg.eval.root, device, save_dir, metrics)
    add_paper(rows, method, paper)
    print(markdown_table(rows, method, paper, missing, protocol))
    moved = check_recorded(cfg.model, rows, paper) if cfg.get("model") else []
    if not rows:
        if cfg.get("model"):  # the recorded table is the answer on a machine without the test sets
            return rows
        raise DataNotFoundError(f"none of eval.sets={list(cfg.eval.sets)} was found: {missing[0]['reason']}")
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(rows, indent=2)
    (run_dir / "metrics.json").write_text(text)
    print(f"metrics: {run_dir / 'metrics.json'}" + (f" and {cfg.eval.json}" if cfg.eval.json else ""))
    if cfg.eval.json:
        Path(cfg.eval.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.eval.json).write_text(text)
    if moved and cfg.eval.get("check"):
        raise ConfigError(f"model={cfg.model}: {'; '.join(moved)} (more than {TOLERANCE_DB} dB from the recorded "
                          "numbers: the protocol or the network code changed)")
    return rows


def check_recorded(name: str, rows: list[dict], paper=None) -> list[str]:
    """Print the shipped model's recorded numbers beside today's measurement (where the set is under the data
    root) and the paper's; return the rows that moved by more than :data:`TOLERANCE_DB`."""
    meta = metadata(name)
    now = {(r["set"], r["scale"]): r for r in rows}
    prov = meta["provenance"] or {}
    lines = ["", f"Shipped model `{name}`: trained by srexp ({prov.get('steps', 0):,} steps, {prov.get('date', '?')}, "
             f"commit {prov.get('commit', '?')}; `{prov.get('command', '')}`)",
             "", "| set | scale | recorded PSNR / SSIM | paper | Δ paper | measured now | Δ recorded |",
             "|---|---|---|---|---|---|---|"]
    moved = []
    for rec in meta["recorded"] or []:
        pub = from_recipe(paper, rec["set"], rec["scale"])
        cell = now.get((rec["set"], rec["scale"]))
        d = cell["psnr"] - rec["psnr"] if cell else None
        paper_cell, paper_delta = (f"{pub[0]:.2f}", f"{rec['psnr'] - pub[0]:+.2f}") if pub else ("–", "–")
        now_cell = f"{cell['psnr']:.4f}" if cell else "set not under the data root"
        lines.append(f"| {rec['set']} | ×{rec['scale']} | {rec['psnr']:.3f} / {rec['ssim']:.4f} | {paper_cell} | "
                     f"{paper_delta} | {now_cell} | {f'{d:+.4f}' if d is not None else '–'} |")
        if d is not None and abs(d) > TOLERANCE_DB:
            moved.append(f"{rec['set']} ×{rec['scale']} {cell['psnr']:.4f} dB vs recorded {rec['psnr']:.4f}")
    if not now:
        lines.append("\nNo test set was found to re-measure (SREXP_DATA or eval.root= a folder holding Set5/, Set14/).")
    print("\n".join(lines))
    return moved


@command("srexp-eval")  # one-line errors for unknown group choices (arch=nope)
@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
@one_line_errors("srexp-eval")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
