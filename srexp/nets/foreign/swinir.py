"""The official SwinIR weight layout (JingyunLiang/SwinIR ``models/network_swinir.py``; KAIR; spandrel) → srexp's
``swinir`` / ``swinir_light`` presets.

Every hyper-parameter comes from the tensors: ``embed_dim`` and the channels from ``conv_first.weight``, one RSTB per
``layers.<i>``, its depth from the ``blocks.<j>`` it holds, its heads from the width of
``relative_position_bias_table`` (``(2w-1)² × heads``, which also gives the window ``w``), the MLP ratio from
``mlp.fc1``; the upsampler from the reconstruction keys (``conv_before_upsample`` + ``upsample.<2k>``: classical
pixel shuffle, ×2 per conv or one ×3; ``upsample.0`` alone: 'pixelshuffledirect', r from its ``3·r²`` outputs).
The buffers ``relative_position_index`` and ``attn_mask`` (present in some files, absent in others, the mask sized for
the training patch) are recomputed by srexp and dropped. Not mapped, with a one-line reason: 'nearest+conv'
(real-world SR), denoising/JPEG models (no upsampler), '3conv' residual connections, absolute position embeddings.
``img_range`` is not stored in the weights: the SR models use 1 (srexp's only setting).
"""
from __future__ import annotations

import math
import re

from torch import Tensor

from srexp.nets.foreign import Converted, ForeignCheckpointError, Layout, StateDict

_TABLE = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
_BLOCK = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.(.+)$")
_DROPPED = ("relative_position_index", "attn_mask")
_BLOCK_KEYS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
               "attn.relative_position_bias_table", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
               "mlp.fc2.weight", "mlp.fc2.bias")


def _fail(msg: str) -> ForeignCheckpointError:
    return ForeignCheckpointError(f"SwinIR checkpoint: {msg}")


def _is_swinir(state: StateDict) -> bool:
    return _TABLE in state and "conv_first.weight" in state


def _is_direct(state: StateDict) -> bool:
    return "upsample.0.weight" in state and "conv_before_upsample.0.weight" not in state


