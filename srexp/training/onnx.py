"""ONNX export of a srexp net, verified with onnxruntime, and an ONNX-backed net for srexp-upscale.

:func:`export_onnx` writes the net's final output (the last level of a progressive net) as one ONNX graph, input
``lr`` ``(N, C, h, w)`` floats in [0, 1] with dynamic ``N, h, w``, output ``sr`` ``(N, C, s·h, s·w)``; opset
:data:`OPSET`, through ``torch.onnx.export(dynamo=True)``. srexp's metadata (config JSON, scale, channels, receptive
radius) goes into the model's ``metadata_props``. :func:`verify_onnx` runs it with onnxruntime (CPU) and PyTorch on a
crop of a real image (scikit-image's astronaut) at a size other than the traced one, and reports the max abs
difference. :class:`OnnxNet` runs a file written here inside :class:`srexp.cli.upscale.Upscaler`.

onnx, onnxscript (the exporter) and onnxruntime are the optional extra ``srexp[onnx]``; without them the commands
say so in one line.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from srexp.errors import ConfigError
from srexp.nets import final

OPSET = 20  # torch 2.13's default for the dynamo exporter; onnxruntime ≥ 1.17 runs it
FORMAT = "srexp-onnx-1"
TRACE_HW = (32, 32)  # the example input of the export; the check image has another, odd size
CHECK_HW = (61, 47)  # the crop of the astronaut the export is checked on
INSTALL = "pip install 'srexp[onnx]'"


def require(module: str, what: str):
    """``import module``, or one line naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the {module} package, which is not installed ({INSTALL})") from None


class FinalOutput(nn.Module):
    """The net's final output alone: the last of a progressive net's list."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return final(self.net(x))


@contextlib.contextmanager
def _fds_silenced():
    """File descriptors 1 and 2 to /dev/null: torch.export writes the graphs of a failed trace below Python."""
    import os
    import sys

    for f in (sys.stdout, sys.stderr):
        f.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (an embedding host): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        for f in (sys.stdout, sys.stderr):
            f.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@contextlib.contextmanager
def _quiet():
    """The exporter's warnings, its 'torchvision is not installed' lines, the optimizer's INFO lines ("Removed 8
    unused nodes") and the graphs it prints when torch.export fails are noise for the user (the reason is raised)."""
    prefixes = ("torch", "onnxscript", "onnx_ir")  # torch.fx's "Unable to find user code …" on a refused net too
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes]
    loggers = [logging.getLogger(n) for n in {*prefixes, *names}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)  # a failure is raised with its reason
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _fds_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _reason(e: BaseException) -> str:
    """The one line that says why an export failed (torch.onnx's report is many lines)."""
    text = str(e)
    for line in text.splitlines():
        if line.startswith("<class "):  # the exporter's "## Exception summary" line
            return line[:300]
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"[:300]


def export_onnx(net: nn.Module, out: str | Path, *, scale: int, channels: int, radius: int | None,
                config: dict | None = None, choices: dict | None = None, opset: int = OPSET,
                what: str = "the net") -> Path:
    """``net`` (eval mode, CPU, float32) as an ONNX file at ``out``, dynamic batch, height and width, with srexp's
    metadata. ``radius``: the receptive-field radius in LR pixels (None: the net mixes distant pixels, no tiling)."""
    require("onnx", "format=onnx")
    require("onnxscript", "format=onnx (torch.onnx's exporter)")
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = FinalOutput(net).cpu().float().eval()
    x = torch.rand(2, channels, *TRACE_HW)  # batch 2: a batch of 1 would be specialised (not dynamic)
    dyn = torch.export.Dim.DYNAMIC
    try:
        with _quiet(), torch.no_grad():
            prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["lr"], output_names=["sr"],
                                     dynamic_shapes=({0: dyn, 2: dyn, 3: dyn},), opset_version=opset,
                                     external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - torch.export / the ONNX translation refused the net
        raise ConfigError(f"{what} does not export to ONNX ({_reason(e)})") from None
    proto = prog.model_proto
    meta = {"format": FORMAT, "srexp_scale": str(scale), "srexp_channels": str(channels),
            "srexp_radius": json.dumps(radius), "srexp_opset": str(opset), "srexp_torch": torch.__version__}
    if config is not None:
        from srexp.training.runtime import redact

        meta["srexp_config"] = json.dumps(redact(config))
    if choices is not None:
        meta["srexp_choices"] = json.dumps(choices)
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out))
    return out


def check_image(channels: int, hw: tuple[int, int] = CHECK_HW) -> Tensor:
    """A real photo crop, ``(1, channels, *hw)`` floats in [0, 1]: RGB, its Y (BT.601, as the Y nets are trained on)
    for one channel, the RGB channels repeated for other counts."""
    from skimage import data

    from srexp.ops.color import rgb_to_y

    a = data.astronaut()[180 : 180 + hw[0], 200 : 200 + hw[1]]  # face and suit: edges and flat areas
    rgb = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()[None] / 255
    if channels == 3:
        return rgb
    if channels == 1:
        return rgb_to_y(rgb)
    return rgb[:, [k % 3 for k in range(channels)]]


