"""The bad-input matrix (docs/reliability.md): each input has one defined behaviour — converted, skipped with a
counted warning, or a one-line error naming the file — in training and in srexp-upscale."""
import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_cfg, run_cli, shrink, write_images
from srexp.cli import check_choices
from srexp.data.benchmarks import DataNotFoundError
from srexp.data.datamodule import load_pairs
from srexp.data.images import ImageError, load_image
from srexp.errors import ConfigError
from srexp.cli.upscale import run as upscale


def smooth(h=56, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([127 + 100 * np.sin(xx / rng.uniform(2, 6)) * np.cos(yy / rng.uniform(2, 6)) for _ in range(3)],
                    -1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """One folder holding every kind of input."""
    d = tmp_path_factory.mktemp("messy")
    rgb = smooth()
    Image.fromarray(rgb).save(d / "good.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257 + 3)).save(d / "gray16.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), "RGBA").save(d / "rgba.png")
    Image.fromarray(rgb[..., 1]).save(d / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=32).save(d / "palette.png")
    Image.fromarray(rgb[:8, :8]).save(d / "tiny.png")  # smaller than the 16-pixel patch
    Image.fromarray(smooth(41, 50, seed=1)).save(d / "odd.png")  # 50×41: ×3 does not divide it
    (d / "notes.txt").write_text("not an image")
    return d


def test_training_matrix(messy, caplog):
    with caplog.at_level(logging.WARNING):
        pairs = load_pairs([str(messy)], None, scale=2, channels=3, protocol="rgb_uint8", min_hr=16)
    by = {p.name: p for p in pairs}
    # converted: 16-bit → 8 bits (x/257), RGBA → RGB, gray → RGB, CMYK → RGB, palette → RGB
    assert sorted(by) == ["cmyk", "good", "gray", "gray16", "odd", "palette", "rgba"]
    assert all(p.hr.shape[0] == 3 and p.hr.dtype == torch.uint8 for p in pairs)
    assert torch.equal(by["gray16"].hr[0], torch.from_numpy(smooth()[..., 0]))  # (x·257 + 3) / 257 rounds to x
    assert torch.equal(by["rgba"].hr, torch.from_numpy(smooth()).permute(2, 0, 1))
    assert torch.equal(by["gray"].hr[0], by["gray"].hr[2])
    # skipped with a count, each named: corrupt, truncated, smaller than the patch; notes.txt is not an image file
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 3 of 10 images" in warning
    assert all(n in warning for n in ("corrupt.png", "truncated.jpg", "tiny.png"))
    assert "notes.txt" not in warning


def test_modcrop_when_the_scale_does_not_divide(messy):
    (p,) = [q for q in load_pairs([str(messy)], None, 3, 3, "rgb_uint8", min_hr=16) if q.name == "odd"]
    assert tuple(p.hr.shape) == (3, 39, 48) and tuple(p.lr.shape) == (3, 13, 16)  # 50×41 cropped to 48×39


def test_empty_folder_and_all_bad_are_one_line_errors(tmp_path, messy):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="has no images"):
        load_pairs([str(tmp_path / "empty")], None, 2, 3, "rgb_uint8")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes((messy / "corrupt.png").read_bytes())
    with pytest.raises(DataNotFoundError, match=r"no usable images .*/x\.png: cannot decode image") as e:
        load_pairs([str(bad)], None, 2, 3, "rgb_uint8")
    assert "\n" not in str(e.value)


def lr_layout(root, lr_sizes: dict[str, tuple[int, int]]):
    """``root/HR/<name>.png`` (48×40) and the shipped ``root/LR_bicubic/X2/<name>x2.png`` of the given (h, w)."""
    hr, lr = root / "HR", root / "LR_bicubic" / "X2"
    lr.mkdir(parents=True)
    for k, (name, size) in enumerate(lr_sizes.items()):
        write_images(hr, n=1, size=(40, 48), seed=k)
        (hr / "img0.png").rename(hr / f"{name}.png")
        Image.fromarray(smooth(*size)).save(lr / f"{name}x2.png")
    return hr


