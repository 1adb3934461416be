"""Shipped models (srexp/models/, made by bench/reproduction.py): each loads by name, carries its provenance, and
measures today what was recorded when it was made, to 0.001 dB — a regression check of the whole protocol
(MATLAB resize, Y, shave, quantisation) and of the network code."""
from __future__ import annotations

import subprocess
import sys

import pytest

from srexp.errors import ConfigError
from srexp.tasks.benchmark import benchmark
from srexp.training.checkpoint import load_model, nets_from_checkpoint
from srexp.models import TOLERANCE_DB, metadata, model_path, shipped

SHIPPED = shipped()


def test_models_ship_with_provenance():
    assert {"fsrcnn_x2", "fsrcnn_x3", "fsrcnn_x4", "espcn_x3"} <= set(SHIPPED)
    for name in SHIPPED:
        meta = metadata(name)
        prov = meta["provenance"]
        assert prov["name"] == name and prov["steps"] > 0 and prov["commit"] and prov["train_data"]["T91"]
        scale = int(name.rsplit("_x", 1)[1])
        assert {(r["set"], r["scale"]) for r in meta["recorded"]} >= {("Set5", scale), ("Set14", scale)}
        assert model_path(name).stat().st_size < 200_000  # small enough to ship in the package


def test_unknown_model_is_one_line():
    with pytest.raises(ConfigError, match="model=nope is not a shipped model \\(valid: .*fsrcnn_x3"):
        model_path("nope")


@pytest.mark.slow  # each model over Set5 and Set14
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_measures_what_was_recorded(name, shared_data):
    tcfg, _, state = load_model(model_path(name))
    nets = nets_from_checkpoint(tcfg, state, [tcfg["scale"]])
    recorded = {(r["set"], r["scale"]): r for r in metadata(name)["recorded"]}
    rows, missing = benchmark(nets, ["Set5", "Set14"], tcfg["protocol"], str(shared_data), "cpu")
    assert not missing and len(rows) == 2
    for r in rows:
        rec = recorded[(r["set"], r["scale"])]
        assert abs(r["psnr"] - rec["psnr"]) <= TOLERANCE_DB, (name, r["set"], r["psnr"], rec["psnr"])
        assert abs(r["ssim"] - rec["ssim"]) <= 1e-5, (name, r["set"])
        assert r["protocol"]["images_sha1"] == rec["protocol"]["images_sha1"]  # the same test images


@pytest.mark.slow
def test_srexp_eval_model_by_name_prints_ours_paper_recorded(shared_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "srexp.cli.evaluate", "model=fsrcnn_x3", "eval.check=true",
                        f"eval.root={shared_data}", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| Set5 | ×3 |" in r.stdout and "33.06" in r.stdout  # the paper column (91-image FSRCNN)
    assert "measured now" in r.stdout and "Protocol `y_float`" in r.stdout


@pytest.mark.slow
def test_srexp_eval_model_without_test_sets_prints_the_recorded_table(tmp_path):
    """A fresh install has no Set5: the recorded table (ours | paper | Δ) still comes out, with how to re-measure."""
    r = subprocess.run([sys.executable, "-m", "srexp.cli.evaluate", "model=fsrcnn_x3", f"eval.root={tmp_path / 'none'}",
                        f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = {row["set"]: row for row in metadata("fsrcnn_x3")["recorded"]}
    assert f"| Set5 | ×3 | {rec['Set5']['psnr']:.3f} / {rec['Set5']['ssim']:.4f} | 33.06 |" in r.stdout
    assert "set not under the data root" in r.stdout and "No test set was found to re-measure" in r.stdout


def test_reproduction_script_gpu_half_refuses_without_a_gpu(capsys):
    import importlib.util

    import torch

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("reproduction", REPO / "bench" / "reproduction.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.RECIPES) == {"fsrcnn_x2", "fsrcnn_x3", "fsrcnn_x4", "espcn_x3"} and "vdsr_x2" in mod.GPU_RECIPES
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: --gpu would train")
    with pytest.raises(SystemExit) as e:
        mod.main(["--gpu"])
    assert e.value.code == 2 and "--gpu: no CUDA device here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.main(["--only", "nope"])
    assert "--only nope: unknown recipe" in capsys.readouterr().err
