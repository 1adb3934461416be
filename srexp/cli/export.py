"""srexp-export: a trained net as a safetensors file (no pickle), with its config as JSON metadata, and/or as an ONNX
model checked against PyTorch with onnxruntime.

``srexp-export ckpt=outputs/…/checkpoints/last.ckpt out=model.safetensors``; the file then serves as ``ckpt=`` for
srexp-upscale and srexp-eval. The EMA weights are exported when the run kept them (``task.ema_decay``).
``format=onnx`` (or ``out=model.onnx``) writes ``model.onnx`` (:mod:`srexp.training.onnx`: dynamic batch, height and width;
the final output of a progressive net) and prints the max abs difference of onnxruntime and PyTorch on a real image;
more than ``onnx.tolerance`` fails the export. ``format=both`` writes both files. ``ckpt=model.onnx`` runs in
srexp-upscale.
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from srexp import CONF_DIR
from srexp.cli import command
from srexp.errors import ConfigError
from srexp.training.checkpoint import load_model, save_safetensors
from srexp.cli import one_line_errors

log = logging.getLogger("srexp.cli.export")
FORMATS = ("safetensors", "onnx", "both")


def out_paths(out: str | Path, fmt: str | None) -> dict[str, Path]:
    """The file of each format: ``out`` itself where its suffix fits (any suffix for safetensors, as before), else
    ``out`` with the format's suffix in place of ``.safetensors``/``.onnx`` (or added)."""
    out = Path(out)
    suffix = out.suffix.lower()
    fmt = fmt or ("onnx" if suffix == ".onnx" else "safetensors")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt} is unknown (valid: {', '.join(FORMATS)}; unset: from out's suffix)")
    stem = out.with_suffix("") if suffix in (".safetensors", ".onnx") else out
    paths = {}
    for kind in (("safetensors", "onnx") if fmt == "both" else (fmt,)):
        fits = suffix == ".onnx" if kind == "onnx" else suffix != ".onnx"
        paths[kind] = out if fits and fmt != "both" else stem.with_name(f"{stem.name}.{kind}")
    return paths


def export_onnx_checked(config: dict, choices: dict, net, out: Path, tolerance: float, opset: int) -> float:
    """``net`` as ONNX at ``out``, then onnxruntime vs PyTorch on a real image: the max abs difference, or one line
    (and no file) when it is over ``tolerance``."""
    from srexp.nets.stats import receptive_radius
    from srexp.training.onnx import export_onnx, verify_onnx

    channels = int(config["net"].get("in_channels", config["channels"]))
    scale = int(getattr(net, "scale", config["scale"]))
    net = net.eval()
    arch = choices.get("arch") or type(net).__name__
    export_onnx(net, out, scale=scale, channels=channels, radius=receptive_radius(net, channels), config=config,
                choices=choices, opset=opset, what=f"arch={arch}")
    try:
        return verify_onnx(net, out, channels, tolerance)
    except ConfigError:
        out.unlink(missing_ok=True)  # a model that does not compute the net is not left behind
        raise


def run(cfg: DictConfig) -> dict:
    """The files written, by format, and the ONNX check's max abs difference (``onnx_max_diff``)."""
    from srexp.nets import build_net

    paths = out_paths(cfg.out, cfg.format)
    config, choices, state = load_model(cfg.ckpt, cfg.get("ckpt_layout"))
    if (config.get("foreign") or {}).get("layout") == "spandrel":
        raise ConfigError(f"ckpt={cfg.ckpt}: a net spandrel builds is rebuilt from its own file, not from a srexp "
                          f"config: use that file as ckpt= (valid: srexp checkpoints and the layouts srexp maps)")
    net = build_net(config["net"])
    net.load_state_dict(state)  # the file must rebuild: fail here, not in srexp-upscale
    params = sum(v.numel() for v in state.values())
    done: dict = {}
    if "safetensors" in paths:
        done["safetensors"] = save_safetensors(config, choices, state, paths["safetensors"])
        print(f"exported {len(state)} tensors ({params:,} parameters) to {done['safetensors']}")
    if "onnx" in paths:
        from srexp.training.onnx import CHECK_HW

        tol, opset = float(cfg.onnx.tolerance), int(cfg.onnx.opset)
        diff = export_onnx_checked(config, choices, net, paths["onnx"], tol, opset)
        done.update(onnx=paths["onnx"], onnx_max_diff=diff)
        print(f"exported {params:,} parameters to {paths['onnx']} (ONNX opset {opset}, dynamic batch/height/width); "
              f"onnxruntime vs PyTorch on a {CHECK_HW[1]}×{CHECK_HW[0]} photo crop: max abs difference {diff:.2e} "
              f"(tolerance {tol:g})")
    return done


@command("srexp-export")
@hydra.main(config_path=str(CONF_DIR), config_name="export", version_base="1.3")
@one_line_errors("srexp-export")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
