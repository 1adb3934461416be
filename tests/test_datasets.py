"""srexp-data (list / download / verify) and the training-set options: downloads are tested against a local HTTP
server on 127.0.0.1 serving archives the test builds; shipped bicubic LR folders; multi-scale patches."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srexp.data.benchmarks import find_set, premade_lr_file
from srexp.cli.data import main as data_main
from srexp.data.datamodule import MultiScalePatches, Pair, SRDataModule, load_pairs
from srexp.data.download import ARCHIVES, DownloadError, download, extract


def png_bytes(seed: int, size=(12, 10), mode="RGB") -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def benchmark_files(lr_for_set5: bool = True) -> dict[str, bytes]:
    files = {}
    for name, n in (("Set5", 5), ("Set14", 14), ("B100", 100), ("Urban100", 100)):
        for k in range(n):
            files[f"benchmark/{name}/HR/img{k:03d}.png"] = png_bytes(k, (8, 8))
    if lr_for_set5:
        for k in range(5):
            files[f"benchmark/Set5/LR_bicubic/X2/img{k:03d}x2.png"] = png_bytes(k, (4, 4))
    return files


def run_data(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        data_main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_download_benchmark_tar_checks_checksum_extracts_and_lists(server, tmp_path, capsys):
    url, www = server
    tar = make_tar(www / "benchmark.tar", benchmark_files())
    root = tmp_path / "root"
    # the registry's MD5 is that of the real benchmark.tar: ours differs, so it is refused and removed
    rc, out, err = run_data(capsys, "--root", str(root), "download", "Set5", "--url", f"{url}/benchmark.tar")
    last = err.strip().splitlines()[-1]  # (download progress goes to stderr before it)
    assert rc == 2 and last.startswith("srexp-data: error: benchmark.tar: md5 is ") and "expected 4ace41d33c" in last
    assert not list((root / ".downloads").glob("*.tar*"))
    # with the SHA-256 of what is served it is verified, unpacked into the documented layout and found
    rc, out, err = run_data(capsys, "--root", str(root), "download", "Set5", "--url", f"{url}/benchmark.tar",
                            "--sha256", sha256(tar))
    assert rc == 0, err
    assert f"verified by sha256 (--sha256); sha256 {sha256(tar)}" in out
    assert len(find_set("Set5", root)) == 5 and len(find_set("Urban100", root)) == 100
    assert (root / "benchmark" / "Set5" / "HR").is_dir() and not (root / ".downloads" / "benchmark.tar").exists()
    # in place: a second download is skipped
    rc, out, _ = run_data(capsys, "--root", str(root), "download", "Set14")
    assert rc == 0 and "already in place" in out
    rc, out, _ = run_data(capsys, "--root", str(root), "list")
    assert rc == 0
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert "shipped bicubic LR ×2" in lines["Set5"] and str(root / "benchmark" / "Set5" / "HR") in lines["Set5"]
    assert lines["B100"].split()[1:3] == ["100", "100"]
    assert "missing (srexp-data download T91)" in lines["T91"]
    assert "needs T91, BSD200" in lines["291"]


def test_download_from_a_mirror_zip_with_a_top_folder_and_structure_check(server, tmp_path, monkeypatch, capsys):
    url, www = server
    monkeypatch.setenv("SREXP_DATA_MIRROR", url + "/mirror/")
    (www / "mirror").mkdir()
    files = {f"wrapper/DIV2K_valid_HR/{801 + k:04d}.png": png_bytes(k, (6, 6)) for k in range(100)}
    z = make_zip(www / "mirror" / "DIV2K_valid_HR.zip", files)
    root = tmp_path / "root"
    reports = download("DIV2K_valid", root, sha256=sha256(z), progress=False)
    assert [r.placed for r in reports] == [[root / "DIV2K" / "DIV2K_valid_HR"]]
    assert len(find_set("DIV2K_valid", root)) == 100
    # an archive with one image too few is caught by the structure check (no checksum known for it)
    del files["wrapper/DIV2K_valid_HR/0900.png"]
    z = make_zip(www / "mirror" / "DIV2K_valid_HR.zip", files)
    with pytest.raises(DownloadError, match="99 images in .*, expected 100"):
        download("DIV2K_valid", tmp_path / "root2", sha256=sha256(z), progress=False)
    # no such file on the server: one line
    rc, _, err = run_data(capsys, "--root", str(root), "download", "DIV2K_train_LR_bicubic_X2", "--force")
    assert rc == 2 and err.count("\n") == 1 and "srexp-data: error: download of " in err and "404" in err


def test_archives_cannot_write_outside_the_extraction_folder(tmp_path):
    evil_tar = make_tar(tmp_path / "evil.tar", {"../evil.png": b"x"})
    with pytest.raises(DownloadError, match="evil.tar: cannot extract"):
        extract(evil_tar, tmp_path / "out")
    evil_zip = make_zip(tmp_path / "evil.zip", {"../../evil.png": b"x"})
    with pytest.raises(DownloadError, match="would be written outside"):
        extract(evil_zip, tmp_path / "out2")
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(DownloadError, match="not a zip or tar"):
        extract(_write(tmp_path / "plain.bin"), tmp_path / "out3")


def _write(p: Path) -> Path:
    p.write_bytes(b"not an archive")
    return p


def test_registry_is_complete_and_honest():
    for name, a in ARCHIVES.items():
        assert a.url.startswith(("http://", "https://")) and a.members, name
        assert a.checksum is None or a.checksum.split(":")[0] in ("md5", "sha256"), name
        assert a.checksum_source, f"{name}: say where the checksum comes from (or why there is none)"
    with pytest.raises(DownloadError, match="on request"):
        download("Manga109", "/tmp/nowhere")
    with pytest.raises(DownloadError, match="nothing to download named 'Set6'"):
        download("Set6", "/tmp/nowhere")


def test_verify_finds_undecodable_images_and_misfit_lr(tmp_path, capsys):
    hr = tmp_path / "benchmark" / "Set5" / "HR"
    hr.mkdir(parents=True)
    for k in range(4):
        (hr / f"im{k}.png").write_bytes(png_bytes(k, (12, 10)))
    (hr / "im4.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    lr = tmp_path / "benchmark" / "Set5" / "LR_bicubic" / "X2"
    lr.mkdir(parents=True)
    (lr / "im0x2.png").write_bytes(png_bytes(0, (6, 5)))  # fits 12×10 / 2
    (lr / "im1x2.png").write_bytes(png_bytes(1, (4, 4)))  # does not
    rc, out, _ = run_data(capsys, "--root", str(tmp_path), "verify", "Set5", "Set14")
    assert rc == 1
    assert "Set5: 2 problem(s)" in out and "im4.png: cannot decode image" in out
    assert "im1x2.png: 4×4 does not fit HR 10×12 / 2" in out and "Set14: missing" in out
    rc, out, _ = run_data(capsys, "--root", str(tmp_path), "list")
    assert "1 unreadable: im4.png" in out
    rc, _, err = run_data(capsys, "--root", str(tmp_path), "verify", "Set6")
    assert rc == 2 and "unknown set 'Set6'" in err


def test_verify_reference_data(shared_data, capsys):
    rc, out, _ = run_data(capsys, "verify", "Set5", "Set14", "--root", str(shared_data))
    assert rc == 0 and "Set5: ok" in out and "Set14: ok" in out
    rc, _, err = run_data(capsys, "list", "--root", str(shared_data / "nope"))
    assert rc == 2 and err == f"srexp-data: error: data root {shared_data / 'nope'} (--root) does not exist\n"


def div2k_like(root: Path, n: int = 2, size=(36, 30)) -> list[Path]:
    hr_dir = root / "DIV2K" / "DIV2K_train_HR"
    hr_dir.mkdir(parents=True)
    paths = []
    for k in range(n):
        p = hr_dir / f"{k + 1:04d}.png"
        p.write_bytes(png_bytes(k, size))
        paths.append(p)
    return paths


def test_shipped_lr_files_are_used_when_asked(tmp_path):
    hrs = div2k_like(tmp_path)
    lr_dir = tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    made = load_pairs(["DIV2K"], tmp_path, 2, 3, "rgb_uint8")
    # a shipped LR identical to ours (the exact MATLAB resize), and one deliberately different (all 7s)
    Image.fromarray(made[0].lr.permute(1, 2, 0).numpy()).save(lr_dir / "0001x2.png")
    Image.fromarray(np.full((18, 15, 3), 7, np.uint8)).save(lr_dir / "0002x2.png")
    assert premade_lr_file(hrs[0], 2) == lr_dir / "0001x2.png" and premade_lr_file(hrs[0], 3) is None
    used = load_pairs(["DIV2K"], tmp_path, 2, 3, "rgb_uint8", lr_source="files")
    assert torch.equal(used[0].lr, made[0].lr) and torch.equal(used[0].ref_y, made[0].ref_y)
    assert (used[1].lr == 7).all() and torch.equal(used[1].hr, made[1].hr)
    y = load_pairs(["DIV2K"], tmp_path, 2, 1, "y_float", lr_source="auto")  # a Y net: Y of the shipped RGB LR
    assert y[1].lr.shape == (1, 18, 15) and y[1].lr.dtype == torch.float32
    with pytest.raises(Exception, match=r"data.lr_source=files: no shipped bicubic LR for .*0001.png at ×3"):
        load_pairs(["DIV2K"], tmp_path, 3, 3, "rgb_uint8", lr_source="files")
    auto = load_pairs(["DIV2K"], tmp_path, 3, 3, "rgb_uint8", lr_source="auto")  # none at ×3: made
    assert auto[0].lr.shape == (3, 12, 10)


def test_multiscale_batches_share_one_scale_and_cover_all():
    pairs = {}
    for s in (2, 3, 4):
        lr = torch.randint(0, 256, (1, 30, 30), dtype=torch.uint8)
        pairs[s] = [Pair("p", lr, lr.repeat_interleave(s, -1).repeat_interleave(s, -2), torch.zeros(1))]
    ds = MultiScalePatches(pairs, patch_size=41, length=400, group=8, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    seen = set()
    for lr, hr in loader:  # collating would fail if a batch mixed scales
        s = hr.shape[-1] // lr.shape[-1]
        seen.add(s)
        assert hr.shape[-1] == 41 // s * s
    assert seen == {2, 3, 4}


def test_multiscale_datamodule_and_pre_upsampling_net(tmp_path):
    from conftest import write_images
    from srexp.nets import build_net
    from conftest import compose_cfg

    write_images(tmp_path / "train", n=2, size=(64, 56))
    dm = SRDataModule(train=[str(tmp_path / "train")], val=[], scale=3, channels=1, protocol="y_float",
                      patch_size=24, batch_size=4, num_workers=0, samples=64, scales=[2, 3, 4])
    dm.setup("fit")
    assert dm.multiscale and sorted(dm.train_pairs) == [2, 3, 4]
    cfg = compose_cfg("train", ["arch=vdsr", "scale=3", "net.num_feat=8", "net.body.num_block=2"])
    net = build_net(cfg.net)
    for lr, hr in dm.train_dataloader():
        out = net(lr.float(), scale=hr.shape[-1] // lr.shape[-1])
        assert out.shape == hr.shape
    post = build_net(compose_cfg("train", ["arch=espcn", "scale=3"]).net)
    with pytest.raises(Exception, match="built for scale=3, got a ×2 batch"):
        post(torch.rand(1, 1, 8, 8), scale=2)
