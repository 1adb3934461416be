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


@pytest.mark.parametrize("protocol,channels", [("rgb_uint8", 3), ("y_float", 1)])
def test_eval_and_training_validation_give_the_same_numbers(tmp_path, protocol, channels):
    """srexp-eval's measurement (tasks.benchmark.evaluate_set) runs the validation code of training: a net validated
    by Lightning on a folder and evaluated on it agree to the last bit, bicubic's column included."""
    import lightning as L

    from conftest import compose_cfg, write_images
    from srexp.data.datamodule import SRDataModule
    from srexp.nets import build_net
    from srexp.tasks.benchmark import evaluate_set
    from srexp.tasks.sr import SRTask

    write_images(tmp_path / "val", n=3, size=(50, 38))
    torch.manual_seed(0)
    net = build_net(compose_cfg("train", ["arch=espcn", "scale=2", f"channels={channels}"]).net)
    task = SRTask(net, torch.nn.L1Loss(), optimizer=torch.optim.Adam, scale=2, protocol=protocol)
    dm = SRDataModule(train=[], val=[str(tmp_path / "val")], scale=2, channels=channels, protocol=protocol, num_workers=0)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    logged = trainer.validate(task, datamodule=dm, verbose=False)[0]
    row = evaluate_set(net, str(tmp_path / "val"), 2, protocol, channels, None, "cpu")
    assert row["n_images"] == 3 and row["protocol"]["name"] == protocol
    assert row["psnr"] == pytest.approx(logged["val/psnr"], abs=1e-5)  # logged as float32
    assert row["bicubic_psnr"] == pytest.approx(logged["val/bicubic_psnr"], abs=1e-5)
    assert [r["psnr"] for r in row["per_image"].values()] == [r["psnr"] for r in task.val_rows]
    assert row["protocol"] == task.protocol.stamp(2, dm.val_hash)
