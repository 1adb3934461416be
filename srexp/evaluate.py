"""srexp-eval: PSNR/SSIM on the standard test sets under a named protocol, with the published numbers beside.

Writes ``metrics.json`` (a list of rows ``{set, scale, psnr, ssim, n_images, protocol}``, ``protocol`` being the
stamp: name, shave, how LR was made, test-images hash) in its run folder, and to ``eval.json`` when given.
A set that is not under the data root is one line of the table ("missing") and the other sets are still measured.
The paper column comes from the recipe's ``paper:`` block stamped in the checkpoint's config
(``conf/experiment/``), else from the arch preset's row in :mod:`srexp.published`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from srexp import CONF_DIR
from srexp.data.benchmarks import DataNotFoundError
from srexp.data.datamodule import load_pairs
from srexp.data.images import save_image
from srexp.errors import ConfigError
from srexp.nets import build_net
from srexp.metrics import get_protocol, images_hash, psnr_ssim
from srexp.models import TOLERANCE_DB, metadata, model_path
from srexp.published import from_recipe, reference
from srexp.cli import command
from srexp.runtime import one_line_errors
from srexp.tasks.sr import to_float

log = logging.getLogger("srexp.eval")


def load_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a srexp-train checkpoint (``weights_only=True``) or a srexp-export
    ``.safetensors``; the EMA weights when the run kept them. See :func:`srexp.export.load_model`."""
    from srexp.export import load_model

    return load_model(path)


def load_net(net_cfg: DictConfig | dict, state: dict | None = None) -> nn.Module:
    net = build_net(net_cfg)
    if state is not None:
        net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def evaluate_set(net: nn.Module, set_name: str, scale: int, protocol: str, channels: int, root, device,
                 save_dir: Path | None = None) -> dict:
    proto = get_protocol(protocol)
    pairs = load_pairs([set_name], root, scale, channels, protocol)
    psnrs, ssims = [], []
    for p in pairs:
        sr = net(to_float(p.lr[None].to(device)))
        sr = sr[-1] if isinstance(sr, (list, tuple)) else sr
        ps, ss = psnr_ssim(proto.sr_to_y(sr).cpu(), p.ref_y[None], scale)
        psnrs.append(ps.item())
        ssims.append(ss.item())
        if save_dir is not None:
            (save_dir / set_name / f"x{scale}").mkdir(parents=True, exist_ok=True)
            save_image(sr[0].cpu(), save_dir / set_name / f"x{scale}" / f"{p.name}.png")
    return {
        "set": set_name, "scale": scale, "psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims),
        "n_images": len(pairs), "protocol": proto.stamp(scale, images_hash(p.ref_y for p in pairs)) | {"name": protocol},
        "per_image": {p.name: {"psnr": a, "ssim": b} for p, a, b in zip(pairs, psnrs, ssims)},
    }


