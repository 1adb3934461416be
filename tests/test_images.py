"""One reader, one 16 → 8-bit rule: round(v / 257) for every mode (gray, gray + alpha, RGB, RGBA) and format (PNG,
TIFF), the same through every entry point (training loader, face/eval loader, srexp-upscale's reader and its output)."""
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from conftest import compose_cfg
from srexp.cli.upscale import run as upscale
from srexp.data.datamodule import load_item, load_pairs
from srexp.data.images import ImageError, load_image, read_image, save_image, to_uint8

# 0, v8·257 (exact), 257k + 128 (→ k) / 257k + 129 (→ k + 1), 65280 = 0xFF00 (254: not the high byte 255), 65535
V16 = np.array([0, 128, 129, 257, 25828, 25829, 32896, 65280, 65534, 65535], np.uint16)
V8 = np.array([round(int(v) / 257) for v in V16], np.uint8)
ROWS = 4  # an image of ROWS × len(V16), every row the values (shifted per channel so the channels differ)


def planes(c: int) -> np.ndarray:
    return np.stack([np.tile(np.roll(V16, k), (ROWS, 1)) for k in range(c)])


def expected8(c: int) -> np.ndarray:
    return np.stack([np.tile(np.roll(V8, k), (ROWS, 1)) for k in range(1 if c == 2 else min(c, 3))])


def test_rule():
    assert V8.tolist() == [0, 0, 1, 1, 100, 101, 128, 254, 255, 255]
    assert np.array_equal(to_uint8(np.arange(256, dtype=np.uint16) * 257), np.arange(256))  # inverse of v8·257
    assert np.array_equal(to_uint8(V16), V8)
    every = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(to_uint8(every), np.floor(every / 257 + 0.5).astype(np.uint8))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """16-bit files of every mode, written by srexp and by Pillow / tifffile directly; name → channels."""
    d = tmp_path_factory.mktemp("b16")
    out = {}
    for c, mode in ((1, "gray"), (2, "graya"), (3, "rgb"), (4, "rgba")):
        for suffix in (".png", ".tif"):
            name = f"{mode}_{suffix[1:]}{suffix}"  # stems differ: the training pairs are named by them
            save_image(planes(c), d / name)
            out[name] = c
    Image.fromarray(planes(1)[0]).save(d / "pil_gray_png.png")            # Pillow's own 16-bit gray PNG and TIFF
    Image.fromarray(planes(1)[0]).save(d / "pil_gray_tif.tif")
    tifffile.imwrite(d / "planar_rgb.tif", planes(3), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(d / "zip_rgba.tif", planes(4).transpose(1, 2, 0), photometric="rgb",
                     extrasamples=("unassalpha",), compression="zlib")
    tifffile.imwrite(d / "float_gray.tif", (planes(1)[0] / 65535).astype(np.float32))  # [0, 1] floats: Pillow "F"
    out.update({"pil_gray_png.png": 1, "pil_gray_tif.tif": 1, "planar_rgb.tif": 3, "zip_rgba.tif": 4,
                "float_gray.tif": 1})
    return d, out


def test_every_mode_and_format_loads_to_the_same_8_bits(files):
    d, names = files
    for name, c in names.items():
        p = d / name
        a = read_image(p)  # srexp-upscale's reader: the 16 bits as stored
        assert a.dtype == np.uint16 and a.shape == (c, ROWS, len(V16)), name
        assert np.array_equal(a, planes(c)), name
        want = torch.from_numpy(expected8(c))
        assert np.array_equal(to_uint8(a)[: want.shape[0]], want.numpy()), name
        assert torch.equal(load_image(p), want), name                 # training / eval / faces
        assert torch.equal(load_item(str(p)), want), name             # the datamodule's item loader


def test_training_pairs_and_upscale_output_agree(files, tmp_path):
    d, names = files
    pairs = {p.name: p for p in load_pairs([str(d)], None, scale=2, channels=3, protocol="rgb_uint8")}
    assert sorted(pairs) == sorted(n.rsplit(".", 1)[0] for n in names)
    for name, c in names.items():
        want = torch.from_numpy(expected8(c))
        assert torch.equal(pairs[name.rsplit(".", 1)[0]].hr, want.expand(3, -1, -1)), name
    # srexp-upscale keeps 16 bits (nearest ×2: each value four times; alpha goes through bicubic) and its output
    # loads to the same 8 bits
    summary = upscale(compose_cfg("upscale", ["arch=nearest", "scale=2", f"input={d}", f"output={tmp_path}"]))
    assert summary == {"upscaled": len(names), "skipped": 0, "ignored": 0}
    for name, c in names.items():
        big = read_image(tmp_path / name)
        colour = c - (c in (2, 4))
        assert big.dtype == np.uint16 and np.array_equal(big[:colour, ::2, ::2], planes(c)[:colour]), name
        assert torch.equal(load_image(tmp_path / name)[:, ::2, ::2], torch.from_numpy(expected8(c))), name


def test_8_bit_files_and_errors(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (4, 6, 5), dtype=np.uint8)
    for c in (1, 2, 3, 4):
        for suffix in (".png", ".tif"):
            save_image(torch.from_numpy(a[:c]), tmp_path / f"{c}{suffix}")
            assert np.array_equal(read_image(tmp_path / f"{c}{suffix}"), a[:c])
            assert torch.equal(load_image(tmp_path / f"{c}{suffix}"), torch.from_numpy(a[: 1 if c == 2 else c][:3]))
    save_image(torch.from_numpy(a[:3]).float() / 255, tmp_path / "f.png")  # [0, 1] floats as the training side
    assert np.array_equal(read_image(tmp_path / "f.png"), a[:3])
    with pytest.raises(ImageError, match=r"x\.jpg: \.jpg cannot hold 16-bit samples"):
        save_image(planes(3), tmp_path / "x.jpg")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    for path in (tmp_path / "bad.tif", tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=str(path).replace(".", r"\.")) as e:
            load_image(path)
        assert "\n" not in str(e.value)
