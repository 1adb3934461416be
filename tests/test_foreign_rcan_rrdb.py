"""RCAN and ESRGAN's RRDBNet: the official weight layouts convert onto arch=rcan / arch=rrdb and give the official
outputs (spandrel's implementations as the reference, random weights, tiny sizes); bad files fail in one line; both
presets train (fast_dev_run, narrow)."""
from __future__ import annotations

import functools
import re

import pytest
import torch

from conftest import compose_cfg, folder_overrides, shrink
from spandrel_ref import spandrel
from srexp.nets import build_net
from srexp.nets.foreign import ForeignCheckpointError, esrgan, rcan
from srexp.nets.stats import receptive_radius

LAYOUTS = esrgan.LAYOUTS + rcan.LAYOUTS
TOL = 1e-5


@pytest.fixture(scope="module")
def archs():
    spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.RCAN import RCAN

    return ESRGAN, RCAN


@functools.lru_cache(maxsize=None)
def net_config(overrides: tuple[str, ...]):
    """The composed ``net`` of ``train.yaml`` with ``overrides`` (composed once per distinct list: ~1 s each)."""
    return compose_cfg("train", list(overrides)).net


def detect_one(state) -> str:
    found = [layout for layout in LAYOUTS if layout.detect(state)]
    assert len(found) == 1, [layout.name for layout in found]
    return found[0]


def convert_and_compare(reference: torch.nn.Module, state: dict, layout_name: str, scale: int) -> list[str]:
    """Detect and convert ``state``, build srexp's net from the overrides, load strictly, compare on odd sizes."""
    layout = detect_one(state)
    assert layout.name == layout_name
    converted = layout.convert(state)
    assert f"scale={scale}" in converted.overrides and converted.protocol == "rgb_uint8"
    net = build_net(net_config(tuple(converted.overrides))).eval()
    net.load_state_dict(converted.state, strict=True)
    x = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        want, got = reference.eval()(x.clone()), net(x)  # spandrel's RCAN scales its input in place: a copy
    assert got.shape == want.shape == (2, 3, 7 * scale, 9 * scale)
    assert (got - want).abs().max().item() <= TOL
    # tiling: RCAN's channel attention pools the whole image (no exact tiles); RRDB has a finite reach
    radius = receptive_radius(net, 3)
    assert radius is None if layout.arch == "rcan" else radius > 0
    return converted.overrides


# ESRGAN: spandrel's RRDBNet has the old layout (model.<n>…); the two later layouts rename it, key for key, as
# xinntao/ESRGAN's RRDBNet_arch.py and BasicSR's basicsr/archs/rrdbnet_arch.py name their modules.
def old_to(state: dict, names: dict[str, str]) -> dict:
    nb = max(int(m[1]) for k in state if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))) + 1
    top = sorted({int(k.split(".")[1]) for k in state if re.match(r"model\.\d+\.(weight|bias)$", k)} - {0})
    ups = top[:-2]
    out = {}
    for k, v in state.items():
        p = k.rsplit(".", 1)[1]
        if m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", k):
            out[names["dense"].format(*m.groups()) + f".{p}"] = v
        elif k.startswith(f"model.1.sub.{nb}."):
            out[f"{names['trunk']}.{p}"] = v
        elif k.startswith("model.0."):
            out[f"conv_first.{p}"] = v
        else:
            i = top.index(int(k.split(".")[1]))
            key = f"{names['up']}{i + 1}" if i < len(ups) else (names["hr"] if i == len(ups) else "conv_last")
            out[f"{key}.{p}"] = v
    return out


NEW = {"dense": "RRDB_trunk.{}.RDB{}.conv{}", "trunk": "trunk_conv", "up": "upconv", "hr": "HRconv"}
BASICSR = {"dense": "body.{}.rdb{}.conv{}", "trunk": "conv_body", "up": "conv_up", "hr": "conv_hr"}


@pytest.mark.parametrize("layout,scale", [("esrgan-old", 4), ("esrgan-old", 2), ("esrgan-new", 4),
                                          ("basicsr-rrdbnet", 4)])
def test_esrgan_layouts_give_the_official_output(archs, layout, scale):
    ESRGAN, _ = archs
    torch.manual_seed(scale)
    ref = ESRGAN(num_filters=8, num_blocks=2, scale=scale)
    state = ref.state_dict()
    state = {"esrgan-old": state, "esrgan-new": old_to(state, NEW), "basicsr-rrdbnet": old_to(state, BASICSR)}[layout]
    overrides = convert_and_compare(ref, state, layout, scale)
    assert overrides == ["arch=rrdb", f"scale={scale}", "channels=3", "net.num_feat=8", "net.body.num_block=2",
                         "net.body.num_grow_ch=32"]


