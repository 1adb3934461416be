"""The official RCAN layout (yulunzhang/RCAN, built on EDSR-PyTorch), onto ``arch=rcan``.

Keys: ``sub_mean``/``add_mean`` (1×1 convs: the DIV2K mean shift at ``rgb_range`` 255), ``head.0`` (the head conv),
``body.<g>.body.<b>.body.{0,2}`` (an RCAB's two convs) and ``….body.3.conv_du.{0,2}`` (its channel attention),
``body.<g>.body.<nb>`` (the group's conv), ``body.<ng>`` (the conv before the long skip), ``tail.0.<2k>`` (the ×2
sub-pixel convs, or one ×3), ``tail.1`` (the last conv).

The official net runs on 0–255 (``x · 255``, minus 255 · mean, …, plus 255 · mean, ``/ 255``); srexp's on [0, 1]
with the mean as a buffer. The mean-shift convs are folded into the head conv (input side: ``W · 255 · A``, exact
because ``255 · A · mean + b = 0`` makes the shifted input zero-mean, so the zero padding sees the same zeros) and
into the last conv (output side: any affine ``A₂ z + b₂``, divided by 255), so the inner features — and the channel
attention that reads them — are the official ones exactly. The mean itself is read from ``sub_mean`` (the DIV2K mean
of the preset, else a ``net.rgb_mean`` override). A checkpoint without ``sub_mean`` (an RCAN built with the mean
shift off, as spandrel allows) runs on [0, 1] with ``net.rgb_mean=null``. RCAN's ``res_scale`` is unused by the
official code, so 1 here. Pixel-unshuffle variants (``head.1``: neosr's) are refused.
"""
from __future__ import annotations

import torch
from torch import Tensor

from srexp import CONF_DIR
from srexp.nets.foreign import Converted, ForeignCheckpointError, Layout, StateDict
from srexp.nets.foreign._rename import check_convs, count, rename

LAYOUT = "rcan"
PROTOCOL = "rgb_uint8"  # RCAN_TestCode/Evaluate_PSNR_SSIM.m: Y of the 8-bit RGB output, `scale` pixels shaved
RGB_RANGE = 255.0


def _preset_mean() -> list[float]:
    from omegaconf import OmegaConf

    return list(OmegaConf.load(CONF_DIR / "arch" / "rcan.yaml").net.rgb_mean)


def _detect(state: StateDict) -> bool:
    return ("head.0.weight" in state or "head.1.weight" in state) and "tail.1.weight" in state \
        and "body.0.body.0.body.3.conv_du.0.weight" in state


def _convert(state: StateDict) -> Converted:
    if "head.0.weight" not in state and "head.1.weight" in state:
        raise ForeignCheckpointError(f"{LAYOUT}: head.1 without head.0: a pixel-unshuffle head (neosr's RCAN "
                                     f"variant), which srexp's rcan does not have")
    shifts = {k: state[k] for k in ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")
              if k in state}
    core = {k: v for k, v in state.items() if k not in shifts}
    renamed, names = rename(LAYOUT, core, [
        (r"head\.0\.(weight|bias)", lambda m: f"conv_first.{m[1]}"),
        (r"body\.(\d+)\.body\.(\d+)\.body\.([02])\.(weight|bias)",
         lambda m: f"body.groups.{m[1]}.blocks.{m[2]}.body.{m[3]}.{m[4]}"),
        (r"body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.([02])\.(weight|bias)",
         lambda m: f"body.groups.{m[1]}.blocks.{m[2]}.body.3.attend.{m[3]}.{m[4]}"),
        (r"body\.(\d+)\.body\.(\d+)\.(weight|bias)", lambda m: f"group_conv.{m[1]}.{m[2]}.{m[3]}"),
        (r"body\.(\d+)\.(weight|bias)", lambda m: f"body_conv.{m[1]}.{m[2]}"),
        (r"tail\.0\.(\d+)\.(weight|bias)", lambda m: f"tail_up.{m[1]}.{m[2]}"),
        (r"tail\.1\.(weight|bias)", lambda m: f"conv_last.{m[1]}"),
    ])
    ng = count(LAYOUT, {int(k.split(".")[2]) for k in renamed if k.startswith("body.groups.")}, "the groups")
    nb = count(LAYOUT, {int(k.split(".")[4]) for k in renamed if k.startswith("body.groups.0.")}, "the RCABs")
    _place(renamed, names, "group_conv", {(g, nb): f"body.groups.{g}.conv" for g in range(ng)})
    _place(renamed, names, "body_conv", {(ng,): "body.conv"})
    ups = sorted({int(k.split(".")[1]) for k in renamed if k.startswith("tail_up.")})
    if not ups or ups != list(range(0, 2 * len(ups), 2)):
        raise ForeignCheckpointError(f"{LAYOUT}: sub-pixel convs at tail.0.{ups}, expected tail.0.0, tail.0.2, …")
    _place(renamed, names, "tail_up", {(u,): f"upsample.{i}.conv" for i, u in enumerate(ups)})

    head = renamed["conv_first.weight"]
    nf, colors, k = head.shape[0], head.shape[1], head.shape[-1]
    squeeze = renamed["body.groups.0.blocks.0.body.3.attend.0.weight"].shape[0] \
        if "body.groups.0.blocks.0.body.3.attend.0.weight" in renamed else 0
    reduction = nf // squeeze if squeeze else 0
    if not squeeze or nf // reduction != squeeze:
        raise ForeignCheckpointError(f"{LAYOUT}: channel attention squeezes {nf} channels to {squeeze}, expected "
                                     f"{nf} // reduction for some reduction")
    first_up = renamed["upsample.0.conv.weight"].shape[0] if "upsample.0.conv.weight" in renamed else 0
    if first_up == 9 * nf and len(ups) == 1:
        scale = 3
    elif first_up == 4 * nf:
        scale = 2 ** len(ups)
    else:
        raise ForeignCheckpointError(f"{LAYOUT}: tail.0.0 outputs {first_up} channels for width {nf}, expected "
                                     f"{4 * nf} (×2 steps) or {9 * nf} (one ×3 step)")
    r = scale if scale == 3 else 2
    convs = {"conv_first": (nf, colors, k), "body.conv": (nf, nf, k), "conv_last": (colors, nf, k)}
    convs.update({f"upsample.{i}.conv": (nf * r * r, nf, 3) for i in range(len(ups))})
    for g in range(ng):
        convs[f"body.groups.{g}.conv"] = (nf, nf, k)
        for b in range(nb):
            pre = f"body.groups.{g}.blocks.{b}.body"
            convs.update({f"{pre}.0": (nf, nf, k), f"{pre}.2": (nf, nf, k), f"{pre}.3.attend.0": (squeeze, nf, 1),
                          f"{pre}.3.attend.2": (nf, squeeze, 1)})
    check_convs(LAYOUT, renamed, convs, names)

    overrides = ["arch=rcan", f"scale={scale}", f"channels={colors}", f"net.num_feat={nf}",
                 f"net.body.num_group={ng}", f"net.body.num_block={nb}", f"net.body.reduction={reduction}",
                 f"net.body.kernel_size={k}", f"net.first_kernel={k}", f"net.last_kernel={k}"]
    notes = [f"{LAYOUT}: {ng} groups × {nb} RCABs, {nf} channels, reduction {reduction}, ×{scale}"]
    if shifts:
        mean = _fold_mean_shift(shifts, renamed, colors)
        if max(abs(a - b) for a, b in zip(mean, _preset_mean())) > 1e-6:
            overrides.append("net.rgb_mean=[" + ",".join(f"{v:.9g}" for v in mean) + "]")
            notes.append(f"{LAYOUT}: mean shift {[round(v, 4) for v in mean]}, not the DIV2K mean of the preset")
    else:
        overrides.append("net.rgb_mean=null")
        notes.append(f"{LAYOUT}: no sub_mean/add_mean: run on [0, 1] without a mean shift")
    return Converted(overrides=overrides, state=renamed, protocol=PROTOCOL, notes=notes)


