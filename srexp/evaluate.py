"""srexp-eval: PSNR/SSIM on the standard test sets under a named protocol, with the published numbers beside.

Writes ``metrics.json`` (a list of rows ``{set, scale, psnr, ssim, n_images, protocol}``, ``protocol`` being the
stamp: name, shave, how LR was made, test-images hash) in its run folder, and to ``eval.json`` when given.
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
from srexp.data.datamodule import load_pairs
from srexp.data.images import save_image
from srexp.errors import ConfigError
from srexp.nets import build_net
from srexp.metrics import get_protocol, images_hash, psnr_ssim
from srexp.published import PAPER_PROTOCOL, published
from srexp.runtime import one_line_errors
from srexp.tasks.sr import to_float

log = logging.getLogger("srexp.eval")


def load_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, choices, net state dict) of a srexp-train checkpoint, loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad checkpoint for the user
        raise ConfigError(f"ckpt={path}: not a loadable checkpoint ({str(e).splitlines()[0][:200]})") from None
    if "srexp_config" not in ckpt:
        raise ConfigError(f"ckpt={path}: no srexp config inside (was it written by srexp-train?)")
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return ckpt["srexp_config"], ckpt.get("srexp_choices", {}), state


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


def markdown_table(rows: list[dict], method: str | None) -> str:
    lines = [f"| set | scale | PSNR | SSIM | paper PSNR | paper SSIM | Δ PSNR |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = published(method, r["set"], r["scale"])
        same = method and PAPER_PROTOCOL.get(method.lower().removesuffix("_955")) == r["protocol"]["name"]
        pp = f"{pub[0]:.2f}" if pub else "–"
        psim = f"{pub[1]:.4f}" if pub and pub[1] is not None else "–"
        delta = f"{r['psnr'] - pub[0]:+.2f}" + ("" if same else " †") if pub else "–"
        lines.append(f"| {r['set']} | ×{r['scale']} | {r['psnr']:.3f} | {r['ssim']:.4f} | {pp} | {psim} | {delta} |")
    proto = rows[0]["protocol"]["name"] if rows else "?"
    lines.append("")
    lines.append(f"Protocol `{proto}`: Y channel, shave = scale, SR quantised to 8 bits."
                 + (f" † the paper measured under `{PAPER_PROTOCOL.get(str(method).lower())}`." if method and
                    PAPER_PROTOCOL.get(str(method).lower(), proto) != proto else ""))
    return "\n".join(lines)


def run(cfg: DictConfig) -> list[dict]:
    device = torch.device("cuda" if cfg.eval.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.eval.device == "auto" else cfg.eval.device))
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    if cfg.ckpt:
        tcfg, tchoices, state = load_checkpoint(cfg.ckpt)
        method = tchoices.get("arch") if tchoices.get("arch") not in (None, "custom") else None
        protocol = cfg.eval.protocol or tcfg.get("protocol", "rgb_uint8")
        scales = list(cfg.eval.scales or [tcfg["scale"]])
        if scales != [tcfg["scale"]]:
            raise ConfigError(f"eval.scales={scales}: the checkpoint was trained for ×{tcfg['scale']} only")
        nets = {tcfg["scale"]: (load_net(tcfg["net"], state), int(tcfg["net"].get("in_channels", tcfg["channels"])))}
    else:
        method = choices.get("arch")
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
    rows = []
    for set_name in cfg.eval.sets:
        for s in scales:
            net, ch = nets[s]
            save_dir = run_dir / "images" if cfg.eval.save_images else None
            row = evaluate_set(net.to(device), set_name, s, protocol, ch, cfg.eval.root, device, save_dir)
            if method:
                row["method"] = method
            pub = published(method, set_name, s)
            row["paper_psnr"], row["paper_ssim"] = (pub if pub else (None, None))
            rows.append(row)
            log.info("%s ×%d: %.3f dB / %.4f (%d images)", set_name, s, row["psnr"], row["ssim"], row["n_images"])
    print(markdown_table(rows, method))
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(rows, indent=2)
    (run_dir / "metrics.json").write_text(text)
    if cfg.eval.json:
        Path(cfg.eval.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.eval.json).write_text(text)
    return rows


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
@one_line_errors("srexp-eval")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
