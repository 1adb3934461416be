
import numpy as np
import pytest
import torch
from PIL import Image

from srexp.data.benchmarks import DataNotFoundError, find_set, resolve
from srexp.data.datamodule import Pair, PatchDataset, SRDataModule, load_item, make_pair
from srexp.data.images import ImageError, load_image

from conftest import write_images


def test_pairs_are_aligned_with_augmentation():
    # HR = LR repeated s×s (nearest), so an aligned crop satisfies hr[::s, ::s] == lr after any flip/rot90
    s = 3
    lr = torch.arange(3 * 20 * 25, dtype=torch.int64).reshape(3, 20, 25) % 251
    lr = lr.to(torch.uint8)
    hr = lr.repeat_interleave(s, -1).repeat_interleave(s, -2)
    ds = PatchDataset([Pair("p", lr, hr, hr[:1].double())], patch_size=12, scale=s, length=200, augment=True, seed=1)
    seen_flips = set()
    for k in range(len(ds)):
        l, h = ds[k]
        assert l.shape == (3, 4, 4) and h.shape == (3, 12, 12)
        assert torch.equal(h[:, ::s, ::s], l)
        assert torch.equal(h[:, 1::s, 2::s], l)
        seen_flips.add(bool(l[0, 0, 0] > l[0, 0, 1]))
    assert seen_flips == {True, False}  # augmentation happened


def test_sample_is_a_function_of_seed_and_index():
    g = torch.Generator().manual_seed(0)
    lr = torch.randint(0, 256, (3, 30, 30), generator=g, dtype=torch.uint8)
    hr = lr.repeat_interleave(2, -1).repeat_interleave(2, -2)
    pair = [Pair("p", lr, hr, hr[:1].double())]
    a, b = PatchDataset(pair, 16, 2, 10, seed=3), PatchDataset(pair, 16, 2, 10, seed=3)
    assert all(torch.equal(a[k][0], b[k][0]) for k in range(10))
    assert not torch.equal(PatchDataset(pair, 16, 2, 10, seed=4)[0][0], a[0][0])


def test_make_pair_lr_is_exact_resize_of_modcropped_whole_image():
    from srexp.ops.resize import imresize

    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 50, 47), generator=g, dtype=torch.uint8)
    p = make_pair("x", img, 3, 3, "rgb_uint8")
    assert p.hr.shape == (3, 48, 45) and p.lr.dtype == torch.uint8
    assert torch.equal(p.lr, imresize(img[:, :48, :45], scale=1 / 3))
    gray = make_pair("g", img[:1], 2, 3, "rgb_uint8")  # gray → RGB for an RGB net
    assert gray.hr.shape[0] == 3 and torch.equal(gray.hr[0], gray.hr[2])
    y = make_pair("y", img, 2, 1, "y_float")
    assert y.lr.dtype == torch.float32 and y.lr.shape[0] == 1 and y.hr.dtype == torch.uint8


def test_datamodule_on_a_folder(tmp_path):
    write_images(tmp_path / "train", n=3)
    write_images(tmp_path / "val", n=2, seed=1)
    dm = SRDataModule(train=[str(tmp_path / "train")], val=[str(tmp_path / "val")], scale=2, patch_size=16,
                      batch_size=4, num_workers=0, samples=8)
    dm.setup("fit")
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16) and lr.dtype == torch.uint8
    lr, ref, idx, hr = next(iter(dm.val_dataloader()))  # the HR: the perceptual metrics' reference
    assert lr.shape == (1, 3, 24, 20) and ref.shape == (1, 1, 48, 40) and hr.shape == (1, 3, 48, 40)
    assert hr.dtype == torch.uint8 and torch.equal(hr[0], dm.val_pairs[0].hr)