def _shape(state: StateDict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise _fail(f"missing {key}")
    return tuple(state[key].shape)


def _expect(state: StateDict, key: str, shape: tuple[int, ...], what: str) -> None:
    found = _shape(state, key)
    if found != shape:
        raise _fail(f"{key} has shape {list(found)}, expected {list(shape)} ({what})")


def _structure(state: StateDict) -> tuple[list[int], list[int], int, int]:
    """``(depths, heads, window, mlp_hidden)`` from the block keys, every block's shapes checked against them."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        m = _BLOCK.match(key)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if sorted(blocks) != list(range(len(blocks))):
        raise _fail(f"RSTBs layers.<i> are not numbered 0…{len(blocks) - 1}: found {sorted(blocks)}")
    depths = []
    for i in range(len(blocks)):
        if sorted(blocks[i]) != list(range(len(blocks[i]))):
            raise _fail(f"layers.{i}.residual_group.blocks.<j> are not numbered 0…: found {sorted(blocks[i])}")
        depths.append(len(blocks[i]))
    rows, _ = _shape(state, _TABLE)
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise _fail(f"{_TABLE} has {rows} rows, expected (2·window - 1)² for an integer window")
    window = (side + 1) // 2
    embed = _shape(state, "conv_first.weight")[0]
    hidden = _shape(state, "layers.0.residual_group.blocks.0.mlp.fc1.weight")[0]
    heads = [_shape(state, f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table")[-1]
             for i in range(len(depths))]
    for i, (depth, h) in enumerate(zip(depths, heads)):
        if embed % h:
            raise _fail(f"layers.{i} has {h} attention heads, which do not divide embed_dim {embed}")
        for j in range(depth):
            p = f"layers.{i}.residual_group.blocks.{j}."
            if p + "attn.qkv.bias" not in state:
                raise _fail(f"missing {p}attn.qkv.bias (qkv_bias=False is not supported)")
            expected = {"norm1.weight": (embed,), "norm1.bias": (embed,), "attn.qkv.weight": (3 * embed, embed),
                        "attn.qkv.bias": (3 * embed,), "attn.proj.weight": (embed, embed), "attn.proj.bias": (embed,),
                        "attn.relative_position_bias_table": ((2 * window - 1) ** 2, h), "norm2.weight": (embed,),
                        "norm2.bias": (embed,), "mlp.fc1.weight": (hidden, embed), "mlp.fc1.bias": (hidden,),
                        "mlp.fc2.weight": (embed, hidden), "mlp.fc2.bias": (embed,)}
            for name in _BLOCK_KEYS:
                _expect(state, p + name, expected[name],
                        f"embed_dim {embed}, window {window}, {h} heads, MLP width {hidden}")
        if f"layers.{i}.conv.weight" not in state:
            raise _fail(f"layers.{i}.conv.weight not found: only resi_connection='1conv' is supported "
                        f"(found {'3conv' if f'layers.{i}.conv.0.weight' in state else 'neither 1conv nor 3conv'})")
        _expect(state, f"layers.{i}.conv.weight", (embed, embed, 3, 3), f"embed_dim {embed}")
    return depths, heads, window, hidden


def _upsampler(state: StateDict, channels: int) -> tuple[str, int, int | None]:
    """``(arch, scale, conv_before_upsample width or None)``."""
    if "conv_up1.weight" in state:
        raise _fail("'nearest+conv' upsampler (real-world SwinIR) is not supported (valid: 'pixelshuffle' classical, "
                    "'pixelshuffledirect' lightweight)")
    if "upsample.0.weight" not in state:
        raise _fail("no upsample.0.weight: a denoising/JPEG model (no upsampler) is not an SR model")
    if _is_direct(state):
        out = _shape(state, "upsample.0.weight")[0]
        r = math.isqrt(out // channels)
        if out % channels or r * r * channels != out or r < 2:
            raise _fail(f"upsample.0.weight has {out} outputs, expected {channels}·r² for an integer scale r >= 2")
        return "swinir_light", r, None
    feat = _shape(state, "conv_before_upsample.0.weight")[0]
    convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"upsample\.(\d+)\.weight", k)))
    if convs != list(range(0, 2 * len(convs), 2)):
        raise _fail(f"upsample.<k>.weight at k = {convs}, expected convs at 0, 2, 4, … (conv + PixelShuffle pairs)")
    outs = {_shape(state, f"upsample.{k}.weight")[0] for k in convs}
    if len(convs) == 1 and outs == {9 * feat}:
        return "swinir", 3, feat
    if outs != {4 * feat}:
        raise _fail(f"upsample convs output {sorted(outs)} channels, expected {4 * feat} (×2 steps) or one {9 * feat} "
                    f"(×3) for conv_before_upsample width {feat}")
    return "swinir", 2 ** len(convs), feat


def _rename(key: str) -> str | None:
    """The srexp key of an official key; None for a dropped buffer."""
    if key.rsplit(".", 1)[-1] in _DROPPED:
        return None
    if key.startswith(("conv_first.", "conv_last.")):
        return key
    if key.startswith("patch_embed.norm."):
        return "body.embed_norm." + key[len("patch_embed.norm."):]
    if m := _BLOCK.match(key):
        return f"body.layers.{m[1]}.blocks.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"layers\.(\d+)\.conv\.(weight|bias)", key):
        return f"body.layers.{m[1]}.conv.{m[2]}"
    if key.split(".", 1)[0] in ("norm", "conv_after_body", "conv_before_upsample"):
        return "body." + key
    if m := re.fullmatch(r"upsample\.(\d+)\.(weight|bias)", key):
        return f"upsample.{int(m[1]) // 2}.conv.{m[2]}"
    raise _fail(f"unexpected key {key} (absolute_pos_embed and other SwinIR variants are not supported)")


def convert(state: StateDict) -> Converted:
    if not _is_swinir(state):
        raise _fail(f"expected {_TABLE} and conv_first.weight, found neither")
    embed, channels = _shape(state, "conv_first.weight")[:2]
    depths, heads, window, hidden = _structure(state)
    arch, scale, feat = _upsampler(state, channels)
    if "patch_embed.norm.weight" not in state:
        raise _fail("missing patch_embed.norm.weight (patch_norm=False is not supported)")
    ratio = hidden / embed
    if int(embed * ratio) != hidden:
        raise _fail(f"mlp.fc1 width {hidden} is not int(embed_dim {embed} × a ratio) as srexp builds it")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = _rename(key)
        if new is not None:
            out[new] = value
    overrides = [f"arch={arch}", f"scale={scale}", f"channels={channels}", f"net.num_feat={embed}",
                 f"net.body.depths=[{','.join(map(str, depths))}]", f"net.body.heads=[{','.join(map(str, heads))}]",
                 f"net.body.window={window}", f"net.body.mlp_ratio={ratio!r}"]
    if feat is not None:
        overrides.append(f"net.body.out_feat={feat}")
    if channels != 3:
        overrides.append("net.rgb_mean=null")  # the official code subtracts no mean from a 1-channel image
    notes = [f"SwinIR {'lightweight' if arch == 'swinir_light' else 'classical'} ×{scale}: embed_dim {embed}, "
             f"depths {depths}, heads {heads}, window {window}, MLP ratio {ratio:g}; img_range 1 assumed"]
    return Converted(overrides=overrides, state=out, protocol="rgb_uint8", notes=notes)


LAYOUTS: list[Layout] = [
    Layout(name="swinir", arch="swinir", detect=lambda s: _is_swinir(s) and not _is_direct(s), convert=convert,
           description="official SwinIR, classical SR ('pixelshuffle'; also recognises and refuses the real-world "
                       "'nearest+conv' and the denoising/JPEG models)"),
    Layout(name="swinir-light", arch="swinir_light", detect=lambda s: _is_swinir(s) and _is_direct(s), convert=convert,
           description="official SwinIR, lightweight SR ('pixelshuffledirect')"),
]
