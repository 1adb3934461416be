"""srexp-face: DFDNet's two commands beside srexp-train (docs/dfdnet.md).

    srexp-face build-dictionary images=[DIR …] output=dict.safetensors [net.num_atoms=512 face_size=512 …]
        encode high-quality aligned faces with the net's encoder, RoI-align every component at every scale, K-means
        them (K = net.num_atoms) and write the dictionary with its provenance (conf/face_dictionary.yaml)
    srexp-face restore ckpt=RUN/checkpoints/last.ckpt input=FACE.png|DIR output=OUT.png|DIR [degrade=true]
        restore aligned faces with a trained DFDNet; PSNR/SSIM against reference= (or, with degrade=true, against
        the input itself) (conf/face_restore.yaml)

Each takes key=value overrides; ``srexp-face <command> --help`` lists them.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from srexp import CONF_DIR
from srexp.cli import command
from srexp.data.faces import FaceDegradation, list_faces, load_face, load_landmarks
from srexp.data.images import save_image
from srexp.errors import ConfigError
from srexp.nets.face.build import build
from srexp.ops.device import resolve_device
from srexp.cli import one_line_errors
from srexp.ops.color import to_float

log = logging.getLogger("srexp.cli.face")


@command("srexp-face build-dictionary")
@hydra.main(config_path=str(CONF_DIR), config_name="face_dictionary", version_base="1.3")
@one_line_errors("srexp-face build-dictionary")
def build_dictionary(cfg: DictConfig) -> None:
    build(cfg)


# ---------------------------------------------------------------------------------------------------------- restore
def _pairs(cfg: DictConfig) -> list[tuple[Path, Path]]:
    src = Path(cfg.input).expanduser()
    if src.is_dir():
        out = Path(cfg.output).expanduser()
        return [(f, out / f"{f.stem}.png") for f in list_faces([str(src)], None, "input")]
    if not src.is_file():
        raise ConfigError(f"input={src}: no such file or folder")
    return [(src, Path(cfg.output).expanduser())]


def restore_faces(cfg: DictConfig) -> list[dict]:
    """Restores every input face; returns one row per face (with PSNR/SSIM where there is a reference)."""
    from srexp.data.faces import batch_generator
    from srexp.training.checkpoint import load_model, load_net
    from srexp.metrics import get_protocol, psnr_ssim

    for key in ("ckpt", "input", "output"):
        if not cfg.get(key):
            raise ConfigError(f"{key} is not set (srexp-face restore ckpt=…/last.ckpt input=FACE.png output=OUT.png)")
    tcfg, _, state = load_model(cfg.ckpt)
    net_cfg = dict(tcfg["net"])
    if "dfdnet" not in str(net_cfg.get("_target_", "")).lower():
        raise ConfigError(f"ckpt={cfg.ckpt}: its net is {net_cfg.get('_target_')}, not DFDNet (srexp-upscale "
                          f"runs SR nets)")
    if cfg.dictionary:
        net_cfg["dictionary"] = str(cfg.dictionary)
    dev = resolve_device(cfg.device)
    net = load_net(net_cfg, state).to(dev)
    size, landmarks = net.size, load_landmarks(cfg.landmarks)
    protocol, scale = get_protocol(tcfg.get("protocol", "rgb_uint8")), int(cfg.scale or tcfg.get("scale", 4))
    degradation = FaceDegradation(**dict(tcfg.get("data", {}).get("degrade") or {}))
    rows = []
    for k, (src, dst) in enumerate(_pairs(cfg)):
        img, boxes = load_face(src, size, landmarks)
        hq = to_float(img)[None]
        lq = degradation(hq, batch_generator(cfg.seed, k, "cpu"), float(scale)) if cfg.degrade else hq
        with torch.no_grad():
            out = net(lq.to(dev), boxes[None].to(dev)).clamp(0, 1).cpu()
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_image(out[0], dst)
        row = {"image": src.name, "output": str(dst)}
        ref = hq if cfg.degrade else None
        if cfg.degrade:
            save_image(lq[0], dst.with_name(f"{dst.stem}_input.png"))
        elif cfg.reference:
            r = Path(cfg.reference).expanduser()
            r = r / src.name if r.is_dir() else r
            ref = to_float(load_face(r, size, landmarks)[0])[None]
        if ref is not None:
            ref_y = protocol.sr_to_y(ref)
            for name, x in (("input", lq), ("restored", out)):
                p, s = psnr_ssim(protocol.sr_to_y(x), ref_y, scale)
                row[f"{name}_psnr"], row[f"{name}_ssim"] = float(p), float(s)
        rows.append(row)
    _print(rows, size, protocol.name, scale)
    return rows


def _print(rows: list[dict], size: int, protocol: str, scale: int) -> None:
    measured = [r for r in rows if "restored_psnr" in r]
    for r in rows:
        line = f"{r['image']} → {r['output']}"
        if "restored_psnr" in r:
            line += (f"  input {r['input_psnr']:.2f} dB / {r['input_ssim']:.4f}  restored {r['restored_psnr']:.2f} dB "
                     f"/ {r['restored_ssim']:.4f}")
        print(line)
    if measured:
        mean = {k: sum(r[k] for r in measured) / len(measured) for k in ("input_psnr", "restored_psnr")}
        print(f"mean over {len(measured)} faces at {size} px ({protocol}, Y, shave {scale}): input "
              f"{mean['input_psnr']:.2f} dB, restored {mean['restored_psnr']:.2f} dB (LPIPS: not installed)")


@command("srexp-face restore")
@hydra.main(config_path=str(CONF_DIR), config_name="face_restore", version_base="1.3")
@one_line_errors("srexp-face restore")
def restore(cfg: DictConfig) -> None:
    restore_faces(cfg)


COMMANDS = {"build-dictionary": build_dictionary, "restore": restore}


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    if not args or args[0] not in COMMANDS:
        got = f"unknown command {args[0]!r}" if args else "no command"
        print(f"srexp-face: error: {got} (valid: {', '.join(COMMANDS)}; srexp-face --help)", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"srexp-face {args[0]}", *args[1:]]
    COMMANDS[args[0]]()


if __name__ == "__main__":
    main()
