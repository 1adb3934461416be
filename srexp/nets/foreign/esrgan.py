"""ESRGAN's RRDBNet in its three published weight layouts, onto ``arch=rrdb``.

* ``esrgan-old``: the original xinntao/ESRGAN release (``RRDB_ESRGAN_x4.pth``, ``RRDB_PSNR_x4.pth``) and the
  community models trained with its code: one ``nn.Sequential`` ``model`` — ``model.0`` head conv,
  ``model.1.sub.<i>.RDB<r>.conv<c>.0`` the dense convs, ``model.1.sub.<nb>`` the trunk conv, then per ×2 step
  (nearest, conv, LeakyReLU) the conv at ``model.3``, ``model.6``, …, the HR conv and the last conv two and four
  places after the last of them.
* ``esrgan-new``: xinntao/ESRGAN's later ``RRDBNet_arch.py`` (``conv_first``, ``RRDB_trunk.<i>.RDB<r>.conv<c>``,
  ``trunk_conv``, ``upconv1/2``, ``HRconv``, ``conv_last``); BSRGAN/RealSR use it too.
* ``basicsr-rrdbnet``: BasicSR's / Real-ESRGAN's ``RRDBNet`` (``conv_first``, ``body.<i>.rdb<r>.conv<c>``,
  ``conv_body``, ``conv_up1/2``, ``conv_hr``, ``conv_last``). Its ×2 and ×1 models pixel-unshuffle the input first
  (``conv_first`` takes 4× or 16× the image channels): refused, srexp's nets take the image itself.

All hyper-parameters come from the tensors: width ``nf`` and channels from ``conv_first``, growth ``gc`` from the
first dense conv, blocks and ×2 steps by counting. The nets compute the same function (nearest ×2 + conv +
LeakyReLU(0.2) per step, HR conv + LeakyReLU(0.2), last conv; residual scale 0.2 in every dense block and RRDB).
"""
from __future__ import annotations

from torch import Tensor

from srexp.nets.foreign import Converted, ForeignCheckpointError, Layout, StateDict
from srexp.nets.foreign._rename import check_convs, count, rename

PROTOCOL = "rgb_uint8"  # the ESRGAN README's PSNR table: Y channel, `scale` pixels shaved, 8-bit RGB output
_DENSE = r"\.RDB([123])\.conv([1-5])"


def _blocks(prefix: str, dense: str, suffix: str = "") -> tuple[str, object]:
    """The rule for the dense convs ``<prefix>.<i><dense>.<rdb>.conv<c><suffix>.(weight|bias)``."""
    return (rf"{prefix}\.(\d+){dense}{suffix}\.(weight|bias)",
            lambda m: f"body.blocks.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}")


def _move(state: dict[str, Tensor], names: dict[str, str], old: str, new: str) -> None:
    state[new], names[new] = state.pop(old), names.pop(old)


def _convert_old(state: StateDict) -> Converted:
    layout = "esrgan-old"
    renamed, names = rename(layout, state, [
        (r"model\.0\.(weight|bias)", lambda m: f"conv_first.{m[1]}"),
        _blocks(r"model\.1\.sub", _DENSE, r"\.0"),
        (r"model\.1\.sub\.(\d+)\.(weight|bias)", lambda m: f"trunk.{m[1]}.{m[2]}"),
        (r"model\.(\d+)\.(weight|bias)", lambda m: f"top.{m[1]}.{m[2]}"),
    ])
    nb = _num_blocks(layout, renamed)
    for p in ("weight", "bias"):
        if f"trunk.{nb}.{p}" in renamed:
            _move(renamed, names, f"trunk.{nb}.{p}", f"body.conv.{p}")
    tops = sorted({int(k.split(".")[1]) for k in renamed if k.startswith("top.")})
    steps = (tops[-1] - 4) // 3 if tops else 0
    if steps < 1 or tops != [*range(3, 3 * steps + 1, 3), 3 * steps + 2, 3 * steps + 4]:
        raise ForeignCheckpointError(f"{layout}: top-level convs at model.{tops}, expected model.3, model.6, … "
                                     f"(one per ×2 step), then the HR conv and the last conv two and four places on")
    for i, t in enumerate(tops):
        new = f"upsample.{i}.conv" if i < steps else ("conv_hr.0" if i == steps else "conv_last")
        for p in ("weight", "bias"):
            if f"top.{t}.{p}" in renamed:
                _move(renamed, names, f"top.{t}.{p}", f"{new}.{p}")
    return _finish(layout, renamed, names, nb, steps)