def test_image_conversions(tmp_path):
    a = (np.arange(12 * 10 * 3) % 256).astype(np.uint8).reshape(12, 10, 3)
    Image.fromarray(a).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(a).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(a).convert("L").save(tmp_path / "gray.png")
    Image.fromarray((np.arange(120).reshape(12, 10) * 500).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "rgba.png").shape == (3, 12, 10)
    assert torch.equal(load_image(tmp_path / "rgba.png"), torch.from_numpy(a).permute(2, 0, 1))
    assert load_image(tmp_path / "pal.png").shape == (3, 12, 10)
    assert load_image(tmp_path / "gray.png").shape == (1, 12, 10)
    g16 = load_image(tmp_path / "g16.png")
    assert g16.dtype == torch.uint8 and g16.shape == (1, 12, 10)
    assert g16[0, 0, 1].item() == round(500 / 257)
    assert load_image(tmp_path / "cmyk.jpg").shape == (3, 12, 10)


def test_unreadable_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ImageError) as e:
        load_image(bad)
    msg = str(e.value)
    assert "broken.png" in msg and "\n" not in msg


def test_skimage_source_and_missing_sets(tmp_path, monkeypatch):
    assert load_item("skimage:astronaut").shape == (3, 512, 512)
    with pytest.raises(DataNotFoundError, match="no bundled image named 'nope'"):
        load_item("skimage:nope")
    monkeypatch.setenv("SREXP_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as e:
        find_set("Urban100")
    msg = str(e.value)
    assert "Urban100" in msg and str(tmp_path) in msg and "\n" not in msg
    with pytest.raises(DataNotFoundError, match="unknown set 'Set6'"):
        find_set("Set6")
    monkeypatch.delenv("SREXP_DATA")
    with pytest.raises(DataNotFoundError, match="needs a data root"):
        find_set("Set5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="has no images"):
        resolve(str(tmp_path / "empty"))


def test_named_sets_found_under_root(shared_data):
    assert len(find_set("Set5", shared_data)) == 5
    assert len(find_set("Set14", shared_data)) == 14
    assert len(find_set("291", shared_data)) == 291


def test_disk_cache_decodes_once_and_maps_later(tmp_path, monkeypatch):
    import srexp.data.datamodule as dmod
    from srexp.data.datamodule import load_pairs

    write_images(tmp_path / "imgs", n=2, size=(40, 36))
    first = load_pairs([str(tmp_path / "imgs")], None, 2, 3, "rgb_uint8", cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").iterdir())) == 2

    def no_decoding(item):
        raise AssertionError(f"decoded {item} again")

    monkeypatch.setattr(dmod, "load_item", no_decoding)
    again = load_pairs([str(tmp_path / "imgs")], None, 2, 3, "rgb_uint8", cache_dir=str(tmp_path / "cache"))
    for a, b in zip(first, again):
        assert a.name == b.name and torch.equal(a.lr, b.lr) and torch.equal(a.hr, b.hr)
        assert torch.equal(a.ref_y, b.ref_y)
    # another scale is another key: decoding is needed again
    with pytest.raises(AssertionError, match="decoded"):
        load_pairs([str(tmp_path / "imgs")], None, 4, 3, "rgb_uint8", cache_dir=str(tmp_path / "cache"))
    monkeypatch.undo()
    train = load_pairs([str(tmp_path / "imgs")], None, 2, 3, "rgb_uint8", keep_ref=False)
    assert train[0].ref_y.numel() == 0 and torch.equal(train[0].lr, first[0].lr)  # training drops the reference


def test_random_degradation_on_device_is_seeded_by_step():
    from srexp.ops.degrade import RandomDegradation
    from srexp.ops.resize import imresize

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(4, 3, 32, 32, generator=g)
    deg = RandomDegradation(p_blur=1.0, p_noise=1.0, p_jpeg=1.0, seed=3)
    a, b, c = deg(hr, 2, step=7), deg(hr, 2, step=7), deg(hr, 2, step=8)
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, torch.round(a * 255) / 255)  # 8-bit values
    clean = imresize(hr, scale=0.5)
    assert (a - clean).abs().mean() > 0.005  # degraded, not just resized
    off = RandomDegradation(p_blur=0.0, p_noise=0.0, p_jpeg=0.0)
    assert torch.allclose(off(hr, 2, step=0), torch.round(clean.clamp(0, 1) * 255) / 255)
    assert deg(hr[:, :1], 2, step=0).shape == (4, 1, 16, 16)  # Y nets: no JPEG, the rest applies


def test_one_degradation_pipeline_for_sr_and_faces():
    """RandomDegradation (SR) and FaceDegradation are configurations of one pipeline, which checks its ranges."""
    from srexp.data.faces import FaceDegradation
    from srexp.errors import ConfigError
    from srexp.ops.degrade import Degradation, RandomDegradation

    assert isinstance(RandomDegradation(), Degradation) and isinstance(FaceDegradation(), Degradation)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert Degradation().apply(x, gen(), 2).shape == (2, 3, 16, 16)  # MATLAB ×1/2, LR size kept
    assert Degradation(resample="pil", restore_size=True).apply(x, gen(), 3.0).shape == x.shape
    off = Degradation(p_blur=0.0, p_noise=0.0, p_jpeg=0.0)
    assert torch.equal(off.apply(x, gen()), torch.round(x * 255) / 255)  # nothing drawn on, no resize: 8 bits only
    with pytest.raises(ConfigError, match=r"task.degradation.jpeg_quality=\[0, 50\]"):
        RandomDegradation(jpeg_quality=(0, 50))
    with pytest.raises(ConfigError, match="data.degrade.p_noise=1.5"):
        FaceDegradation(p_noise=1.5)
    with pytest.raises(ConfigError, match="matlab, pil"):
        Degradation(resample="area")


def test_blind_degradation_trains_through_the_composed_config(folders, tmp_path):
    from conftest import compose_cfg, shrink
    from srexp.cli.train import run

    cfg = compose_cfg("train", shrink("data=folder", f"data.train_dir={folders / 'train'}",
                                      f"data.val_dir={folders / 'val'}", "task/degradation=blind", "debug=fdr"))
    assert cfg.task.degradation._target_.endswith("RandomDegradation")
    run(cfg, run_dir=str(tmp_path))


def test_downscale_augmentation_adds_shrunk_copies(tmp_path):
    """data.downscale (FSRCNN's 0.9…0.6): each image also enters shrunk by MATLAB bicubic, its LR made from the
    shrunk copy; copies smaller than the patch are left out; a factor outside (0, 1] is one line."""
    from srexp.data.datamodule import load_pairs
    from srexp.errors import ConfigError
    from srexp.ops.resize import imresize

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    pairs = load_pairs([str(tmp_path)], None, 2, 3, "rgb_uint8", min_hr=30, downscale=[0.8, 0.5])
    assert [p.name for p in pairs] == ["a", "a@0.8"]  # 0.5 gives 20 px wide < 30: left out
    img = torch.from_numpy(np.asarray(Image.open(tmp_path / "a.png"))).permute(2, 0, 1)
    small = imresize(img, scale=0.8)
    assert pairs[1].hr.shape == (3, 48, 32) and torch.equal(pairs[1].hr, small[:, :48, :32])
    assert torch.equal(pairs[1].lr, imresize(small[:, :48, :32], scale=0.5))
    with pytest.raises(ConfigError, match=r"data.downscale=\[1.5\]"):
        load_pairs([str(tmp_path)], None, 2, 3, "rgb_uint8", downscale=[1.5])


def test_lr_patch_size_sets_the_hr_patch_for_every_scale():
    from srexp.data.datamodule import SRDataModule

    for s in (2, 3, 4):
        dm = SRDataModule(train=[], val=[], scale=s, patch_size=96, lr_patch_size=16)
        assert dm.patch_size == 16 * s
    assert SRDataModule(train=[], val=[], scale=3, patch_size=96).patch_size == 96
