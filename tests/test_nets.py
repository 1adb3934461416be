"""The network zoo: every preset composes from the real config, has the right output size, trains (every
parameter gets a gradient) and has the parameter count the README table states."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from conftest import BIG_PRESETS, slow_for
from srexp import CONF_DIR
from srexp.nets import ConfigError, build_net
from srexp.nets.upsample import PixelShuffleUp, ReshapeUp

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
PRESETS = sorted(p.stem for p in (CONF / "arch").glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONF / "net" / "strategy").glob("*.yaml"))
BODIES = sorted(p.stem for p in (CONF / "net" / "body").glob("*.yaml"))
UPSAMPLES = sorted(p.stem for p in (CONF / "net" / "upsample").glob("*.yaml"))
LR = (7, 9)  # odd on purpose: validation runs on whole images of any size



def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def outputs(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    y = net(x)
    return y if isinstance(y, list) else [y]


def dead_attention(net: torch.nn.Module) -> tuple[set[str], list]:
    """Hooks recording, per channel-attention module (RCAN), whether its squeeze ReLU is inactive for the whole batch:
    then the squeeze conv and the excite conv's weight get an exact zero gradient (a dead ReLU at init, as in the
    official RCAN), which is not a disconnected parameter. Returns the set the hooks fill and the handles."""
    from srexp.nets.residual import ChannelAttention

    dead: set[str] = set()
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, ChannelAttention):
            def hook(_mod, _inp, out, name=name):
                if not (out > 0).any():
                    dead.update(f"{name}.attend.{k}" for k in ("0.weight", "0.bias", "2.weight"))
            handles.append(m.attend[1].register_forward_hook(hook))
    return dead, handles


def check_forward_backward(net: torch.nn.Module, channels: int, scale: int) -> None:
    """Output sizes (×2, ×4, … for progressive; the last one ×scale) and a gradient for every parameter (exactly
    zero only behind a channel attention's ReLU that is inactive for the whole batch: :func:`dead_attention`)."""
    x = torch.rand(2, channels, *LR)
    dead, handles = dead_attention(net)
    ys = outputs(net, x)
    for h in handles:
        h.remove()
    assert ys[-1].shape == (2, channels, LR[0] * scale, LR[1] * scale)
    for k, y in enumerate(ys[:-1], start=1):
        assert y.shape == (2, channels, LR[0] * 2**k, LR[1] * 2**k)
    if num_params(net) == 0:  # the interpolation baselines
        return
    sum(y.square().mean() for y in ys).backward()
    missing = [n for n, p in net.named_parameters()
               if p.grad is None or not (p.grad.abs().sum() > 0 or (n in dead and p.grad.abs().sum() == 0))]
    assert not missing, f"no gradient for {missing[:5]}"


def table_counts() -> dict[str, tuple[int, int]]:
    """``preset -> (params ×2, params ×4)`` from README's ``## Network presets``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Network presets", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| preset"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    i2, i4 = cols.index("params ×2"), cols.index("params ×4")
    counts = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == len(cols) and re.fullmatch(r"[\d,]+", cells[i2]):
            counts[cells[0]] = (int(cells[i2].replace(",", "")), int(cells[i4].replace(",", "")))
    return counts


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", slow_for(PRESETS, BIG_PRESETS))
def test_preset(name: str, scale: int) -> None:
    cfg = compose_cfg(f"arch={name}", f"scale={scale}")
    if cfg.net._target_.endswith("ProgressiveUpsample") and scale & (scale - 1):
        with pytest.raises(ConfigError, match=r"^net\.strategy=progressive .*scale=3 \(valid: 2, 4, 8\)$") as e:
            build_net(cfg.net)
        assert "\n" not in str(e.value)
        return
    torch.manual_seed(0)
    net = build_net(cfg.net)
    assert net.scale == scale
    if name != "custom" and scale in (2, 4):
        assert num_params(net) == table_counts()[name][scale // 2 - 1], "README table is stale: rerun " \
            "python -m srexp.nets.table"
    check_forward_backward(net, cfg.channels, scale)


def test_table_lists_every_preset() -> None:
    assert set(table_counts()) == set(PRESETS) - {"custom"}


def test_paper_sizes() -> None:
    vdsr = build_net(compose_cfg("arch=vdsr", "scale=4").net)
    assert abs(num_params(vdsr) - 665_000) <= 1_000
    assert num_params(build_net(compose_cfg("arch=edsr", "scale=4").net)) == pytest.approx(43e6, rel=0.01)
    assert num_params(build_net(compose_cfg("arch=edsr_baseline", "scale=4").net)) == pytest.approx(1.5e6, rel=0.02)
    # the 16M presets (slow in test_preset): ×4 built here against the table and the published counts
    rcan, rrdb = (num_params(build_net(compose_cfg(f"arch={a}", "scale=4").net)) for a in ("rcan", "rrdb"))
    assert (rcan, rrdb) == (table_counts()["rcan"][1], table_counts()["rrdb"][1])
    assert rcan == pytest.approx(16e6, rel=0.03) and rrdb == 16_697_987
    # SRCNN and FSRCNN papers count weights only
    for name, paper in (("srcnn", 8_032), ("srcnn_955", 57_184), ("fsrcnn", 12_464)):
        net = build_net(compose_cfg(f"arch={name}", "scale=3").net)
        assert sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and p.dim() == 4) == paper


def test_paper_init() -> None:
    """Init is part of the preset: SRCNN N(0, 1e-3²), VDSR He (std √(2/fan_in)), LapSRN bilinear deconvs."""
    torch.manual_seed(0)
    srcnn = build_net(compose_cfg("arch=srcnn").net)
    assert srcnn.conv_first[0].weight.std().item() == pytest.approx(1e-3, rel=0.1)
    assert srcnn.conv_first[0].bias.abs().max() == 0
    vdsr = build_net(compose_cfg("arch=vdsr").net)
    assert vdsr.body[5][0].weight.std().item() == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)
    lapsrn = build_net(compose_cfg("arch=lapsrn", "scale=2").net)
    deconv = lapsrn.image_ups[0].deconv
    x = torch.rand(1, 1, 6, 6)
    y = deconv(x)  # bilinear ×2: interior pixels match bilinear interpolation with align_corners=False
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_x_upsample(strategy: str, upsample: str) -> None:
    """Free composition from the group files' own defaults: builds, one optimizer step, right shapes."""
    cfg = compose_cfg(f"net/strategy={strategy}", f"net/upsample={upsample}", "net/body=plain", "scale=4",
                      "net.num_feat=8", "net.body.num_block=1")
    torch.manual_seed(0)
    net = build_net(cfg.net)
    x, hr = torch.rand(2, cfg.channels, *LR), torch.rand(2, cfg.channels, LR[0] * 4, LR[1] * 4)
    ys = outputs(net, x)
    assert ys[-1].shape == hr.shape
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    sum(torch.nn.functional.l1_loss(y, torch.nn.functional.interpolate(hr, size=y.shape[-2:])) for y in ys).backward()
    assert all(p.grad is not None for p in net.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_any_body_under_any_strategy(strategy: str, body: str) -> None:
    cfg = compose_cfg(f"net/strategy={strategy}", f"net/body={body}", "scale=2", "net.num_feat=8")
    net = build_net(cfg.net)
    check_forward_backward(net, cfg.channels, 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["arch=lapsrn", "scale=3"], r"^net\.strategy=progressive needs a power-of-2 scale, got scale=3"),
        (["net/strategy=progressive", "scale=6"], r"^net\.strategy=progressive .*scale=6 \(valid: 2, 4, 8\)$"),
        (["net/upsample=transposed", "net.upsample.kernel_size=3", "scale=4", "net.stepwise=false"],
         r"^net\.upsample\.kernel_size=3 cannot do scale=4 \(valid: kernel_size >= 4"),
        (["net/upsample=interpolate", "net.upsample.mode=area"], r"^net\.upsample\.mode=area is unknown \(valid:"),
        (["arch=espcn", "net/upsample=interpolate", "net.upsample.kernel_size=0"], r"^net\.upsample\.kernel_size=0 cannot map 32 to 1 channels"),
        (["arch=edsr_baseline", "channels=1"], r"^net\.rgb_mean has 3 values for channels=1"),
        (["arch=rcan", "net/strategy=iterative", "net.num_feat=8", "net.body.num_block=1"],
         r"^net\.act=null: the iterative projection units need an activation"),
        (["arch=rrdb", "net.last_kernel=0", "net.num_feat=8", "net.body.num_block=1"],
         r"^net\.hr_kernel=3 needs a last conv after it, got net\.last_kernel=0"),
        (["arch=compact", "net.out_channels=1"], r"^net\.residual=nearest with 3 → 1 channels is not supported"),
        (["arch=compact", "net.residual=bicubic"], r"^net\.residual=bicubic with 3 → 3 channels is not supported"),
    ],
)
def test_bad_configs_fail_in_one_line(overrides: list[str], message: str) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError, match=message) as e:
        build_net(cfg.net)
    assert "\n" not in str(e.value)
    with pytest.raises(InstantiationException) as wrapped:  # plain hydra instantiate: the cause is kept
        instantiate(cfg.net)
    assert isinstance(wrapped.value.__cause__, ConfigError)