def _convert_named(layout: str, trunk: str, dense: str, body_conv: str, up: str, hr: str):
    def convert(state: StateDict) -> Converted:
        renamed, names = rename(layout, state, [
            (r"conv_first\.(weight|bias)", lambda m: f"conv_first.{m[1]}"),
            _blocks(trunk, dense),
            (rf"{body_conv}\.(weight|bias)", lambda m: f"body.conv.{m[1]}"),
            (rf"{up}(\d)\.(weight|bias)", lambda m: f"up.{m[1]}.{m[2]}"),
            (rf"{hr}\.(weight|bias)", lambda m: f"conv_hr.0.{m[1]}"),
            (r"conv_last\.(weight|bias)", lambda m: f"conv_last.{m[1]}"),
        ])
        ups = {int(k.split(".")[1]) for k in renamed if k.startswith("up.")}
        steps = count(layout, {u - 1 for u in ups}, f"the upsampling convs {up}<k>") if ups else 0
        for k in ups:
            for p in ("weight", "bias"):
                if f"up.{k}.{p}" in renamed:
                    _move(renamed, names, f"up.{k}.{p}", f"upsample.{k - 1}.conv.{p}")
        return _finish(layout, renamed, names, _num_blocks(layout, renamed), steps)

    return convert


def _num_blocks(layout: str, renamed: dict[str, Tensor]) -> int:
    return count(layout, {int(k.split(".")[2]) for k in renamed if k.startswith("body.blocks.")}, "the RRDBs")


def _finish(layout: str, state: dict[str, Tensor], names: dict[str, str], nb: int, steps: int) -> Converted:
    for key in ("conv_first.weight", "body.blocks.0.rdb1.conv1.weight", "conv_last.weight"):
        if key not in state:
            raise ForeignCheckpointError(f"{layout}: missing the tensor srexp calls {key!r}")
    nf, cin = state["conv_first.weight"].shape[:2]
    gc = state["body.blocks.0.rdb1.conv1.weight"].shape[0]
    cout = state["conv_last.weight"].shape[0]
    if cin != cout:
        if cin in (4 * cout, 16 * cout):
            raise ForeignCheckpointError(
                f"{layout}: conv_first takes {cin} channels for a {cout}-channel output: a pixel-unshuffled input "
                f"(Real-ESRGAN's ×{4 // int((cin // cout) ** 0.5)} models), which srexp's nets do not take")
        raise ForeignCheckpointError(f"{layout}: {cin} input channels but {cout} output channels (srexp: equal)")
    if steps < 1:
        raise ForeignCheckpointError(f"{layout}: no upsampling conv found (a ×1 model; srexp's rrdb upsamples)")
    convs = {"conv_first": (nf, cin, 3), "body.conv": (nf, nf, 3), "conv_hr.0": (nf, nf, 3),
             "conv_last": (cout, nf, 3)}
    for i in range(nb):
        for r in (1, 2, 3):
            for c in range(1, 6):
                convs[f"body.blocks.{i}.rdb{r}.conv{c}"] = (gc if c < 5 else nf, nf + (c - 1) * gc, 3)
    convs.update({f"upsample.{k}.conv": (nf, nf, 3) for k in range(steps)})
    check_convs(layout, state, convs, names)
    scale = 2 ** steps
    notes = [f"{layout}: {nb} RRDBs, nf {nf}, gc {gc}, {steps} ×2 step(s)"]
    if steps == 1:
        notes.append("one upsampling conv reads as ×2; a ×3 model (one ×3 step) has the same tensors: add scale=3")
    return Converted(overrides=["arch=rrdb", f"scale={scale}", f"channels={cout}", f"net.num_feat={nf}",
                                f"net.body.num_block={nb}", f"net.body.num_grow_ch={gc}"],
                     state=dict(state), protocol=PROTOCOL, notes=notes)


def _has(*keys: str):
    return lambda state: all(k in state for k in keys)


LAYOUTS: list[Layout] = [
    Layout("esrgan-old", "rrdb", _has("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"), _convert_old,
           "xinntao/ESRGAN's original release: model.0 …, model.1.sub.<i>.RDB<r>.conv<c>.0 …"),
    Layout("esrgan-new", "rrdb", _has("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight"),
           _convert_named("esrgan-new", r"RRDB_trunk", _DENSE, "trunk_conv", "upconv", "HRconv"),
           "xinntao/ESRGAN's RRDBNet_arch.py: conv_first, RRDB_trunk, trunk_conv, upconv1/2, HRconv, conv_last"),
    Layout("basicsr-rrdbnet", "rrdb", _has("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight"),
           _convert_named("basicsr-rrdbnet", r"body", r"\.rdb([123])\.conv([1-5])", "conv_body", "conv_up",
                          "conv_hr"),
           "BasicSR / Real-ESRGAN RRDBNet: conv_first, body.<i>.rdb<r>, conv_body, conv_up1/2, conv_hr, conv_last"),
]

__all__ = ["LAYOUTS"]