@pytest.mark.parametrize("scale", [3, 4])  # ×2: test_rcan_other_mean_shifts
def test_rcan_layout_gives_the_official_output(archs, scale):
    _, RCAN = archs
    torch.manual_seed(scale)
    ref = RCAN(scale=scale, n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4)
    overrides = convert_and_compare(ref, ref.state_dict(), "rcan", scale)
    assert "net.body.num_group=2" in overrides and "net.body.reduction=4" in overrides
    assert not any(o.startswith("net.rgb_mean") for o in overrides)  # the DIV2K mean of the preset


def test_rcan_other_mean_shifts(archs):
    """A mean shift with another mean and a per-channel std becomes a net.rgb_mean override (the std folded into the
    convs); a net built without the mean shift runs on [0, 1] with net.rgb_mean=null."""
    _, RCAN = archs
    torch.manual_seed(0)
    ref = RCAN(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)
    mean, std = torch.tensor([0.3, 0.5, 0.6]), torch.tensor([0.5, 1.0, 2.0])
    for conv, sign in ((ref.sub_mean, -1), (ref.add_mean, 1)):
        conv.weight.data = torch.diag(1 / std).view(3, 3, 1, 1)
        conv.bias.data = sign * 255 * mean / std
    overrides = convert_and_compare(ref, ref.state_dict(), "rcan", 2)
    assert "net.rgb_mean=[0.3,0.5,0.6]" in overrides
    plain = RCAN(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2, norm=False)
    assert "net.rgb_mean=null" in convert_and_compare(plain, plain.state_dict(), "rcan", 2)


def one_line_error(convert, state, match: str) -> None:
    with pytest.raises(ForeignCheckpointError, match=match) as e:
        convert(state)
    assert "\n" not in str(e.value)


def test_bad_files_fail_in_one_line(archs):
    ESRGAN, RCAN = archs
    old = ESRGAN(num_filters=8, num_blocks=2, scale=4).state_dict()
    rcan_state = RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2).state_dict()
    convert_old, convert_rcan = LAYOUTS[0].convert, LAYOUTS[-1].convert
    # a shape that does not fit the others: the foreign key, what was found and what was expected
    bad = dict(old, **{"model.1.sub.1.RDB2.conv3.0.weight": torch.zeros(32, 8, 3, 3)})
    one_line_error(convert_old, bad, r"^esrgan-old: 'model\.1\.sub\.1\.RDB2\.conv3\.0\.weight' has shape "
                                     r"\(32, 8, 3, 3\), expected \(32, 72, 3, 3\)$")
    one_line_error(convert_rcan, dict(rcan_state, **{"tail.1.weight": torch.zeros(3, 8, 5, 5)}),
                   r"^rcan: 'tail\.1\.weight' has shape \(3, 8, 5, 5\), expected \(3, 8, 3, 3\)$")
    # the wrong layout's converter, and files no layout claims
    one_line_error(convert_old, rcan_state, r"^esrgan-old: unexpected key 'sub_mean\.weight'")
    one_line_error(convert_rcan, old, r"^rcan: unexpected key 'model\.0\.weight'")
    assert not any(layout.detect({"conv.weight": torch.zeros(1)}) for layout in LAYOUTS)
    # variants the layouts do not cover: ESRGAN+'s extra 1×1 convs, Real-ESRGAN ×2's pixel-unshuffled input,
    # an RCAN with a pixel-unshuffle head
    one_line_error(convert_old, dict(old, **{"model.1.sub.0.RDB1.conv1x1.weight": torch.zeros(32, 8, 1, 1)}),
                   r"^esrgan-old: unexpected key 'model\.1\.sub\.0\.RDB1\.conv1x1\.weight'")
    x2 = old_to(old, BASICSR)
    x2["conv_first.weight"] = torch.zeros(8, 12, 3, 3)
    one_line_error(detect_one(x2).convert, x2, r"^basicsr-rrdbnet: conv_first takes 12 channels for a 3-channel "
                                                r"output: a pixel-unshuffled input \(Real-ESRGAN's ×2 models\)")
    unshuffled = {("head.1." + k[len("head.0."):] if k.startswith("head.0.") else k): v for k, v in rcan_state.items()}
    one_line_error(detect_one(unshuffled).convert, unshuffled, r"^rcan: head\.1 without head\.0: a pixel-unshuffle")


@pytest.mark.parametrize("arch,extra", [("rcan", ["net.body.num_group=1", "net.body.num_block=2"]),
                                        ("rrdb", ["net.body.num_block=1", "net.body.num_grow_ch=8"])])
def test_presets_train_fast_dev_run(arch, extra, folders, tmp_path):
    """`srexp-train arch=rcan|rrdb debug=fdr`, narrow (the full presets are counted in test_nets)."""
    from srexp.cli.train import run

    cfg = compose_cfg("train", shrink(*folder_overrides(folders), f"arch={arch}", "scale=4", "debug=fdr", *extra,
                                      patch=32))
    assert cfg.net.body._target_.endswith({"rcan": "RCANBody", "rrdb": "RRDBBody"}[arch])
    run(cfg, run_dir=str(tmp_path))