def benchmark(nets: dict[int, tuple[nn.Module, int]], sets, protocol: str, root, device,
              save_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Every set × scale: (measured rows, missing rows ``{set, scale, reason}``). A set that cannot be found is
    reported, not fatal, so the table of the others still comes out."""
    rows, missing = [], []
    for set_name in sets:
        for s, (net, ch) in nets.items():
            try:
                row = evaluate_set(net.to(device), set_name, s, protocol, ch, root, device, save_dir)
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
    """ours | paper | Δ per set and scale; a Δ measured under another protocol than the paper's is marked †."""
    lines = [f"| set | scale | PSNR | SSIM | paper PSNR | paper SSIM | Δ PSNR |", "|---|---|---|---|---|---|---|"]
    order = {name: k for k, name in enumerate(dict.fromkeys(r["set"] for r in [*rows, *missing]))}
    entries = sorted([*rows, *missing], key=lambda r: (order[r["set"]], r["scale"]))
    proto = protocol or (rows[0]["protocol"]["name"] if rows else "?")
    others = set()
    for r in entries:
        pub, pub_proto = reference(paper, method, r["set"], r["scale"])
        pp = f"{pub[0]:.2f}" if pub else "–"
        psim = f"{pub[1]:.4f}" if pub and pub[1] is not None else "–"
        if "reason" in r:
            lines.append(f"| {r['set']} | ×{r['scale']} | missing | – | {pp} | {psim} | – |")
            continue
        same = pub_proto == r["protocol"]["name"]
        if pub and not same:
            others.add(pub_proto or "an unknown protocol")
        delta = f"{r['psnr'] - pub[0]:+.2f}" + ("" if same else " †") if pub else "–"
        lines.append(f"| {r['set']} | ×{r['scale']} | {r['psnr']:.3f} | {r['ssim']:.4f} | {pp} | {psim} | {delta} |")
    lines.append("")
    lines.append(f"Protocol `{proto}`: Y channel, shave = scale, SR quantised to 8 bits."
                 + (f" † the paper measured under `{'`, `'.join(sorted(others))}`." if others else ""))
    for name in dict.fromkeys(r["set"] for r in missing):
        reason = next(r["reason"] for r in missing if r["set"] == name)
        lines.append(f"Missing {name}: {reason.split('; expected')[0]} (`srexp-data list` shows what is there, "
                     f"`srexp-data download {name}` fetches it).")
    return "\n".join(lines)


class AtScale(nn.Module):
    """A net whose weights do not depend on the scale (``any_scale``), run at another scale than it was built for."""

    def __init__(self, net: nn.Module, scale: int):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return self.net(x, scale=self.scale)


@torch.no_grad()
def benchmark_run(cfg: DictConfig, net: nn.Module, run_dir: str | Path, method: str | None = None) -> dict:
    """After training: the standard table (``test_sets``, at ``data.scales`` or ``scale``) for the trained net,
    ours vs the recipe's ``paper:`` numbers; printed and written to ``<run>/benchmark.json``."""
    was_training = net.training
    net.eval()
    scales = list(cfg.data.get("scales") or [cfg.scale])
    channels = int(cfg.net.get("in_channels", cfg.channels))
    nets = {s: (net if s == cfg.scale else AtScale(net, s), channels) for s in scales}
    device = next(net.parameters()).device
    rows, missing = benchmark(nets, cfg.test_sets, cfg.protocol, cfg.data.get("root"), device)
    paper = OmegaConf.to_container(cfg.paper) if cfg.get("paper") else None
    add_paper(rows, method, paper)
    print(markdown_table(rows, method, paper, missing, cfg.protocol))
    out = {"rows": rows, "missing": missing}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "benchmark.json").write_text(json.dumps(out, indent=2))
    net.train(was_training)
    return out


def nets_from_checkpoint(tcfg: dict, state: dict, scales: list[int]) -> dict[int, tuple[nn.Module, int]]:
    """The trained net at each requested scale. Another scale than the trained one works for nets whose weights do
    not depend on it (pre-upsampling with an interpolation: VDSR, SRCNN; multi-scale VDSR is trained for it)."""
    channels = int(tcfg["net"].get("in_channels", tcfg["channels"]))
    nets = {}
    for s in scales:
        net = load_net({**tcfg["net"], "scale": s} if s != tcfg["scale"] else tcfg["net"])
        if s != tcfg["scale"] and not getattr(net, "any_scale", False):
            raise ConfigError(f"eval.scales={scales}: the checkpoint was trained for ×{tcfg['scale']} only "
                              f"(valid: [{tcfg['scale']}]; only pre-upsampling nets run at any scale)")
        net.load_state_dict(state)
        nets[s] = (net, channels)
    return nets


def run(cfg: DictConfig) -> list[dict]:
    device = torch.device("cuda" if cfg.eval.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.eval.device == "auto" else cfg.eval.device))
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    if cfg.get("model") and cfg.ckpt:
        raise ConfigError("give model=NAME or ckpt=PATH, not both")
    if cfg.get("model") or cfg.ckpt:
        tcfg, tchoices, state = load_checkpoint(model_path(cfg.model) if cfg.get("model") else cfg.ckpt)
        method = tchoices.get("arch") if tchoices.get("arch") not in (None, "custom") else None
        protocol = cfg.eval.protocol or tcfg.get("protocol", "rgb_uint8")
        scales = list(cfg.eval.scales or (tcfg.get("data") or {}).get("scales") or [tcfg["scale"]])
        nets = nets_from_checkpoint(tcfg, state, scales)
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
    rows, missing = benchmark(nets, cfg.eval.sets, protocol, cfg.eval.root, device, save_dir)
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
