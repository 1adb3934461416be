"""Community checkpoints (srexp.nets.foreign): files written in the official layouts (random weights, the layouts'
real key names and shapes) go through srexp-eval and srexp-upscale and give the official nets' outputs.

References, independent of srexp: EDSR (not in spandrel) as a functional forward written from EDSR-PyTorch's
definition (src/model/edsr.py, common.py) on its 0–255 range; Real-ESRGAN's SRVGGNetCompact and SPAN as spandrel's own
classes (tests/spandrel_ref.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import compose_cfg, write_images
from spandrel_ref import spandrel
from srexp.cli.evaluate import run as eval_run
from srexp.cli.upscale import run as upscale_run
from srexp.data.images import read_image
from srexp.errors import ConfigError
from srexp.metrics import get_protocol
from srexp.nets.foreign import layouts
from srexp.training.checkpoint import load_model, load_net

MEAN = torch.tensor([0.4488, 0.4371, 0.4040])  # EDSR-PyTorch's MeanShift default (DIV2K)


# ------------------------------------------------------------------------------------------ EDSR, official layout
def edsr_file(feat: int, blocks: int, scale: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """EDSR-PyTorch's state dict: weights for 0–255 images (biases on that scale), the mean shift as 1×1 convs."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cin: int, cout: int, gain: float = 1.0) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * gain / (9 * cin) ** 0.5
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 5.0

    sd["sub_mean.weight"], sd["sub_mean.bias"] = torch.eye(3).view(3, 3, 1, 1), -255 * MEAN
    conv("head.0", 3, feat)
    for i in range(blocks):
        conv(f"body.{i}.body.0", feat, feat)
        conv(f"body.{i}.body.2", feat, feat, gain=0.3)
    conv(f"body.{blocks}", feat, feat, gain=0.3)
    steps = [3] if scale == 3 else [2] * (scale // 2)
    for j, r in enumerate(steps):
        conv(f"tail.0.{2 * j}", feat, r * r * feat)
    conv("tail.1", feat, 3, gain=0.3)
    sd["add_mean.weight"], sd["add_mean.bias"] = torch.eye(3).view(3, 3, 1, 1), 255 * MEAN
    return sd


def edsr_reference(sd: dict, x: torch.Tensor, res_scale: float) -> torch.Tensor:
    """EDSR.forward of EDSR-PyTorch on ``x`` in [0, 1] (scaled to its 0–255 range and back)."""
    def c(h, name):
        w = sd[f"{name}.weight"]
        return F.conv2d(h, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)

    n = sum(1 for k in sd if k.endswith(".body.0.weight"))
    x = c(c(x * 255, "sub_mean"), "head.0")
    res = x
    for i in range(n):
        res = res + c(F.relu(c(res, f"body.{i}.body.0")), f"body.{i}.body.2") * res_scale
    h = c(res, f"body.{n}") + x
    j = 0
    while f"tail.0.{2 * j}.weight" in sd:
        w = sd[f"tail.0.{2 * j}.weight"]
        h = F.pixel_shuffle(c(h, f"tail.0.{2 * j}"), int(round((w.shape[0] / w.shape[1]) ** 0.5)))
        j += 1
    return c(c(h, "tail.1"), "add_mean") / 255


# ------------------------------------------------------------------------------------ Compact (spandrel's class)
def compact_file(feat: int, num_conv: int, scale: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact's state dict by hand (no spandrel): body.<k> convs at even k, per-channel PReLUs at odd k."""
    g = torch.Generator().manual_seed(seed)
    sd, widths = {}, [3] + [feat] * (num_conv + 1)
    for i, (cin, cout) in enumerate(zip(widths, widths[1:] + [3 * scale * scale])):
        sd[f"body.{2 * i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.1
        sd[f"body.{2 * i}.bias"] = torch.randn(cout, generator=g) * 0.1
        if i <= num_conv:
            sd[f"body.{2 * i + 1}.weight"] = torch.full((cout,), 0.25)
    return sd


def compact_model(seed: int, feat: int = 16, num_conv: int = 3, scale: int = 4):
    torch.manual_seed(seed)
    model = spandrel().architectures.Compact.Compact(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=num_conv,
                                                       upscale=scale)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.25 if p.ndim == 1 else 0.1))  # PReLU slopes and biases too
    return model.eval()


# --------------------------------------------------------------------------------------------------- helpers
def lr_image(folder: Path, size=(10, 12)) -> Path:
    return write_images(folder, n=1, size=size, seed=3)[0]


def upscale(ckpt: Path, src: Path, out: Path, **kw) -> np.ndarray:
    upscale_run(compose_cfg("upscale", [f"ckpt={ckpt}", f"input={src}", f"output={out}",
                                        *[f"{k}={v}" for k, v in kw.items()]]))
    return read_image(out)


def as_uint8(y: torch.Tensor) -> np.ndarray:
    return np.round(y.clamp(0, 1).numpy()[0] * 255)


def check_upscale(ckpt: Path, reference, tmp_path: Path, **kw) -> None:
    """srexp-upscale of a small RGB image (tiled: tile=4) equals the reference net's output, up to rounding."""
    src = lr_image(tmp_path / "in")
    got = upscale(ckpt, src, tmp_path / f"{ckpt.stem}_sr.png", tile=4, **kw)
    with torch.no_grad():
        ref = as_uint8(reference(torch.from_numpy(read_image(src)[None]).float() / 255))
    assert got.shape == ref.shape and np.abs(got.astype(float) - ref).max() <= 1


def check_float(ckpt: Path, reference, channels: int = 3) -> dict:
    """The net srexp builds from the file, in float, equals the reference to 1e-5."""
    cfg, choices, state = load_model(ckpt)
    net = load_net(cfg["net"], state)
    x = torch.rand(2, channels, 9, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, ref = net(x), reference(x)
    assert got.shape == ref.shape and (got - ref).abs().max() <= 1e-5, (got - ref).abs().max()
    return {"config": cfg, "choices": choices}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A tiny "Set5" (two images) under a data root of its own."""
    root = tmp_path_factory.mktemp("data")
    write_images(root / "Set5", n=2, size=(36, 30), seed=5)
    return root


def check_eval(ckpt: Path, reference, root: Path, tmp_path: Path, monkeypatch, scale: int) -> list[dict]:
    """srexp-eval (in-process) of the file: the SR images it saves equal the reference net's on the protocol's LR."""
    monkeypatch.chdir(tmp_path)  # its run folder (outputs/eval) outside a Hydra run
    rows = eval_run(compose_cfg("eval", [f"ckpt={ckpt}", f"eval.root={root}", "eval.sets=[Set5]",
                                         "eval.save_images=true", "eval.device=cpu"]))
    proto = get_protocol(rows[0]["protocol"]["name"])
    for hr_path in sorted((root / "Set5").iterdir()):
        hr = torch.from_numpy(read_image(hr_path))
        lr, _ = proto.degrade(hr, scale, 3)
        with torch.no_grad():
            ref = as_uint8(reference(lr[None]))
        got = read_image(tmp_path / "outputs" / "eval" / "images" / "Set5" / f"x{scale}" / f"{hr_path.stem}.png")
        assert np.abs(got.astype(float) - ref).max() <= 1, hr_path.name
    return rows


# ------------------------------------------------------------------------------------------------------ tests
def test_registry_finds_the_family_modules():
    names = {lay.name for lay in layouts()}
    assert {"edsr", "realesrgan-compact"} <= names  # other families add theirs beside


def test_edsr_baseline_through_eval_and_upscale(tmp_path, data_root, monkeypatch):
    sd = edsr_file(64, 16, 2)
    torch.save(sd, tmp_path / "edsr_baseline_x2.pt")
    ckpt = tmp_path / "edsr_baseline_x2.pt"
    info = check_float(ckpt, lambda x: edsr_reference(sd, x, 1.0))
    assert info["choices"]["arch"] == "edsr_baseline" and info["config"]["foreign"]["layout"] == "edsr"
    check_upscale(ckpt, lambda x: edsr_reference(sd, x, 1.0), tmp_path)
    rows = check_eval(ckpt, lambda x: edsr_reference(sd, x, 1.0), data_root, tmp_path, monkeypatch, 2)
    # the preset's size: the EDSR paper's baseline ×2 row beside, under the EDSR-era protocol
    assert rows[0]["method"] == "edsr_baseline" and rows[0]["paper_psnr"] == 37.99
    assert rows[0]["protocol"]["name"] == "rgb_uint8"


def test_edsr_wide_x3_in_params_ema_and_safetensors(tmp_path):
    """256 channels: res_scale 0.1 (inferred from the width); ×3: one 9·C sub-pixel conv; BasicSR-style container
    with params_ema preferred over params; the same weights as .safetensors."""
    sd = edsr_file(256, 1, 3, seed=1)
    other = edsr_file(256, 1, 3, seed=2)
    torch.save({"params": other, "params_ema": sd, "iter": 5}, tmp_path / "edsr_x3.pth")
    info = check_float(tmp_path / "edsr_x3.pth", lambda x: edsr_reference(sd, x, 0.1))
    assert info["choices"]["arch"] == "custom"  # 1 block, not the preset's 32: no published numbers claimed
    assert info["config"]["net"]["body"]["res_scale"] == 0.1 and info["config"]["scale"] == 3
    save_file({f"module.{k}": v.contiguous() for k, v in sd.items()}, str(tmp_path / "edsr_x3.safetensors"))
    check_upscale(tmp_path / "edsr_x3.safetensors", lambda x: edsr_reference(sd, x, 0.1), tmp_path)


def test_compact_through_eval_and_upscale(tmp_path, data_root, monkeypatch):
    model = compact_model(0)
    torch.save({"params": model.state_dict()}, tmp_path / "realesr-compact.pth")  # Real-ESRGAN's release format
    ckpt = tmp_path / "realesr-compact.pth"
    info = check_float(ckpt, model)
    assert info["config"]["net"]["residual"] == "nearest" and info["config"]["net"]["body"]["num_block"] == 3
    check_upscale(ckpt, model, tmp_path)
    check_eval(ckpt, model, data_root, tmp_path, monkeypatch, 4)
    save_file(model.state_dict(), str(tmp_path / "compact.safetensors"))
    check_float(tmp_path / "compact.safetensors", model)


def test_spandrel_fallback_for_an_architecture_srexp_lacks(tmp_path):
    sp = spandrel()
    torch.manual_seed(0)
    model = sp.architectures.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    torch.save(model.state_dict(), tmp_path / "span_x2.pth")
    ref = sp.architectures.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    ref.load_state_dict(model.state_dict())
    ref.eval()
    cfg, choices, state = load_model(tmp_path / "span_x2.pth")
    assert choices["arch"] == "spandrel:SPAN" and cfg["scale"] == 2 and cfg["foreign"]["layout"] == "spandrel"
    net = load_net(cfg["net"], state)
    net._descriptor.supports_bfloat16 = False  # as spandrel's AuraSR: srexp-upscale's bf16 autocast must not reach it
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = net(x)
    with torch.no_grad():
        assert got.dtype == torch.float32 and (got - ref(x).clamp(0, 1)).abs().max() <= 1e-5
    check_upscale(tmp_path / "span_x2.pth", lambda x: ref(x).clamp(0, 1), tmp_path)  # untiled: radius unknown
    with pytest.raises(ConfigError, match=r"scale=3 does not match ckpt=.*a ×2 SPAN"):
        upscale(tmp_path / "span_x2.pth", lr_image(tmp_path / "in"), tmp_path / "x.png", scale=3)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_unknown_mismatched_and_pickled_files_are_one_line_refusals(tmp_path):
    unknown = tmp_path / "mystery.pth"
    torch.save({"encoder.0.weight": torch.zeros(4, 3, 3, 3), "encoder.0.bias": torch.zeros(4)}, unknown)
    with pytest.raises(ConfigError) as e:
        load_model(unknown)
    msg = one_line(e)
    assert msg.startswith(f"ckpt={unknown}: not a srexp checkpoint and no known layout matches")
    assert "edsr" in msg and "realesrgan-compact" in msg and "encoder.0.weight" in msg and "spandrel" in msg

    sd = edsr_file(16, 2, 2)
    sd["body.1.body.2.weight"] = sd["body.1.body.2.weight"][:, :8]  # one conv of another width
    torch.save(sd, tmp_path / "bad_edsr.pt")
    with pytest.raises(ConfigError) as e:
        load_model(tmp_path / "bad_edsr.pt")
    assert one_line(e) == (f"ckpt={tmp_path / 'bad_edsr.pt'} (layout edsr → arch=edsr_baseline): "
                           "body.blocks.1.body.2.weight expected shape (16, 16, 3, 3), found (16, 8, 3, 3)")

    torch.save(edsr_file(16, 2, 2), tmp_path / "edsr.pt")
    with pytest.raises(ConfigError) as e:
        load_model(tmp_path / "edsr.pt", layout="realesrgan-compact")
    assert one_line(e).startswith(f"ckpt={tmp_path / 'edsr.pt'} (layout realesrgan-compact): body: expected body.0 … "
                                 "body.<2n+2> (convs even, PReLUs odd, n >= 1), found body.0 … body.2")
    with pytest.raises(ConfigError, match="ckpt_layout=nope is unknown .valid: .*edsr.*spandrel"):
        load_model(tmp_path / "edsr.pt", layout="nope")

    marker = tmp_path / "ran.txt"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    torch.save(torch.nn.Conv2d(3, 3, 3), tmp_path / "module.pth")  # a whole module: pickled code too
    for path, glob in [(tmp_path / "evil.pth", "GLOBAL io.open"), (tmp_path / "module.pth", "GLOBAL torch.nn")]:
        with pytest.raises(ConfigError) as e:
            load_model(path)
        assert one_line(e).startswith(f"ckpt={path}: refused: it holds pickled code ({glob}")
    assert not marker.exists()


def run_command(module, args: list[str], monkeypatch) -> int:
    """A command through its own entry point (``@hydra.main`` included) in this process; its exit status."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr("sys.argv", [module.__name__, *args])
    GlobalHydra.instance().clear()
    try:
        module.main()
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        GlobalHydra.instance().clear()
    return 0


def test_export_turns_a_community_file_into_a_srexp_file(tmp_path, monkeypatch, capsys):
    """srexp-export as a running Hydra app: the loader composes train.yaml beside the app's own Hydra."""
    from srexp.cli import export
    from srexp.nets import foreign

    model = compact_model(1, scale=2)
    torch.save({"params_ema": model.state_dict()}, tmp_path / "c.pth")
    foreign._composed.cache_clear()
    foreign._compose_train.cache_clear()  # compose for real, inside the app
    assert run_command(export, [f"ckpt={tmp_path / 'c.pth'}", f"out={tmp_path / 'c.safetensors'}"], monkeypatch) == 0
    info = check_float(tmp_path / "c.safetensors", model)  # now a srexp file: the converted net and its config
    assert info["choices"]["arch"] == "custom" and info["config"]["foreign"]["layout"] == "realesrgan-compact"

    span = spandrel().architectures.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    torch.save(span.state_dict(), tmp_path / "span.pth")
    capsys.readouterr()
    assert run_command(export, [f"ckpt={tmp_path / 'span.pth'}", f"out={tmp_path / 's.safetensors'}"],
                       monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"srexp-export: error: ckpt={tmp_path / 'span.pth'}: a net spandrel builds") and \
        len(err.splitlines()) == 1 and not (tmp_path / "s.safetensors").exists()


def test_runtime_imports_spandrel_and_takes_its_torchvision_stand_in_out(monkeypatch):
    """Where torchvision does not import, srexp imports spandrel with a stand-in during that import only: afterwards
    no torchvision is left in sys.modules, and the two architectures that wanted it get a function that refuses."""
    import sys

    from srexp.nets.foreign import _spandrel

    spandrel()  # skips where spandrel is not installed
    for name in [m for m in sys.modules if m.split(".")[0] in ("spandrel", "torchvision")]:
        monkeypatch.delitem(sys.modules, name)  # put back as they were after the test
    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision imports here: spandrel imports as it is, nothing is stood in")
    except Exception:  # noqa: BLE001 - missing or broken beside this torch
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            monkeypatch.delitem(sys.modules, name)
    _spandrel.import_spandrel.cache_clear()
    try:
        mod, why = _spandrel.import_spandrel()
        assert mod is not None and why == "" and not any(m.split(".")[0] == "torchvision" for m in sys.modules)
        with pytest.raises(RuntimeError, match="need torchvision"):
            mod.architectures.RestoreFormer.tv_normalize(torch.zeros(1, 3, 2, 2), [0.5] * 3, [0.5] * 3)
    finally:
        _spandrel.import_spandrel.cache_clear()


# ------------------------------------------------------------- the other families' layouts, through the commands
def official_file(layout: str, path: Path) -> torch.nn.Module:
    """A tiny official net (spandrel's implementation, random weights) saved at ``path`` in ``layout``'s file form
    (the containers their releases use: BasicSR's ``params_ema``, SwinIR's ``params``, a safetensors file)."""
    from test_foreign_rcan_rrdb import BASICSR, NEW, old_to
    from test_foreign_swinir import official

    archs = spandrel().architectures
    torch.manual_seed(0)
    if layout == "rcan":
        model = archs.RCAN.RCAN(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=4)
        state = model.state_dict()
    elif layout.startswith(("esrgan", "basicsr")):
        model = archs.ESRGAN.ESRGAN(num_filters=8, num_blocks=1, scale=4)
        state = model.state_dict()
        state = {"esrgan-new": lambda s: old_to(s, NEW), "basicsr-rrdbnet": lambda s: {"params_ema": old_to(s, BASICSR)}
                 }.get(layout, lambda s: s)(state)
    else:  # swinir (classical ×2, in params) or swinir-light (×3, safetensors)
        model = official("pixelshuffle" if layout == "swinir" else "pixelshuffledirect", 2 if layout == "swinir" else 3)
        state = {"params": model.state_dict()} if layout == "swinir" else model.state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return model.eval()


@pytest.mark.parametrize("layout,name", [("rcan", "RCAN_BIX2.pt"), ("esrgan-old", "RRDB_PSNR_x4_old_arch.pth"),
                                         ("esrgan-new", "RRDB_ESRGAN_x4.pth"),
                                         ("basicsr-rrdbnet", "RealESRNet_x4plus.pth"),
                                         ("swinir", "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth"),
                                         ("swinir-light", "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3.safetensors")])
def test_every_official_layout_through_upscale(layout, name, tmp_path):
    """Each layout's file, detected with no hint, runs through srexp-upscale (tiled where the net allows it) and gives
    the official net's output; the layout and the srexp preset are recorded in the config."""
    ckpt = tmp_path / name
    model = official_file(layout, ckpt)
    check_upscale(ckpt, lambda x: model(x.clone()), tmp_path)  # spandrel's RCAN scales its input in place
    cfg, choices, _ = load_model(ckpt)
    assert cfg["foreign"]["layout"] == layout
    assert choices["arch"] == "custom"  # tiny nets: not the preset's size, so no paper row beside them


def test_rcan_through_eval_beside_its_paper_row(tmp_path, data_root, monkeypatch):
    ckpt = tmp_path / "RCAN_BIX2.pt"
    model = official_file("rcan", ckpt)
    rows = check_eval(ckpt, lambda x: model(x.clone()), data_root, tmp_path, monkeypatch, 2)
    assert rows[0]["protocol"]["name"] == "rgb_uint8"
