"""srexp-upscale: upscale an image, a folder of images or a video with a trained net (or a zero-parameter baseline).

    srexp-upscale ckpt=outputs/…/checkpoints/last.ckpt input=photo.png output=photo_x2.png
    srexp-upscale ckpt=model.safetensors input=photos/ output=photos_x2/
    srexp-upscale ckpt=… input=clip.mp4 output=clip_x2.mp4          (audio copied, same frame rate, resumable)
    srexp-upscale arch=bicubic scale=4 input=photo.png output=photo_bicubic.png

What comes in goes out: 8 or 16 bits, gray or RGB, alpha (upscaled by MATLAB bicubic beside the net). A Y-channel net
(channels=1) colours RGB input through YCbCr (net on Y, bicubic on CbCr); an RGB net on a gray image gives gray (the
luma of its output). Tiles (``tile=`` LR pixels, ``tile_overlap=``, default the net's receptive-field radius) bound the
memory; the tiled output equals the whole-image one. On CUDA the net runs under bf16 autocast (``precision=``).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from srexp import CONF_DIR
from srexp.cli import command
from srexp.data.images import IMAGE_SUFFIXES, ImageError, check_writable, read_image, save_image
from srexp.errors import ConfigError
from srexp.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from srexp.ops.device import resolve_device
from srexp.ops.resize import imresize
from srexp.cli import check_missing, one_line_errors
from srexp.nets import final
from srexp.nets.stats import INTERPOLATE_RADIUS, receptive_radius
from srexp.training.onnx import is_onnx
from srexp.ops.tiling import run_tiled

log = logging.getLogger("srexp.cli.upscale")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
LUMA = (0.299, 0.587, 0.114)  # full-range: a gray image stays at its levels


class Upscaler:
    """A net (``channels``: its input channels; None = any, the interpolation baselines) with the colour handling,
    the device, the precision and the tiling around it."""

    def __init__(self, net: nn.Module, scale: int, channels: int | None, device: str = "auto",
                 precision: str = "auto", tile: int = 256, overlap: int | None = None):
        self.device = resolve_device(device)
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision={precision} is unknown (valid: auto, fp32, bf16)")
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        self.net, self.scale, self.channels = net.to(self.device).eval(), scale, channels
        self.radius = receptive_radius(self.net, channels or 1)
        if self.radius is None and tile > 0:
            log.warning("this net mixes distant pixels (a reshape upsample layer, global pooling or image-aligned "
                        "attention windows): tiling is off (tile=0), so the whole image is in memory at once")
            tile = 0
        self.tile, self.overlap = tile, overlap

    @torch.no_grad()
    def _net(self, x: Tensor) -> Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(x.to(self.device))
        out = final(out)
        return out.float().cpu()

    def _colour(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if self.channels is None or self.channels == c:
            return self._net(x)
        if self.channels == 1 and c == 3:  # a Y net: net on Y, bicubic on CbCr
            ycc = rgb_to_ycbcr(x)
            return ycbcr_to_rgb(torch.cat([self._net(ycc[:, :1]), imresize(ycc[:, 1:], scale=self.scale)], 1))
        if self.channels == 3 and c == 1:  # an RGB net on gray: gray in, gray out
            rgb = self._net(x.expand(-1, 3, -1, -1))
            return sum(w * rgb[:, k : k + 1] for k, w in enumerate(LUMA))
        raise ImageError(f"a {c}-channel image cannot go through a {self.channels}-channel net")

    def function(self, channels: int):
        """The LR → SR map of an image with ``channels`` (alpha last when 2 or 4) and the overlap it needs."""
        alpha = channels in (2, 4)
        base = channels - alpha
        side = alpha or (self.channels is not None and self.channels != base)  # a bicubic path beside the net
        need = max(self.radius or 0, INTERPOLATE_RADIUS["bicubic"] if side else 0)

        def fn(x: Tensor) -> Tensor:
            if not alpha:
                return self._colour(x)
            return torch.cat([self._colour(x[:, :base]), imresize(x[:, base:], scale=self.scale)], 1)

        return fn, need if self.overlap is None else self.overlap

    def __call__(self, src: np.ndarray, dtype=None) -> np.ndarray:
        """``(N, C, H, W)`` uint8/uint16 → ``(N, C, s·H, s·W)`` of the same dtype (or ``dtype``: float32 for tests)."""
        fn, overlap = self.function(src.shape[1])
        n, c, h, w = src.shape
        hwc = np.empty((n, h * self.scale, w * self.scale, c), dtype=dtype or src.dtype)  # the files' layout
        return run_tiled(fn, src, self.scale, self.tile, overlap, hwc.transpose(0, 3, 1, 2))


def build_upscaler(cfg: DictConfig) -> Upscaler:
    """From ``ckpt=`` (a srexp-train checkpoint, a srexp-export safetensors file or ONNX model) or a zero-parameter
    ``arch=``."""
    from srexp.nets import build_net
    from srexp.nets.strategies import at_scale
    from srexp.training.checkpoint import load_model, load_net

    opts = dict(device=cfg.device, precision=cfg.precision, tile=int(cfg.tile),
                overlap=None if cfg.tile_overlap is None else int(cfg.tile_overlap))
    if cfg.ckpt and is_onnx(cfg.ckpt):  # srexp-export format=onnx, run by onnxruntime
        from srexp.training.onnx import upscaler_net

        return Upscaler(*upscaler_net(cfg.ckpt, cfg.scale, cfg.channels), **opts)
    if cfg.ckpt:
        tcfg, _, state = load_model(cfg.ckpt, cfg.get("ckpt_layout"), cfg.scale)
        trained, channels = int(tcfg["scale"]), int(tcfg["net"].get("in_channels", tcfg["channels"]))
        if cfg.channels is not None and int(cfg.channels) != channels:
            raise ConfigError(f"channels={cfg.channels} does not match ckpt={cfg.ckpt}, a {channels}-channel net "
                              f"(valid: channels={channels} or unset; RGB images go through a Y net via YCbCr)")
        scale = int(cfg.scale) if cfg.scale is not None else trained
        net = at_scale(load_net(tcfg["net"], state), scale, f"scale={scale} does not match ckpt={cfg.ckpt}, "
                       f"trained for ×{trained} (valid: scale={trained} or unset)")
        return Upscaler(net, scale, channels, **opts)
    arch = (HydraConfig.get().runtime.choices.get("arch") if HydraConfig.initialized() else None) or "?"
    if cfg.scale is None:
        raise ConfigError(f"scale is not set: arch={arch} without a checkpoint needs one (e.g. scale=2), "
                          f"or pass ckpt=PATH")
    net = build_net(OmegaConf.merge(cfg.net, {"scale": int(cfg.scale), "in_channels": 3, "out_channels": 3}))
    if any(p.numel() for p in net.parameters()):
        raise ConfigError(f"arch={arch} has learned parameters: pass ckpt=PATH (a srexp-train checkpoint or a "
                          f"srexp-export .safetensors), or arch=bicubic|bilinear|nearest")
    return Upscaler(net, int(cfg.scale), None, **opts)


def upscale_file(ups: Upscaler, src: Path, dst: Path) -> tuple[int, ...]:
    a = read_image(src)
    check_writable(dst, 16 if a.dtype == np.uint16 else 8, a.shape[0] in (2, 4))
    out = ups(a[None])[0]
    save_image(out, dst)
    return out.shape


def upscale_folder(ups: Upscaler, src: Path, dst: Path) -> dict:
    """Every image of ``src`` (not recursive) to ``dst`` under the same name. Unreadable images are skipped and
    counted; files that are not images are ignored and counted; no image at all is an error."""
    from rich.progress import track

    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise ImageError(f"input={src}: no images in the folder (valid: {', '.join(IMAGE_SUFFIXES)})")
    dst.mkdir(parents=True, exist_ok=True)
    done, skipped = 0, []
    for p in track(images, description=f"×{ups.scale}", transient=True, disable=not sys.stderr.isatty()):
        try:
            upscale_file(ups, p, dst / p.name)
            done += 1
        except ImageError as e:
            skipped.append(str(e))
    if skipped:
        log.warning("skipped %d of %d images: %s", len(skipped), len(images), "; ".join(skipped[:5]))
    if not done:
        raise ImageError(f"input={src}: none of its {len(images)} images could be read ({skipped[0]})")
    return {"upscaled": done, "skipped": len(skipped), "ignored": len(files) - len(images)}


def run(cfg: DictConfig) -> dict:
    check_missing(cfg)
    src, dst = Path(cfg.input), Path(cfg.output)
    if not src.exists():
        raise ConfigError(f"input={src}: no such file or folder")
    suffix = src.suffix.lower()
    if src.is_file() and suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise ImageError(f"input={src}: unsupported format {suffix or '(none)'} (valid: "
                         f"{', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}, or a folder of images)")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"output={dst} is the input: choose another path (the input would be overwritten)")
    if not src.is_dir() and not dst.parent.exists():  # output=results/photo_x2.png: make results/
        try:
            dst.parent.mkdir(parents=True)
        except OSError as e:
            raise ConfigError(f"output={dst}: cannot make its folder {dst.parent} ({e.strerror})") from None
    ups = build_upscaler(cfg)
    if src.is_dir():
        summary = upscale_folder(ups, src, dst)
        print(f"upscaled {summary['upscaled']} images ×{ups.scale} to {dst} ({summary['skipped']} skipped, "
              f"{summary['ignored']} other files ignored)")
    elif suffix in VIDEO_SUFFIXES:
        from srexp.data.video import upscale_video

        v = cfg.video
        summary = upscale_video(ups, src, dst, batch=int(cfg.batch), codec=v.codec, crf=int(v.crf),
                                segment=int(v.segment), log_every=float(v.log_every))
        flicker = summary["flicker"]
        print(f"upscaled {summary['frames']} frames ×{ups.scale} to {dst} ({summary['width']}×{summary['height']}, "
              f"{summary['fps']:g} fps, audio {'copied' if summary['audio'] else 'none'}"
              + (f", {summary['resumed_frames']} frames from the interrupted run" if summary["resumed_frames"] else "")
              + ")")
        if flicker["output"] is not None:
            print(f"flicker: output {flicker['output']:.2f} vs input {flicker['input']:.2f} "
                  f"(mean |Δ| between consecutive frames, 8-bit luma levels on the input grid)")
    else:
        if dst.is_dir():
            dst = dst / src.name
        shape = upscale_file(ups, src, dst)
        summary = {"output": str(dst), "shape": list(shape)}
        print(f"upscaled {src} ×{ups.scale} to {dst} ({shape[-1]}×{shape[-2]})")
    return summary


@command("srexp-upscale")
@hydra.main(config_path=str(CONF_DIR), config_name="upscale", version_base="1.3")
@one_line_errors("srexp-upscale")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
