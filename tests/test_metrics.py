import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from srexp.data.images import list_images, load_image
from srexp.metrics import PROTOCOLS, SRMetrics, get_protocol, psnr_ssim, ssim
from srexp.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from srexp.ops.resize import imresize


def test_y_of_known_colours():
    rgb = torch.tensor([[[0]], [[0]], [[0]]], dtype=torch.uint8)
    assert rgb_to_y(rgb).item() == 16
    assert rgb_to_y(torch.full((3, 1, 1), 255, dtype=torch.uint8)).item() == 235
    red = torch.tensor([[[255]], [[0]], [[0]]], dtype=torch.uint8)
    assert rgb_to_y(red).item() == round(16 + 65.481)
    assert rgb_to_y(torch.zeros(1, 4, 4)).shape == (1, 4, 4)  # grayscale is used as it is


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-10)


def test_psnr_known_value_and_shave():
    hr = torch.full((1, 1, 20, 20), 100.0, dtype=torch.float64)
    sr = hr + 1.0
    psnr, s = psnr_ssim(sr, hr, border=2)
    assert psnr.item() == pytest.approx(10 * math.log10(255**2 / 1.0), abs=1e-9)
    # errors only in the shaved border do not count
    sr2 = hr.clone()
    sr2[..., :2, :] += 50
    assert psnr_ssim(sr2, hr, border=2)[0].item() == float("inf")
    assert psnr_ssim(sr2, hr, border=1)[0].item() < 40


def test_ssim_identity_and_valid_filtering():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64) * 255
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    y = (x + torch.randn(x.shape, generator=g, dtype=torch.float64) * 10).clamp(0, 255)
    # 'valid' SSIM = torchmetrics' full-map SSIM restricted to the windows that fit inside the image
    _, full_map = tm_ssim(y, x, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0,
                          reduction="none", return_full_image=True)
    assert torch.allclose(ssim(y, x), full_map[..., 5:-5, 5:-5].mean(dim=(1, 2, 3)), atol=1e-10)
    assert ssim(y, x).max() < 0.999  # noise lowers it


def test_srmetrics_averages_per_image():
    m = SRMetrics(border=0)
    hr = torch.full((1, 1, 16, 16), 100.0, dtype=torch.float64)
    m.update(hr + 1, hr)
    m.update(hr + 2, hr)
    expected = (10 * math.log10(255**2) + 10 * math.log10(255**2 / 4)) / 2
    assert m.compute()["psnr"].item() == pytest.approx(expected)


def test_unknown_protocol_is_one_line():
    with pytest.raises(ValueError, match=r"protocol='nope' is unknown \(valid: y_float, rgb_uint8\)"):
        get_protocol("nope")


def test_protocols_differ_in_lr_making():
    g = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (3, 24, 24), generator=g, dtype=torch.uint8)
    lr_y, ref_y = PROTOCOLS["y_float"].degrade(hr, 2, channels=1)
    lr_rgb, ref_rgb = PROTOCOLS["rgb_uint8"].degrade(hr, 2, channels=3)
    assert lr_y.shape == (1, 12, 12) and lr_rgb.shape == (3, 12, 12)
    assert torch.equal(ref_y, ref_y.round())  # y_float: Y rounded like rgb2ycbcr on uint8
    assert not torch.equal(ref_rgb, ref_rgb.round())  # rgb_uint8: Y not rounded
    assert torch.equal(lr_rgb * 255, (lr_rgb * 255).round())  # LR is uint8-valued


@pytest.mark.parametrize("scale,psnr,ssim_", [(2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104)])
def test_bicubic_set5_y_float_matches_paper(shared_data, scale, psnr, ssim_):
    proto = PROTOCOLS["y_float"]
    ps, ss = [], []
    for f in list_images(shared_data / "Set5"):
        lr, ref = proto.degrade(load_image(f), scale, channels=1)
        p, s = psnr_ssim(proto.sr_to_y(imresize(lr[None], scale=scale)), ref[None], scale)
        ps.append(p.item())
        ss.append(s.item())
    assert sum(ps) / len(ps) == pytest.approx(psnr, abs=0.01)
    assert sum(ss) / len(ss) == pytest.approx(ssim_, abs=0.001)