@pytest.mark.parametrize("overrides, keys, target", [
    (["net/strategy=pre"], ["net.hr_kernel", "net.hr_act"], "PreUpsample"),  # the post-only keys of the preset
    (["net/upsample=pixel_shuffle"], ["net.upsample.mode"], "PixelShuffleUp"),  # an interpolate-only key, nested
])
def test_keys_the_chosen_class_does_not_take_are_one_line(overrides, keys, target) -> None:
    """A preset's axis-specific keys after switching that axis: one line naming the keys, the class and its keys."""
    cfg = compose_cfg("arch=rrdb", "net.num_feat=8", "net.body.num_block=1", *overrides)
    verb = "is not an option" if len(keys) == 1 else "are not options"
    drop = " ".join(f"~{k}" for k in keys)
    with pytest.raises(ConfigError, match=rf"^{re.escape(' and '.join(keys))} {verb} of srexp\.nets\.\w+\.{target} "
                                          rf"\(drop with {re.escape(drop)}; valid: in_channels, ") as e:
        build_net(cfg.net)
    assert "\n" not in str(e.value)
    cfg = compose_cfg("arch=rrdb", "net.num_feat=8", "net.body.num_block=1", *overrides, *drop.split())
    check_forward_backward(build_net(cfg.net), 3, 2)  # dropped as the message says: it builds and trains


