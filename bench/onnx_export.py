"""Every architecture preset (conf/arch/) and every shipped model (srexp/models/) through the ONNX export of
srexp-export format=onnx: onnxruntime (CPU) vs PyTorch on the 47×61 astronaut crop, max abs difference, export time.

    python bench/onnx_export.py [--full] [--scale 2] [--arch vdsr srresnet …] [--out table.md]

Default: the presets shrunk (8 features, ≤ 2 blocks or stages; the layer types are the preset's); ``--full``: at the
papers' sizes (EDSR 40M parameters: minutes). The shipped models are trained weights at full size. Prints a
markdown table (docs/reliability.md quotes it). Needs the onnx extra (pip install 'srexp[onnx]').
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from srexp import CONF_DIR  # noqa: E402
from srexp.nets import build_net  # noqa: E402
from srexp.nets.stats import count_params, receptive_radius  # noqa: E402
from srexp.training.onnx import OPSET, export_onnx, verify_onnx  # noqa: E402
from srexp.training.checkpoint import load_model  # noqa: E402

SHRINK = {  # preset → overrides keeping its layer types
    "dbpn": ["net.num_feat=8", "net.num_stages=2", "net.body.out_feat=8"],
    "dbpn_small": ["net.num_feat=8", "net.body.out_feat=8"],
    "edsr": ["net.num_feat=8", "net.body.num_block=2"],
    "edsr_baseline": ["net.num_feat=8", "net.body.num_block=2"],
    "srresnet": ["net.num_feat=8", "net.body.num_block=2"],
    "custom": ["net.num_feat=8", "net.body.num_block=2"],
    "lapsrn": ["net.num_feat=8", "net.body.num_block=2"],
    "vdsr": ["net.num_feat=8", "net.body.num_block=2"],
    "fsrcnn": ["net.num_feat=8", "net.body.num_block=2"],
    "srcnn": ["net.num_feat=8", "net.body.out_feat=4"],
    "srcnn_955": ["net.num_feat=8", "net.body.out_feat=4"],
    "espcn": ["net.num_feat=8", "net.body.out_feat=4"],
}


def row(name: str, net: torch.nn.Module, scale: int, channels: int, tmp: Path) -> str:
    net = net.eval()
    radius = receptive_radius(net, channels)
    t = time.perf_counter()
    path = export_onnx(net, tmp / f"{name}.onnx", scale=scale, channels=channels, radius=radius, what=name)
    took = time.perf_counter() - t
    diff = verify_onnx(net, path, channels, tolerance=float("inf"))
    return (f"| {name} | ×{scale} | {channels} | {count_params(net):,} | {radius} | {diff:.1e} | {took:.1f} s | "
            f"{path.stat().st_size / 1e6:.2f} MB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the presets at the papers' sizes (slow for EDSR)")
    ap.add_argument("--scale", type=int, default=2, help="scale of the presets (lapsrn: ×4 at least)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--arch", nargs="*", default=None, help="only these presets (default: all, and the shipped models)")
    args = ap.parse_args()
    torch.manual_seed(0)
    lines = [f"{machine()} · ONNX opset {OPSET} · {'paper sizes' if args.full else 'shrunk presets'}", "",
             "| net | scale | ch | params | radius | max abs diff | export | file |", "|---|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d, initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        tmp = Path(d)
        for yaml in sorted((CONF_DIR / "arch").glob("*.yaml")):
            arch = yaml.stem
            if args.arch is not None and arch not in args.arch:
                continue
            scale = max(args.scale, 4) if arch == "lapsrn" else args.scale
            cfg = compose("train", [f"arch={arch}", f"scale={scale}", *([] if args.full else SHRINK.get(arch, []))])
            channels = int(cfg.net.get("in_channels", cfg.channels))
            lines.append(row(f"arch={arch}", build_net(cfg.net), scale, channels, tmp))
            print(lines[-1], flush=True)
        shipped = (Path(__file__).resolve().parent.parent / "srexp" / "models").glob("*.safetensors")
        for f in sorted(shipped) if args.arch is None else []:
            config, _, state = load_model(f)
            net = build_net(config["net"])
            net.load_state_dict(state)
            lines.append(row(f"models/{f.name}", net, int(config["scale"]),
                             int(config["net"].get("in_channels", config["channels"])), tmp))
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
