"""SRGAN: discriminators, GANTask (both optimisers step, G starts from a checkpoint, VGG out of checkpoints), and
the two-phase recipe through the real CLI (experiment=srresnet_x4, then experiment=srgan_x4)."""
import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from conftest import compose_cfg, folder_overrides, run_cli, shrink
from srexp.errors import ConfigError
from srexp.nets import build_net
from srexp.nets.discriminator import PatchDiscriminator, VGGStyleDiscriminator
from srexp.tasks.gan import GANTask
from srexp.training.checkpoint import load_generator
from srexp.cli.train import run

VGG_D_TINY = ["task.discriminator.dense=16"]


def gan_tiny(*extra: str, steps: int | None = None, val_every: int = 2) -> list[str]:
    """The SRGAN recipe, shrunk: 1 residual block of 8 features, a narrow D, random (untrained) VGG, 16-px HR
    patches; trainer.max_steps the recipe's unless given."""
    return shrink("net.body.num_block=1", "task.loss.perceptual.pretrained=false", "task.discriminator.num_feat=8",
                  "test_sets=[]", *extra, steps=steps, val_every=val_every)



@pytest.fixture(scope="module")
def folder_data(folders) -> list[str]:
    return folder_overrides(folders)


@pytest.fixture(scope="module")
def srresnet_ckpt(folder_data, tmp_path_factory) -> Path:
    """Phase 1 (experiment=srresnet_x4), two steps: the checkpoint phase 2 starts from."""
    out = tmp_path_factory.mktemp("phase1")
    cfg = compose_cfg("train", shrink(*folder_data, "experiment=srresnet_x4", "net.body.num_block=1", "test_sets=[]",
                                      steps=2))
    assert cfg.task.loss._target_ == "torch.nn.MSELoss" and cfg.scale == 4 and cfg.paper.x4.Set5[0] == 32.05
    run(cfg, run_dir=str(out))
    return out / "checkpoints" / "last.ckpt"


def net_state(ckpt: Path, prefix: str) -> dict:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def test_vgg_style_discriminator_is_srgans_and_takes_any_size():
    d = VGGStyleDiscriminator()
    convs = [m for m in d.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2] * 4 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 7  # all but the first conv
    assert d.classifier[1].in_features == 512 * 6 * 6 and d.classifier[1].out_features == 1024
    assert d.features(torch.rand(1, 3, 96, 96)).shape[-2:] == (6, 6)  # the paper's 96 px: the pool is the identity
    small = VGGStyleDiscriminator(num_feat=8, dense=16)
    for size in (16, 24, 40):
        assert small(torch.rand(2, 3, size, size)).shape == (2, 1)
    sn = VGGStyleDiscriminator(num_feat=8, dense=16, bn=False, spectral_norm=True)
    assert any("parametrizations" in k for k in sn.state_dict()) and sn(torch.rand(2, 3, 16, 16)).shape == (2, 1)


def test_patch_discriminator_outputs_a_map():
    d = PatchDiscriminator(num_feat=8)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    assert PatchDiscriminator(num_feat=8, spectral_norm=True)(torch.rand(1, 3, 32, 32)).shape[:2] == (1, 1)


def test_generator_init_same_weights_and_one_line_errors(srresnet_ckpt, folder_data, tmp_path):
    cfg = compose_cfg("train", gan_tiny(*folder_data, "experiment=srgan_x4"))
    net = build_net(cfg.net)
    load_generator(net, srresnet_ckpt)
    want = net_state(srresnet_ckpt, "net.")
    assert want and all(torch.equal(v, want[k]) for k, v in net.state_dict().items())
    with pytest.raises(ConfigError, match="no such file") as e:
        load_generator(net, tmp_path / "missing.ckpt")
    assert "task.generator_init=" in str(e.value) and "\n" not in str(e.value)
    wider = build_net(compose_cfg("train", gan_tiny(*folder_data, "experiment=srgan_x4", "net.num_feat=12")).net)
    with pytest.raises(ConfigError, match="has shape") as e:
        load_generator(wider, srresnet_ckpt)
    assert "\n" not in str(e.value)
    deeper = build_net(compose_cfg("train", gan_tiny(*folder_data, "experiment=srgan_x4", "net.body.num_block=2")).net)
    with pytest.raises(ConfigError, match="does not match"):
        load_generator(deeper, srresnet_ckpt)


