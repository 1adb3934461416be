"""ONNX export (srexp/training/onnx.py, srexp-export format=onnx): the net families export with dynamic batch/height/width and
match PyTorch under onnxruntime on a photo crop of another size; the check fails where the model differs; srexp-upscale
ckpt=model.onnx (colour, alpha, tiles, video) gives PyTorch's pixels; one-line errors for a missing package, a broken
file and a net that does not export. The MATLAB bicubic inside pre-upsampling nets exports as a fixed conv."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg
from srexp.cli.export import out_paths, run as export
from srexp.cli.upscale import Upscaler, build_upscaler, run as upscale
from srexp.data.images import read_image
from srexp.errors import ConfigError
from srexp.nets import build_net
from srexp.nets.stats import receptive_radius
from srexp.training.onnx import OnnxNet, check_image, export_onnx, verify_onnx
from srexp.ops.resize import imresize, upscale_conv
from test_upscale import _images, make_video, upscale_cfg

# family → (scale, overrides shrinking the preset): a pre-upsampling net with MATLAB bicubic inside (VDSR: its global
# residual adds the bicubic image to the output, so the bicubic's export is what is compared), a progressive
# net (a list of outputs: the last is exported) with transposed convs; the fixture below exports a trained Y net
# (the shipped FSRCNN ×2). Every preset and shipped model: bench/onnx_export.py (docs/reliability.md), ~3 s of CPU each.
FAMILIES = {
    "vdsr": (3, ["net.num_feat=8", "net.body.num_block=1"]),
    "lapsrn": (4, ["net.num_feat=8", "net.body.num_block=1"]),
}


def tiny(arch: str):
    scale, over = FAMILIES[arch]
    cfg = compose_cfg("train", [f"arch={arch}", f"scale={scale}", *over])
    torch.manual_seed(0)
    return build_net(cfg.net).eval(), cfg


def test_bicubic_conv_equals_matlab_imresize():
    for scale in (2, 3, 4):
        for hw in ((1, 1), (2, 5), (13, 8)):
            x = torch.rand(2, 3, *hw)
            a, b = imresize(x, scale=scale), upscale_conv(x, scale)
            assert a.shape == b.shape == (2, 3, hw[0] * scale, hw[1] * scale)
            assert (a - b).abs().max() <= 1e-6, (scale, hw)


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_family_exports_with_dynamic_size_and_matches_pytorch(arch, tmp_path):
    net, cfg = tiny(arch)
    radius = receptive_radius(net, cfg.channels)
    path = export_onnx(net, tmp_path / "m.onnx", scale=cfg.scale, channels=cfg.channels, radius=radius,
                       config=OmegaConf.to_container(cfg, resolve=True), choices={"arch": arch})
    diff = verify_onnx(net, path, cfg.channels)  # a 47×61 crop; traced at 32×32
    print(f"{arch}: max abs difference {diff:.2e}")
    assert diff <= 1e-4
    onnx_net = OnnxNet(path)
    assert (onnx_net.scale, onnx_net.in_channels, onnx_net.recorded_radius) == (cfg.scale, cfg.channels, radius)
    assert onnx_net.config["net"] == OmegaConf.to_container(cfg.net, resolve=True)
    # another batch size and an odd, small size: dynamic N, H, W
    x = torch.rand(3, cfg.channels, 9, 14)
    with torch.no_grad():
        ref = net(x)
    ref = ref[-1] if isinstance(ref, list) else ref
    got = onnx_net(x)
    assert got.shape == ref.shape == (3, cfg.channels, 9 * cfg.scale, 14 * cfg.scale)
    assert (got - ref).abs().max() <= 1e-4
    # the check can fail: a model of other weights differs from this net by more than the tolerance
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    with pytest.raises(ConfigError, match=r"onnxruntime and PyTorch differ by up to .* more than onnx.tolerance"):
        verify_onnx(net, path, cfg.channels)


@pytest.fixture(scope="module")
def y_model(tmp_path_factory):
    """The shipped FSRCNN ×2 (a trained Y net, transposed conv) and its srexp-export format=both files."""
    from srexp.models import model_path
    from srexp.training.checkpoint import load_model, load_net

    root = tmp_path_factory.mktemp("onnx")
    ckpt = model_path("fsrcnn_x2")
    tcfg, _, state = load_model(ckpt)
    done = export(compose_cfg("export", [f"ckpt={ckpt}", f"out={root / 'y.safetensors'}", "format=both"]))
    return root, ckpt, load_net(tcfg["net"], state), done


def test_export_command_writes_both_and_reports_the_difference(y_model, capsys):
    root, ckpt, net, done = y_model
    assert done["safetensors"] == root / "y.safetensors" and done["safetensors"].is_file()
    assert done["onnx"] == root / "y.onnx" and done["onnx"].is_file()
    assert 0 <= done["onnx_max_diff"] <= 1e-4
    assert OnnxNet(done["onnx"]).recorded_radius == receptive_radius(net, 1)
    assert out_paths("m.safetensors", None) == {"safetensors": Path("m.safetensors")}  # the default: as before
    assert out_paths("m.onnx", None) == {"onnx": Path("m.onnx")}
    assert out_paths("m.safetensors", "onnx") == {"onnx": Path("m.onnx")}
    assert out_paths("m", "both") == {"safetensors": Path("m.safetensors"), "onnx": Path("m.onnx")}
    with pytest.raises(ConfigError, match=r"^format=tflite is unknown \(valid: safetensors, onnx, both"):
        out_paths("m.onnx", "tflite")


def test_upscaler_through_onnx_equals_pytorch(y_model, tmp_path):
    root, ckpt, net, done = y_model
    files = _images(tmp_path / "in")
    for name in ("rgba", "gray16"):  # YCbCr colouring and alpha beside the net; 16 bits
        for tile in (0, 8):
            run_args = dict(input=files[name], tile=tile)
            upscale(upscale_cfg(ckpt=ckpt, output=tmp_path / f"pt_{name}{tile}.png", **run_args))
            upscale(upscale_cfg(ckpt=done["onnx"], output=tmp_path / f"ox_{name}{tile}.png", **run_args))
            pt, ox = (read_image(tmp_path / f"{k}_{name}{tile}.png").astype(int) for k in ("pt", "ox"))
            assert pt.shape == ox.shape and pt.shape[-2:] == (48, 60)
            # float differences (≤ 1.6e-6 here) can move a value across a rounding boundary: ±1, at most. Rarely
            # at 8 bits (a level is 4e-3); at 16 bits (1.5e-5) on ~2% of the values
            print(f"{name} tile={tile}: max {np.abs(pt - ox).max()}, {(pt != ox).mean():.2%} differ")
            assert np.abs(pt - ox).max() <= 1, (name, tile)
            if name != "gray16":
                assert (pt != ox).mean() < 0.005, (name, tile)
    # the tiles' overlap is the radius recorded at export; the tiled output equals the whole one
    ups = build_upscaler(upscale_cfg(ckpt=done["onnx"], input="x.png", output="y.png", tile=8))
    assert isinstance(ups.net, OnnxNet) and ups.radius == receptive_radius(net, 1) >= 2
    src = np.random.default_rng(0).integers(0, 256, (2, 3, 21, 17), dtype=np.uint8)
    whole = Upscaler(OnnxNet(done["onnx"]), 2, 1, tile=0)(src, np.float32)
    tiled = ups(src, np.float32)
    ref = Upscaler(net, 2, 1, tile=0)(src, np.float32)
    assert np.abs(whole - tiled).max() <= 1e-5 and np.abs(whole - ref).max() <= 1e-4
    with pytest.raises(ConfigError, match=r"scale=4 does not match ckpt=.*y\.onnx, exported for ×2"):
        build_upscaler(upscale_cfg(ckpt=done["onnx"], input="x.png", output="y.png", scale=4))


def test_video_through_onnx(y_model, tmp_path):
    import av

    root, ckpt, net, done = y_model
    make_video(tmp_path / "clip.mp4", frames=5)
    outs = {}
    for k, model in (("pt", ckpt), ("ox", done["onnx"])):
        summary = upscale(upscale_cfg(ckpt=model, input=tmp_path / "clip.mp4", output=tmp_path / f"{k}.mkv",
                                      batch=3, **{"video.codec": "ffv1"}))
        assert summary["frames"] == 5 and summary["audio"]
        with av.open(str(tmp_path / f"{k}.mkv")) as c:
            outs[k] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)
    assert outs["pt"].shape == outs["ox"].shape == (5, 64, 96, 3)
    assert np.abs(outs["pt"] - outs["ox"]).max() <= 2  # ±1 in RGB, through the lossless codec's YUV


def test_one_line_errors(y_model, tmp_path, monkeypatch):
    root, ckpt, net, done = y_model
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(done["onnx"].read_bytes()[:500])  # truncated
    with pytest.raises(ConfigError) as e:
        OnnxNet(broken)
    assert str(e.value).startswith(f"ckpt={broken}: not a loadable ONNX model (") and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"ckpt=.*nope\.onnx: no such file"):
        OnnxNet(tmp_path / "nope.onnx")
    # an ONNX model that srexp-export did not write: no metadata
    import onnx

    proto = onnx.load(str(done["onnx"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ConfigError, match=r"no srexp metadata in the ONNX model \(was it written by srexp-export"):
        OnnxNet(tmp_path / "plain.onnx")

    class DataDependent(torch.nn.Module):  # control flow on pixel values: torch.export refuses it
        def forward(self, x):
            return x * 2 if x.mean() > 0.5 else x

    with pytest.raises(ConfigError) as e:
        export_onnx(DataDependent(), tmp_path / "dd.onnx", scale=1, channels=3, radius=0, what="arch=dd")
    assert str(e.value).startswith("arch=dd does not export to ONNX (") and "\n" not in str(e.value)
    # the extra is not installed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"^ckpt=.*y\.onnx needs the onnxruntime package, which is not installed "
                                          r"\(pip install 'srexp\[onnx\]'\)$"):
        OnnxNet(done["onnx"])
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ConfigError, match=r"needs the onnxscript package, .*pip install 'srexp\[onnx\]'"):
        export(compose_cfg("export", [f"ckpt={ckpt}", f"out={tmp_path / 'z.onnx'}"]))
    assert not (tmp_path / "z.onnx").exists()


def test_check_image_is_a_photo_crop():
    rgb, y = check_image(3), check_image(1)
    assert rgb.shape == (1, 3, 61, 47) and y.shape == (1, 1, 61, 47)
    assert 0 <= float(rgb.min()) < 0.2 and 0.8 < float(rgb.max()) <= 1 and float(rgb.std()) > 0.1


def test_eval_through_onnx_gives_the_recorded_psnr(y_model, shared_data, tmp_path, monkeypatch):
    """srexp-eval ckpt=model.onnx: the protocol and scale from the ONNX metadata, the shipped model's recorded Set5
    numbers (measured with PyTorch) to srexp.models.TOLERANCE_DB."""
    from srexp.cli.evaluate import run as evaluate
    from srexp.models import TOLERANCE_DB, metadata

    root, ckpt, net, done = y_model
    monkeypatch.chdir(tmp_path)  # srexp-eval writes outputs/eval/metrics.json
    rows = evaluate(compose_cfg("eval", [f"ckpt={done['onnx']}", "eval.sets=[Set5]", f"eval.root={shared_data}"]))
    rec = next(r for r in metadata("fsrcnn_x2")["recorded"] if r["set"] == "Set5" and r["scale"] == 2)
    assert len(rows) == 1 and rows[0]["scale"] == 2 and rows[0]["protocol"]["name"] == rec["protocol"]["name"] == "y_float"
    assert abs(rows[0]["psnr"] - rec["psnr"]) <= TOLERANCE_DB and abs(rows[0]["ssim"] - rec["ssim"]) <= 1e-5
    with pytest.raises(ConfigError, match=r"eval.scales=\[2, 3\]: ckpt=.*y\.onnx was exported for ×2 only"):
        evaluate(compose_cfg("eval", [f"ckpt={done['onnx']}", "eval.scales=[2,3]"]))