def _place(renamed: dict[str, Tensor], names: dict[str, str], kind: str, where: dict[tuple[int, ...], str]) -> None:
    """Move the intermediate ``kind.<indices>.<p>`` keys to their srexp names; an index with no place is refused."""
    for key in [k for k in renamed if k.startswith(f"{kind}.")]:
        *idx, p = key.split(".")[1:]
        target = where.get(tuple(int(i) for i in idx))
        if target is None:
            raise ForeignCheckpointError(f"{LAYOUT}: unexpected tensor {names[key]!r} (the other tensors describe a "
                                         f"net without it)")
        renamed[f"{target}.{p}"], names[f"{target}.{p}"] = renamed.pop(key), names.pop(key)


def _fold_mean_shift(shifts: dict[str, Tensor], renamed: dict[str, Tensor], colors: int) -> list[float]:
    """Fold the official 0–255 mean-shift convs into ``conv_first``/``conv_last`` (in place, float64 arithmetic);
    returns the mean that srexp's buffer must subtract and add back."""
    for key in ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"):
        if key not in shifts:
            raise ForeignCheckpointError(f"{LAYOUT}: {key} missing beside the other mean-shift tensors")
    for name in ("sub_mean", "add_mean"):
        w, b = shifts[f"{name}.weight"], shifts[f"{name}.bias"]
        if tuple(w.shape) != (colors, colors, 1, 1) or tuple(b.shape) != (colors,):
            raise ForeignCheckpointError(f"{LAYOUT}: {name}.weight/.bias have shapes {tuple(w.shape)}/"
                                         f"{tuple(b.shape)}, expected ({colors}, {colors}, 1, 1)/({colors},)")
    a_in = shifts["sub_mean.weight"].double()[:, :, 0, 0] * RGB_RANGE
    c_in = shifts["sub_mean.bias"].double()
    if torch.linalg.matrix_rank(a_in) < colors:
        raise ForeignCheckpointError(f"{LAYOUT}: sub_mean.weight is singular, so no mean shift reproduces it")
    mean = -torch.linalg.solve(a_in, c_in)  # 255 · A · (x - mean) = 255 · A · x + b
    preset = torch.tensor(_preset_mean(), dtype=torch.float64)
    if colors == len(preset) and (mean - preset).abs().max() <= 1e-6:
        mean = preset
    w, dtype = renamed["conv_first.weight"], renamed["conv_first.weight"].dtype
    renamed["conv_first.weight"] = torch.einsum("ojhw,ji->oihw", w.double(), a_in).to(dtype)
    a_out = shifts["add_mean.weight"].double()[:, :, 0, 0]
    wl, bl = renamed["conv_last.weight"], renamed["conv_last.bias"]
    renamed["conv_last.weight"] = (torch.einsum("ij,jchw->ichw", a_out, wl.double()) / RGB_RANGE).to(wl.dtype)
    renamed["conv_last.bias"] = ((a_out @ bl.double() + shifts["add_mean.bias"].double()) / RGB_RANGE
                                 - mean).to(bl.dtype)
    return [float(v) for v in mean]


LAYOUTS: list[Layout] = [
    Layout("rcan", "rcan", _detect, _convert,
           "yulunzhang/RCAN (EDSR-PyTorch): sub_mean/add_mean, head.0, body.<g>.body.<b>.body… conv_du, tail"),
]

__all__ = ["LAYOUTS"]