@pytest.mark.parametrize("over", [VGG_D_TINY, ["task.adversarial.kind=ragan", "task/discriminator=patch",
                                               "task.discriminator.num_layers=2", "task.loss_weights.pixel=1"]])
def test_both_optimisers_step_from_the_initial_generator(over, srresnet_ckpt, folder_data):
    cfg = compose_cfg("train", gan_tiny(*folder_data, "experiment=srgan_x4", f"task.generator_init={srresnet_ckpt}",
                                        "data.samples=8", *over))
    task = instantiate(cfg.task, net=build_net(cfg.net))
    assert isinstance(task, GANTask)
    g0 = {k: v.clone() for k, v in task.net.state_dict().items()}
    d0 = {k: v.clone() for k, v in task.discriminator.state_dict().items()}
    want = net_state(srresnet_ckpt, "net.")
    assert all(torch.equal(v, want[k]) for k, v in g0.items())  # step 0: the phase-1 generator
    assert all(not k.startswith("loss.") for k in task.state_dict())  # no VGG in the checkpoint's state
    trainer = L.Trainer(accelerator="cpu", max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=instantiate(cfg.data))
    assert trainer.global_step == 4  # 2 batches × (G step + D step)
    for name, before, module in (("G", g0, task.net), ("D", d0, task.discriminator)):
        weights = [k for k, v in before.items() if v.is_floating_point() and "running" not in k]
        changed = [k for k in weights if not torch.equal(before[k], module.state_dict()[k])]
        assert len(changed) > len(weights) // 2, f"{name}: only {changed} changed"
    vgg = task.loss["perceptual"].vgg
    assert not vgg.training and all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    logged = trainer.logged_metrics
    for key in ("train/loss", "train/d_loss", "train/g_perceptual", "train/g_adversarial", "train/d_real"):
        assert math.isfinite(float(logged[key])), key
    assert ("train/g_pixel" in logged) == ("task.loss_weights.pixel=1" in over)  # weight 0: not computed


@pytest.mark.slow
def test_srgan_recipe_through_the_cli(srresnet_ckpt, folder_data, tmp_path):
    out = tmp_path / "run"
    r = run_cli("srexp.cli.train", *gan_tiny(*VGG_D_TINY, *folder_data, "experiment=srgan_x4",
                                             f"task.generator_init={srresnet_ckpt}", steps=20, val_every=10),
                f"hydra.run.dir={out}", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "model PSNR" in r.stdout and (out / "grid.png").is_file()
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    for key in ("train/loss", "train/d_loss", "train/g_perceptual", "train/g_adversarial", "train/d_real",
                "train/d_fake"):
        values = [float(row[key]) for row in rows if row.get(key)]
        assert len(values) == 10 and all(math.isfinite(v) for v in values), key  # one per batch: 20 steps / 2
    assert any(row.get("val/psnr") for row in rows)
    last = out / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 20 and ckpt["srexp_config"]["task"]["_target_"] == "srexp.tasks.gan.GANTask"
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"net", "discriminator"}  # no VGG weights
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    g0, g1 = net_state(srresnet_ckpt, "net."), net_state(last, "net.")
    assert g0.keys() == g1.keys() and not torch.equal(g0["conv_first.0.weight"], g1["conv_first.0.weight"])


@pytest.mark.slow
def test_missing_vgg_weights_offline_is_one_line_from_the_cli(folder_data, tmp_path):
    # an empty torch hub cache and a proxy that refuses every connection: the download fails at once, offline or not
    dead = "http://127.0.0.1:9"
    r = run_cli("srexp.cli.train", *gan_tiny(*VGG_D_TINY, *folder_data, "experiment=srgan_x4",
                                             "task.loss.perceptual.pretrained=true"),
                f"hydra.run.dir={tmp_path / 'run'}",
                env={"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": dead, "HTTPS_PROXY": dead, "no_proxy": "",
                     "NO_PROXY": ""})
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("srexp-train: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert str(expected) in lines[0] and "task.loss.perceptual.weights=PATH" in lines[0]