def test_reshape_vs_pixel_shuffle_placement() -> None:
    """4 channels of 2×3 (channel k holds 6k … 6k+5) to one 4×6 channel at r = 2."""
    x = torch.arange(24.0).view(1, 4, 2, 3)
    shuffled = PixelShuffleUp(1, 1, 2).to_space(x)[0, 0]
    reshaped = ReshapeUp(1, 1, 2).to_space(x)[0, 0]
    # pixel shuffle: each 2×2 output block is one LR position, its 4 sub-pixels from the 4 channels
    assert shuffled.tolist() == [[0, 6, 1, 7, 2, 8],
                                 [12, 18, 13, 19, 14, 20],
                                 [3, 9, 4, 10, 5, 11],
                                 [15, 21, 16, 22, 17, 23]]
    # naive reshape: channel k becomes output band k (here one row), its two LR rows side by side
    assert reshaped.tolist() == [[0, 1, 2, 3, 4, 5],
                                 [6, 7, 8, 9, 10, 11],
                                 [12, 13, 14, 15, 16, 17],
                                 [18, 19, 20, 21, 22, 23]]
    assert shuffled[:2, :2].flatten().tolist() == [0, 6, 12, 18]  # one LR pixel, four channels
    assert reshaped[:2, :2].flatten().tolist() == [0, 1, 6, 7]  # two channels, four LR pixels


def test_upsample_layers_exact_size() -> None:
    """Every layer is exactly ×r on odd sizes for r = 2, 3, 4, 8 (transposed: any kernel >= r)."""
    x = torch.rand(1, 4, 5, 7)
    layers = {name: compose_cfg(f"net/upsample={name}").net.upsample for name in UPSAMPLES}
    for r in (2, 3, 4, 8):
        for name, cfg in layers.items():
            layer = instantiate(cfg)(in_channels=4, out_channels=4, scale=r)
            assert layer(x).shape == (1, 4, 5 * r, 7 * r), (name, r)
        for k in range(r, r + 6):
            layer = instantiate(layers["transposed"], kernel_size=k)(in_channels=4, out_channels=2, scale=r)
            assert layer(x).shape == (1, 2, 5 * r, 7 * r), (k, r)


def test_bicubic_preset_is_matlab_imresize() -> None:
    from srexp.ops.resize import imresize

    net = build_net(compose_cfg("arch=bicubic", "scale=3").net)
    x = torch.rand(1, 3, 7, 9)
    assert torch.equal(net(x), imresize(x, scale=3))


@pytest.mark.parametrize("k,scale,cin,cout", [(9, 3, 56, 1), (9, 2, 8, 3), (9, 4, 4, 1), (4, 2, 6, 6), (6, 2, 3, 2),
                                               (8, 4, 2, 2), (3, 3, 2, 2), (12, 8, 2, 2), (7, 2, 2, 2), (5, 1, 3, 3)])
def test_transposed_subpixel_is_the_same_layer(k, scale, cin, cout):
    """impl=subpixel (conv + pixel_shuffle from the gathered ConvTranspose2d weight) computes the deconvolution:
    same output, same gradients for the input, weight and bias, on odd sizes."""
    from srexp.nets.upsample import TransposedUp

    torch.manual_seed(k * 10 + scale)
    up = TransposedUp(cin, cout, scale, k, impl="deconv")
    x = torch.randn(2, cin, 5, 7, requires_grad=True)
    grads = []
    for impl in ("deconv", "subpixel"):
        up.deconv.impl = impl
        y = up(x)
        assert y.shape == (2, cout, 5 * scale, 7 * scale)
        grads.append([y, *torch.autograd.grad(y.square().sum(), [x, up.deconv.weight, up.deconv.bias])])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * a.abs().max().item())


def test_transposed_impl_is_checked():
    from srexp.nets.upsample import TransposedUp

    with pytest.raises(ConfigError, match="net.upsample.impl=nope is unknown"):
        TransposedUp(4, 4, 2, impl="nope")


def test_subpixel_deconv_keeps_macs_and_receptive_field():
    """The hooks that count MACs and bound the tiling overlap see the layer whichever way it is computed."""
    from srexp.nets.stats import macs_per_lr_pixel
    from srexp.nets.stats import receptive_radius

    cfg = compose_cfg("arch=fsrcnn", "scale=3")
    seen = []
    for impl in ("deconv", "subpixel"):
        net = build_net(cfg.net)
        for m in net.modules():
            if hasattr(m, "impl"):
                m.impl = impl
        seen.append((macs_per_lr_pixel(net, 1), receptive_radius(net, 1)))
    assert seen[0] == seen[1] and seen[0][0] > 0 and seen[0][1] > 0
