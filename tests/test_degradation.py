"""The degradation stages of srexp/ops (kernels, blur, noise, resize, JPEG) and Real-ESRGAN's second-order pipeline
built from them: shape, range, determinism under a seed, and that each does what it says; the config group's
defaults are the code's and a bad value is one line naming its key."""
from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from srexp.errors import ConfigError
from srexp.ops.degrade import RESIZE_MODES, add_noise, jpeg, noise_field, poisson_noise, resize
from srexp.ops.highorder import FIRST, SECOND, HighOrderDegradation
from srexp.ops.kernels import KINDS, filter2d, gaussian_kernels, pulse, random_kernels, random_sinc, sinc_kernels

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scene(h: int = 96, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A photo-like 8-bit RGB image (1, 3, h, w): smooth gradients, a few discs with sharp edges, fine grain."""
    g = gen(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.3 + 0.4 * x, 0.2 + 0.5 * y, 0.5 + 0.3 * torch.sin(6 * x + 3 * y)])
    for _ in range(6):
        cx, cy, r = torch.rand(3, generator=g)
        m = ((x - cx) ** 2 + (y - cy) ** 2 < (0.05 + 0.2 * r) ** 2).float()
        img = img * (1 - m) + torch.rand(3, 1, 1, generator=g) * m
    img = img + 0.03 * torch.randn(img.shape, generator=g)
    return (torch.round(img.clamp(0, 1) * 255) / 255)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


def draw_kernels(seed: int, n: int = 64, **over) -> torch.Tensor:
    cfg = {k: FIRST[k] for k in ("kernel_prob", "blur_sigma", "betag_range", "betap_range", "sinc_prob")}
    return random_kernels(n, gen(seed), **{**cfg, **over}, dtype=F64)


# ----------------------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("kind", KINDS + ("sinc",))
def test_each_kernel_kind_sums_to_one_is_symmetric_and_has_its_drawn_size(kind):
    only = {"kernel_prob": {kind: 1.0}, "sinc_prob": 0.0} if kind != "sinc" else {"sinc_prob": 1.0}
    k = draw_kernels(0, **only)
    assert k.shape == (64, 21, 21) and torch.allclose(k.sum((1, 2)), torch.ones(64, dtype=F64))
    assert torch.allclose(k, k.flip(-1, -2))  # point-symmetric: correlation = convolution
    if kind == "sinc" or kind.endswith("_iso"):  # radially symmetric kinds: mirror and transpose too
        assert torch.allclose(k, k.flip(-1)) and torch.allclose(k, k.transpose(1, 2))
    if kind != "sinc":
        assert k.min() >= 0
    else:
        assert k.min() < 0  # the sinc's negative lobes
    if not kind.startswith("generalized"):  # (whose tails underflow to 0 at β = 4): the support is the drawn size
        wide = draw_kernels(0, **only, blur_sigma=(3.0, 3.0))
        support = (wide.abs() > 0).any(1).sum(1)  # per kernel: the columns it covers
        assert set(support.tolist()) <= set(range(7, 22, 2)) and len(set(support.tolist())) >= 6
    assert torch.equal(k, draw_kernels(0, **only)) and not torch.equal(k, draw_kernels(1, **only))


def test_gaussian_kernels_match_the_analytic_density_and_covariance():
    s = torch.tensor([1.3], dtype=F64)
    k = gaussian_kernels(21, s)[0]
    t = torch.arange(-10, 11, dtype=F64)
    g1 = torch.exp(-(t**2) / (2 * 1.3**2))
    assert torch.allclose(k, torch.outer(g1, g1) / g1.sum() ** 2)  # isotropic = separable product of 1-D
    # anisotropic: the kernel's second moments are Σ = R diag(σx², σy²) Rᵀ (the window, 10 px ≥ 4σ, cuts ≪ 1e-3)
    sx, sy, th = 1.0, 2.4, 0.6
    k = gaussian_kernels(21, torch.tensor([sx], dtype=F64), torch.tensor([sy], dtype=F64),
                         torch.tensor([th], dtype=F64))[0]
    y, x = torch.meshgrid(t, t, indexing="ij")
    cov = torch.tensor([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    rot = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=F64)
    assert torch.allclose(cov, rot @ torch.diag(torch.tensor([sx**2, sy**2], dtype=F64)) @ rot.T, atol=2e-3, rtol=0)
    # generalized with β = 1 is the Gaussian; β > 1 is flatter near the centre; plateau is 1 / (1 + q^β)
    one = torch.ones(1, dtype=F64)
    assert torch.allclose(gaussian_kernels(21, s, beta=one), gaussian_kernels(21, s))
    flat = gaussian_kernels(21, s, beta=2 * one)[0]
    assert flat[10, 11] / flat[10, 10] > k.new_tensor(math.exp(-0.5 / 1.3**2))
    p = gaussian_kernels(21, s, beta=1.5 * one, plateau=True)[0]
    assert math.isclose(p[10, 10] / p[10, 13], 1 + (9 / 1.3**2) ** 1.5, rel_tol=1e-9)


def test_sinc_passes_below_its_cutoff_and_stops_well_above():
    wc = math.pi / 2
    k = sinc_kernels(21, torch.tensor([wc], dtype=F64))[0]
    gain = torch.fft.fft2(k, s=(256, 256)).abs()
    f = torch.fft.fftfreq(256, dtype=F64) * 2 * math.pi
    r = torch.sqrt(f[:, None] ** 2 + f[None] ** 2)
    passband, stopband = gain[r < 0.7 * wc], gain[r > 1.4 * wc]
    assert passband.mean() > 0.9 and 0.8 < passband.min() and passband.max() < 1.1  # ~1: a truncated sinc ripples
    assert stopband.mean() < 0.02 and stopband.max() < 0.1  # ~0
    final = random_sinc(32, gen(0), p=0.5)
    is_pulse = (final == pulse(32, 21)).all(-1).all(-1)
    assert 0 < is_pulse.sum() < 32 and torch.equal(final, random_sinc(32, gen(0), p=0.5))  # p: sinc or nothing
    assert not torch.equal(final, random_sinc(32, gen(1), p=0.5))


def test_filter2d_is_a_per_sample_reflect_padded_convolution():
    from scipy.ndimage import correlate

    x = torch.rand(3, 2, 24, 20, generator=gen(0), dtype=F64)
    k = draw_kernels(2, n=3)
    y = filter2d(x, k)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1  # non-negative kernels summing to 1: in range
    for n in range(3):
        for c in range(2):  # scipy's "mirror" is torch's "reflect" (the edge pixel not repeated)
            ref = correlate(x[n, c].numpy(), k[n].numpy(), mode="mirror")
            np.testing.assert_allclose(y[n, c].numpy(), ref, atol=1e-12)
    assert torch.equal(filter2d(x, pulse(3, 21, dtype=F64)), x)
    assert filter2d(x[:, :, :6, :6], k).shape == (3, 2, 6, 6)  # smaller than the kernel: replicate padding


# -------------------------------------------------------------------------------------------------------- noise
def test_gaussian_noise_has_its_sigma_and_gray_noise_is_one_field():
    x = torch.full((4, 3, 64, 64), 0.5)
    gray = torch.tensor([False, True, False, True])
    sigma = torch.tensor([5.0, 5.0, 20.0, 0.0])
    y = add_noise(x, noise_field(x, gen(0), gray), sigma)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    std = (y - x).std((1, 2, 3)) * 255
    assert torch.allclose(std, sigma, atol=0.5, rtol=0.03), std
    assert torch.equal(y[1, 0], y[1, 1]) and torch.equal(y[1, 0], y[1, 2])  # gray: the same in every channel
    assert not torch.equal(y[0, 0], y[0, 1])  # colour: not
    again = add_noise(x, noise_field(x, gen(0), gray), sigma)
    assert torch.equal(y, again) and not torch.equal(y, add_noise(x, noise_field(x, gen(1), gray), sigma))
    assert add_noise(torch.ones(1, 3, 8, 8), noise_field(torch.ones(1, 3, 8, 8), gen(0)), torch.tensor([50.0])).max() <= 1


def test_poisson_noise_variance_grows_with_the_signal():
    """With all 256 levels present, v = 256: the noise variance is scale² · x / 256 (shot noise), here per region."""
    x = torch.zeros(2, 3, 64, 128)
    x[..., :32, :64], x[..., :32, 64:] = 0.2, 0.8
    x[..., 32:, :] = torch.arange(256.0).repeat(32 * 128 // 256).view(32, 128) / 255  # every level, v = 256
    scale = torch.tensor([1.0, 2.0])
    y = poisson_noise(x, scale, gen(0), gray=torch.tensor([False, True]))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    for n, s in enumerate((1.0, 2.0)):
        for level, region in ((0.2, (slice(None, 32), slice(None, 64))), (0.8, (slice(None, 32), slice(64, None)))):
            var = (y[n][:, region[0], region[1]] - level).var()
            expect = s**2 * round(level * 255) / 255 / 256
            assert abs(var / expect - 1) < 0.1, (n, level, float(var), expect)
    assert torch.equal(y[1, 0], y[1, 1]) and torch.equal(y[1, 1], y[1, 2]) and not torch.equal(y[0, 0], y[0, 1])
    assert torch.equal(y, poisson_noise(x, scale, gen(0), gray=torch.tensor([False, True])))
    assert not torch.equal(y, poisson_noise(x, scale, gen(1), gray=torch.tensor([False, True])))


# ------------------------------------------------------------------------------------------------------- resize
@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_resize_gives_the_size_and_keeps_the_mean(mode):
    x = scene(48, 40)
    for size in ((24, 20), (61, 50), (48, 40)):
        y = resize(x, size, mode)
        assert y.shape == (1, 3, *size) and abs(float(y.mean() - x.mean())) < 0.01
        if mode != "bicubic":  # averages of the input: in range (bicubic may overshoot; the pipeline clips)
            assert 0 <= y.min() and y.max() <= 1
    assert torch.equal(resize(x, (48, 40), mode), x)


# --------------------------------------------------------------------------------------------------------- JPEG
def test_jpeg_at_quality_q_round_trips_like_pil():
    """Measured on this image for q = 30…95 in steps of 5: 38.3–45.6 dB between ours and PIL's (libjpeg) decode
    (integer vs float DCT: a coefficient rounded the other way changes a whole block); the bound keeps 2 dB of
    margin. Both are far from the source: 25.7–29.4 dB."""
    x = scene(90, 70)
    qs = (30, 40, 50, 60, 75, 95)
    ours = jpeg(x.repeat(len(qs), 1, 1, 1), torch.tensor(qs, dtype=torch.float32))
    assert ours.shape == (len(qs), 3, 90, 70) and torch.equal(ours, torch.round(ours * 255) / 255)
    to_source = []
    for k, q in enumerate(qs):
        buf = io.BytesIO()
        Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(buf, format="JPEG", quality=q)
        pil = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)[None].float() / 255
        assert psnr(ours[k : k + 1], pil) > 36 > psnr(pil, x) + 5, q
        to_source.append(psnr(ours[k : k + 1], x))
    assert to_source == sorted(to_source)  # higher quality, closer to the source


# ---------------------------------------------------------------------------------------------- the whole pipeline
def test_second_order_pipeline_gives_the_lr_size_and_is_seeded_by_step():
    hr = scene(64, 48).repeat(3, 1, 1, 1)
    deg = HighOrderDegradation(seed=5)
    a = deg(hr, 4, step=11)
    assert a.shape == (3, 3, 16, 12) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, torch.round(a * 255) / 255)  # 8-bit values
    assert torch.equal(a, deg(hr, 4, step=11))  # a resumed run: the same batch at the same step
    assert not torch.equal(a, deg(hr, 4, step=12)) and not torch.equal(a, HighOrderDegradation(seed=6)(hr, 4, 11))
    assert deg(hr, 2, step=0).shape == (3, 3, 32, 24) and deg(hr[:, :1], 4, step=0).shape == (3, 1, 16, 12)
    clean = resize(hr, (16, 12), "area")
    assert (a - clean).abs().mean() > 0.01  # degraded, not just resized
    other_rank = deg.apply(hr, *deg.generators(11, "cpu", rank=1), scale=4)
    assert torch.equal(a, deg.apply(hr, *deg.generators(11, "cpu"), scale=4)) and not torch.equal(a, other_rank)
    ga, gb = gen(3), gen(3)
    assert torch.equal(deg.apply(hr, ga, scale=4), deg.apply(hr, gb, scale=4))  # one generator state, one batch
    # the draws vary across steps: the per-batch choices (resize factor, noise kind, order) show in the spread
    spread = {float((deg(hr, 4, step=s) - clean).abs().mean()) for s in range(6)}
    assert len(spread) == 6


def test_second_order_pipeline_with_every_stage_off_is_one_resize_to_the_lr_size():
    """Blur, noise and the final sinc off, sizes kept (a 1-channel batch skips JPEG): what is left is the second
    round's resize to the LR size, in one of the three modes, rounded to 8 bits."""
    off = {"blur_prob": 0.0, "resize_prob": [0.0, 0.0, 1.0], "gaussian_noise_prob": 1.0, "noise_range": [0.0, 0.0]}
    deg = HighOrderDegradation(first=off, second=off, final_sinc_prob=0.0)
    hr = scene(64, 48)[:, :1].repeat(2, 1, 1, 1)
    for step in range(3):
        lr = deg(hr, 4, step)
        assert any(torch.equal(lr, torch.round(resize(hr, (16, 12), m).clamp(0, 1) * 255) / 255) for m in RESIZE_MODES)


def test_the_config_group_holds_the_code_defaults_and_rejects_bad_values():
    from conftest import compose_cfg

    from srexp.nets import build_net

    cfg = compose_cfg("train", ["task/degradation=realesrgan", "scale=4"])
    deg = build_net(cfg.task.degradation)
    assert isinstance(deg, HighOrderDegradation) and deg.seed == cfg.seed
    assert deg.rounds == (HighOrderDegradation().rounds)  # the YAML's numbers are the code's (both cited)
    assert deg.rounds[0]["noise_range"] == FIRST["noise_range"] and deg.rounds[1]["blur_prob"] == SECOND["blur_prob"]
    bad = {"second.resize_prob": ([0.5, 0.6, 0.3], r"second.resize_prob=\[0.5, 0.6, 0.3\]: .* sum to 1"),
           "first.gray_noise_prob": (1.5, r"first.gray_noise_prob=1.5 is not a probability"),
           "first.jpeg_range": ([0, 50], r"first.jpeg_range=\[0, 50\]: needs 1 ≤ low"),
           "second.kernel_size": ([8, 21], r"second.kernel_size=\[8, 21\]: needs .* odd"),
           "final_sinc_prob": (-0.1, r"final_sinc_prob=-0.1 is not a probability"),
           "first.resize_range": ([1.2, 1.5], r"first.resize_range=\[1.2, 1.5\]: needs low ≤ 1 ≤ high"),
           "first.kernel_prob.box": (1.0, r"first.kernel_prob: needs a mapping of kernel kinds"),
           "second.blur": (1, r"second has unknown keys \['blur'\]")}
    for key, (value, message) in bad.items():
        c = copy.deepcopy(cfg.task.degradation)
        OmegaConf.update(c, key, value, force_add=True)
        with pytest.raises(ConfigError, match="^task.degradation." + message) as e:
            build_net(c)
        assert "\n" not in str(e.value)


def test_second_order_degradation_trains_through_the_composed_config(folders, tmp_path):
    """SRTask makes each training LR with it (on_after_batch_transfer): one fast_dev_run step at ×2."""
    from conftest import compose_cfg, folder_overrides, shrink

    from srexp.cli.train import run

    cfg = compose_cfg("train", shrink(*folder_overrides(folders), "task/degradation=realesrgan", "debug=fdr"))
    assert cfg.task.degradation._target_.endswith("HighOrderDegradation")
    run(cfg, run_dir=str(tmp_path))
