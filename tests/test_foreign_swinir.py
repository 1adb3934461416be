"""SwinIR: srexp's body against the official architecture (spandrel's copy of it) through the converter of the
official weight layout, exact on an image that is not a multiple of the window; its statistics and config errors."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import compose_cfg, folder_overrides, shrink
from spandrel_ref import spandrel
from srexp import CONF_DIR
from srexp.cli.train import run
from srexp.nets import ConfigError, build_net
from srexp.nets.foreign import ForeignCheckpointError
from srexp.nets.foreign.swinir import LAYOUTS, convert
from srexp.nets.stats import macs_per_lr_pixel, receptive_radius
from srexp.nets.swinir import WindowAttention

TINY = ["net.num_feat=12", "net.body.depths=[2]", "net.body.heads=[2]", "net.body.window=4"]


def official(upsampler: str, scale: int):
    """The official SwinIR (spandrel's copy) at a tiny size, random weights, in eval mode."""
    spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(scale)
    net = SwinIR(upscale=scale, img_size=16, window_size=4, embed_dim=12, depths=[2, 2], num_heads=[2, 3],
                 mlp_ratio=2, upsampler=upsampler, img_range=1.0).eval()
    with torch.no_grad():  # random LayerNorms and biases too (the official init zeroes the biases)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def srexp_net(overrides: list[str]) -> torch.nn.Module:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return build_net(compose("train", overrides=overrides).net).eval()


@pytest.mark.parametrize("upsampler,scale,arch", [("pixelshuffle", 4, "swinir"), ("pixelshuffle", 3, "swinir"),
                                                  ("pixelshuffledirect", 3, "swinir_light")])
def test_converted_official_weights_give_the_same_output(upsampler, scale, arch):
    ref = official(upsampler, scale)
    state = ref.state_dict()
    assert any(k.endswith("attn_mask") for k in state)  # the file form with the masks (sized for img_size)
    layouts = [layout for layout in LAYOUTS if layout.detect(state)]
    assert [layout.arch for layout in layouts] == [arch]
    x = torch.rand(2, 3, 13, 10)  # neither side a multiple of the window (4): the image is padded, output cropped
    with torch.no_grad():
        expected = ref(x)
    for form in ("with masks", "without masks"):
        if form == "without masks":
            state = {k: v for k, v in state.items() if not k.endswith("attn_mask")}
        c = layouts[0].convert(state)
        assert c.overrides[:4] == [f"arch={arch}", f"scale={scale}", "channels=3", "net.num_feat=12"]
        assert {"net.body.depths=[2,2]", "net.body.heads=[2,3]", "net.body.window=4"} <= set(c.overrides)
        assert c.protocol == "rgb_uint8"
        net = srexp_net(c.overrides)
        net.load_state_dict(c.state, strict=True)
        with torch.no_grad():
            y = net(x)
        assert y.shape == expected.shape == (2, 3, 13 * scale, 10 * scale)
        assert (y - expected).abs().max().item() <= 1e-5, form


def test_mismatched_or_unsupported_checkpoint_is_one_line():
    state = dict(official("pixelshuffle", 2).state_dict())
    key = "layers.1.residual_group.blocks.1.attn.relative_position_bias_table"
    state[key] = torch.zeros(25, 3)  # a 3×3 window's table in a window-4 net
    with pytest.raises(ForeignCheckpointError, match=rf"^SwinIR checkpoint: {key} has shape \[25, 3\], expected "
                                                     r"\[49, 3\] \(embed_dim 12, window 4, 3 heads") as e:
        convert(state)
    assert "\n" not in str(e.value)
    real = dict(official("pixelshuffle", 2).state_dict(), **{"conv_up1.weight": torch.zeros(1)})
    with pytest.raises(ForeignCheckpointError, match=r"^SwinIR checkpoint: 'nearest\+conv' upsampler .* not supported"):
        convert(real)


def test_attention_is_counted_and_turns_tiling_off():
    net = srexp_net(["arch=swinir_light", "scale=2", *TINY])
    assert receptive_radius(net, 3) is None  # windows aligned to the image: tiles would see other windows
    with_attention = macs_per_lr_pixel(net)
    mp = pytest.MonkeyPatch()
    mp.delattr(WindowAttention, "matmul_macs")
    try:
        linear_and_conv = macs_per_lr_pixel(net)
    finally:
        mp.undo()
    # q·kᵀ and attn·v: 2·N·C MACs per pixel per Swin layer (N = 4² window pixels, C = 12, two layers)
    assert with_attention - linear_and_conv == 2 * 16 * 12 * 2


def test_body_keeps_any_size_and_refuses_bad_configs_in_one_line():
    from srexp.nets.swinir import SwinIR

    body = SwinIR(12, depths=[2], heads=[3], window=4, out_feat=16)
    assert body.out_channels == 16 and body(torch.rand(1, 12, 5, 7)).shape == (1, 16, 5, 7)
    for overrides, message in [(["net.body.heads=[5]"], r"^net\.body\.heads=\[5\] must divide the width "
                                                        r"net\.num_feat=12"),
                               (["net.body.depths=[2,2]"], r"^net\.body\.depths=\[2, 2\] and net\.body\.heads=\[2\]")]:
        cfg = compose_cfg("train", ["arch=swinir_light", *TINY, *overrides])
        with pytest.raises(ConfigError, match=message) as e:
            build_net(cfg.net)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [["arch=swinir", "net/upsample=transposed", "scale=4"],
                                       ["arch=swinir_light", "net/upsample=interpolate", "scale=3"]])
def test_presets_compose_with_other_axes(overrides):
    """The presets' own settings under another upsample layer (the body under every strategy: test_nets)."""
    net = srexp_net([*overrides, *TINY])
    x = torch.rand(1, 3, 5, 6)
    y = net(x)
    y = y[-1] if isinstance(y, list) else y
    s = net.scale
    assert y.shape == (1, 3, 5 * s, 6 * s)
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("arch", ["swinir", "swinir_light"])
def test_fast_dev_run_tiny(arch, folders, tmp_path):
    """arch=… debug=fdr, shrunk (at paper size both are in test_train's slow tier: conftest.BIG_PRESETS)."""
    cfg = compose_cfg("train", shrink(*folder_overrides(folders), f"arch={arch}", "scale=2", "debug=fdr", *TINY,
                                      width=None))
    run(cfg, run_dir=str(tmp_path))