def session(path: str | Path, key: str = "ckpt"):
    """An onnxruntime CPU session of ``path``; one line naming the file when it is not a loadable model."""
    ort = require("onnxruntime", f"{key}={path}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # as torch: OMP_NUM_THREADS is respected
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{key}={path}: not a loadable ONNX model ({first[:200]})") from None


def metadata(sess, path: str | Path, key: str = "ckpt") -> dict:
    """srexp's metadata of a session made from a file written by :func:`export_onnx`."""
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{key}={path}: no srexp metadata in the ONNX model (was it written by "
                          f"srexp-export format=onnx?)")
    return {"scale": int(meta["srexp_scale"]), "channels": int(meta["srexp_channels"]),
            "radius": json.loads(meta["srexp_radius"]), "opset": int(meta["srexp_opset"]),
            "config": json.loads(meta.get("srexp_config", "null")),
            "choices": json.loads(meta.get("srexp_choices", "null"))}


def run_session(sess, x: Tensor) -> Tensor:
    out = sess.run(["sr"], {"lr": x.detach().float().cpu().contiguous().numpy()})[0]
    return torch.from_numpy(out).to(x.device)


@torch.no_grad()
def verify_onnx(net: nn.Module, path: str | Path, channels: int, tolerance: float = 1e-4,
                image: Tensor | None = None) -> float:
    """Max abs difference of onnxruntime (CPU) and PyTorch on ``image`` (default :func:`check_image`);
    ConfigError when it exceeds ``tolerance`` or the shapes differ."""
    x = check_image(channels) if image is None else image
    ref = FinalOutput(net).cpu().float().eval()(x)
    try:
        got = run_session(session(path, "out"), x)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a size the export specialised: onnxruntime refuses another
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"out={path}: onnxruntime failed on a {x.shape[-1]}×{x.shape[-2]} image "
                          f"({first[:200]})") from None
    if got.shape != ref.shape:
        raise ConfigError(f"out={path}: the ONNX model gives shape {tuple(got.shape)} on a "
                          f"{tuple(x.shape)} image, PyTorch {tuple(ref.shape)}")
    diff = float((got - ref).abs().max())
    if not diff <= tolerance:  # NaN fails too
        raise ConfigError(f"out={path}: onnxruntime and PyTorch differ by up to {diff:.3g} on a "
                          f"{x.shape[-1]}×{x.shape[-2]} image, more than onnx.tolerance={tolerance:g}")
    return diff


class OnnxNet(nn.Module):
    """A net exported by :func:`export_onnx`, run by onnxruntime on the CPU: ``(N, C, h, w)`` → ``(N, C, s·h, s·w)``
    on the input's device. ``scale`` and ``in_channels`` as the PyTorch net's; ``recorded_radius``, its receptive-field
    radius recorded at export (None: no tiling), is what :func:`srexp.nets.stats.receptive_radius` returns for it."""

    def __init__(self, path: str | Path, key: str = "ckpt"):
        super().__init__()
        self.path = Path(path)
        self.session = session(path, key)
        meta = metadata(self.session, path, key)
        self.scale, self.in_channels = meta["scale"], meta["channels"]
        self.recorded_radius, self.config = meta["radius"], meta["config"]  # srexp.nets.stats.receptive_radius
        self.choices = meta["choices"]

    def forward(self, x: Tensor) -> Tensor:
        return run_session(self.session, x)

    def at_scales(self, scales: list[int], key: str) -> dict[int, tuple[OnnxNet, int]]:
        """srexp-eval's ``{scale: (net, channels)}``: the exported scale only."""
        other = [s for s in scales if int(s) != self.scale]
        if other:
            raise ConfigError(f"eval.scales={list(scales)}: {key} was exported for ×{self.scale} only (valid: "
                              f"[{self.scale}]; an ONNX model runs at its exported scale)")
        return {self.scale: (self, self.in_channels)}


def is_onnx(path) -> bool:
    return str(path).lower().endswith(".onnx")


def upscaler_net(ckpt, scale, channels) -> tuple[OnnxNet, int, int]:
    """srexp-upscale ``ckpt=model.onnx``: (net, scale, channels), ``scale=``/``channels=`` checked against the
    model's metadata as for a checkpoint."""
    net = OnnxNet(ckpt)
    if channels is not None and int(channels) != net.in_channels:
        raise ConfigError(f"channels={channels} does not match ckpt={ckpt}, a {net.in_channels}-channel net "
                          f"(valid: channels={net.in_channels} or unset; RGB images go through a Y net via YCbCr)")
    if scale is not None and int(scale) != net.scale:
        raise ConfigError(f"scale={scale} does not match ckpt={ckpt}, exported for ×{net.scale} (valid: "
                          f"scale={net.scale} or unset; an ONNX model runs at its exported scale only)")
    return net, net.scale, net.in_channels