def test_mismatched_lr_hr_pairs_are_skipped_and_named(tmp_path, caplog):
    hr = lr_layout(tmp_path / "a", {"right": (20, 24), "wrong": (40, 48)})  # wrong: the HR size again
    with caplog.at_level(logging.WARNING):
        pairs = load_pairs([str(hr)], None, 2, 3, "rgb_uint8", lr_source="files")
    assert [p.name for p in pairs] == ["right"]
    assert "skipped 1 of 2 images" in caplog.text
    assert "wrongx2.png: LR image 48×40 does not match the HR 48×40 at ×2 (expected 24×20" in caplog.text
    hr = lr_layout(tmp_path / "b", {"wrong": (19, 24)})
    with pytest.raises(DataNotFoundError, match=r"no usable images .*wrongx2\.png: LR image 24×19 does not match"):
        load_pairs([str(hr)], None, 2, 3, "rgb_uint8", lr_source="files")


def test_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    Image.fromarray(smooth()).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×56 > 2 × 1000: PIL refuses it as a bomb
    with pytest.raises(ImageError, match=r"big\.png: cannot decode image \(Image size") as e:
        load_image(tmp_path / "big.png")
    assert "\n" not in str(e.value)


def upscale_cfg(**kw):
    return compose_cfg("upscale", [f"{k}={v}" for k, v in kw.items()])


def test_upscale_matrix(messy, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = upscale(upscale_cfg(input=messy, output=tmp_path / "out", scale=2, tile=16))
    assert summary == {"upscaled": 8, "skipped": 2, "ignored": 1}
    assert "corrupt.png" in caplog.text and "truncated.jpg" in caplog.text
    out = {p.name: Image.open(p) for p in (tmp_path / "out").iterdir()}
    assert {n: (im.mode, im.size) for n, im in out.items()} == {
        "good.png": ("RGB", (128, 112)), "gray16.png": ("I;16", (128, 112)), "rgba.png": ("RGBA", (128, 112)),
        "gray.png": ("L", (128, 112)), "cmyk.jpg": ("RGB", (128, 112)), "palette.png": ("RGB", (128, 112)),
        "tiny.png": ("RGB", (16, 16)), "odd.png": ("RGB", (100, 82))}  # any size: no modcrop when upscaling
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images in the folder"):
        upscale(upscale_cfg(input=tmp_path / "empty", output=tmp_path / "o", scale=2))
    with pytest.raises(ImageError, match=r"unsupported format \.txt"):
        upscale(upscale_cfg(input=messy / "notes.txt", output=tmp_path / "o.png", scale=2))


@pytest.mark.slow
def test_upscale_corrupt_file_is_one_line(messy, tmp_path):
    r = run_cli("srexp.cli.upscale", "scale=2", f"input={messy / 'truncated.jpg'}", f"output={tmp_path / 'o.png'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"srexp-upscale: error: {messy / 'truncated.jpg'}: cannot decode")


@pytest.mark.slow
def test_unknown_group_choice_is_one_line():
    r = run_cli("srexp.cli.train", "arch=nope")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("srexp-train: error: arch=nope is not a config in conf/arch/ "
                                                   "(valid: bicubic, bilinear, compact, custom, dbpn,")
    with pytest.raises(ConfigError, match=r"net/strategy=sideways .*valid: iterative, post, pre, progressive"):
        check_choices(["net/strategy=sideways"])
    with pytest.raises(ConfigError, match="arch=nope"):
        check_choices(["-m", "arch=espcn,nope"])
    check_choices(["arch=espcn", "experiment=null", "data.train_dir=/x", "+trainer.foo=1", "hydra/launcher=basic",
                   "arch=choice(espcn,fsrcnn)", "--cfg", "job"])


@pytest.mark.slow
def test_unknown_protocol_is_one_line():
    r = run_cli("srexp.cli.train", *shrink("protocol=nope", steps=1))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["srexp-train: error: protocol='nope' is unknown (valid: y_float, rgb_uint8)"], r.stderr[-800:]
