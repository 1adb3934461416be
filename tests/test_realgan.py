"""Real-ESRGAN: the U-Net discriminator with spectral norm, the layer-weighted perceptual loss, and the two phases in
one run through the real entry point (experiment=realesrgan_x4_cpu): the switch at the right step, a resume at the
boundary and inside phase 2 ending bit-identical to the uninterrupted run."""
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from conftest import compose_cfg, folder_overrides
from srexp.cli.train import run
from srexp.errors import ConfigError
from srexp.losses.adversarial import AdversarialLoss
from srexp.losses.perceptual import PerceptualLoss
from srexp.nets.discriminator import UNetDiscriminatorSN
from srexp.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYER_NAMES

PRETRAIN, GAN_ITERS = 2, 2
STEPS = PRETRAIN + 2 * GAN_ITERS


def test_unet_discriminator_shapes_spectral_norm_and_a_step():
    d = UNetDiscriminatorSN(num_feat=8)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (8, 3, 1), (16, 4, 2), (32, 4, 2), (64, 4, 2), (32, 3, 1), (16, 3, 1), (8, 3, 1), (8, 3, 1), (8, 3, 1),
        (1, 3, 1)]
    sn = [parametrize.is_parametrized(c, "weight") for c in convs]
    assert sn == [False] + [True] * 8 + [False]  # every conv but the first and the last
    assert all(c.bias is None for c, s in zip(convs, sn) if s)
    u = convs[1].parametrizations.weight[0]._u
    assert u.shape == (16,) and torch.isclose(u.norm(), torch.tensor(1.0))
    for h, w in ((16, 16), (24, 40)):
        assert d(torch.rand(2, 3, h, w)).shape == (2, 1, h, w)  # one logit per pixel
    for h, w in ((20, 16), (16, 30), (17, 17)):
        with pytest.raises(ConfigError, match=f"{h}×{w} px.*multiples of 8") as e:
            d(torch.rand(1, 3, h, w))
        assert "\n" not in str(e.value)
    # the skips matter: without them the output differs
    plain = UNetDiscriminatorSN(num_feat=8, skip_connection=False)
    plain.load_state_dict(d.state_dict())
    x = torch.rand(2, 3, 16, 16)
    d.eval(), plain.eval()
    assert not torch.allclose(d(x), plain(x))
    # the per-pixel logits under srexp's vanilla loss: BCE averaged over every pixel, as BasicSR's GANLoss
    d.train()
    real, fake = d(x), d(torch.rand(2, 3, 16, 16))
    adv = AdversarialLoss("vanilla")
    by_hand = -F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean()
    loss = adv.discriminator(real, fake)
    assert torch.allclose(loss, by_hand, atol=1e-6)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    opt.step()
    after = d.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if "original" in k or k.endswith("weight"))
    u = "down.0.parametrizations.weight.0._u"
    u0 = after[u].clone()
    d.eval()
    d(x)
    assert torch.equal(d.state_dict()[u], u0)  # evaluation uses the stored estimate of the top singular vector
    d.train()
    d(x)
    assert not torch.equal(d.state_dict()[u], u0)  # training refines it (one power iteration per forward)


def test_layer_weighted_perceptual_loss_is_the_weighted_sum_of_single_layers():
    weights = {"conv2_2": 1.0, "conv1_2": 0.1}  # any order
    loss = PerceptualLoss(layer=weights, criterion=nn.L1Loss(), feature_scale=0.5, pretrained=False)
    sr, hr = torch.rand(1, 3, 16, 16, requires_grad=True), torch.rand(1, 3, 16, 16)
    # by hand: VGG's layers one by one on the ImageNet-normalised input, the features kept after each named layer
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats = []
    for x in (sr, hr):
        x, out = (x - mean) / std, {}
        for name, layer in zip(LAYER_NAMES, loss.vgg.features):
            x = out[name] = layer(x)
        feats.append(out)
    want = sum(w * (feats[0][k] * 0.5 - feats[1][k] * 0.5).abs().mean() for k, w in weights.items())
    got = loss(sr, hr)
    assert torch.allclose(got, want, rtol=1e-5) and got.requires_grad
    with pytest.raises(ConfigError, match="layer="):
        PerceptualLoss(layer={}, pretrained=False)


class Record(L.Callback):
    """After each batch: the Lightning step, and whether G and D still hold the weights they started training with;
    at the first phase-2 batch, whether G starts from the phase-1 average."""

    def on_train_start(self, trainer, task):
        self.g0 = {k: v.clone() for k, v in task.net.state_dict().items()}
        self.d0 = {k: v.clone() for k, v in task.discriminator.state_dict().items()}
        self.rows, self.handover = [], None

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        if trainer.global_step == PRETRAIN:  # the first GAN batch, before the hand-over
            self.ema = {k: v.clone() for k, v in task.net_ema.state_dict().items()}
            self.g_before = {k: v.clone() for k, v in task.net.state_dict().items()}

    def on_before_optimizer_step(self, trainer, task, optimizer):
        if trainer.global_step == PRETRAIN and self.handover is None:  # the first G step of phase 2, not yet taken
            self.handover = {k: v.detach().clone() for k, v in task.net.named_parameters()}  # (BN statistics
            # have moved in this batch's forward)

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        same = lambda a, m: all(torch.equal(a[k], v) for k, v in m.state_dict().items())  # noqa: E731
        opt_states = [len(o.state) for o in trainer.optimizers]
        self.rows.append((trainer.global_step, same(self.g0, task.net), same(self.d0, task.discriminator),
                          opt_states))


def cpu_preset(folders, *extra) -> list[str]:
    """experiment=realesrgan_x4_cpu shortened: 2 phase-1 steps, 2 GAN iterations, a checkpoint every 2 steps."""
    return ["experiment=realesrgan_x4_cpu", *folder_overrides(folders), f"task.pretrain_steps={PRETRAIN}",
            f"trainer.max_steps={STEPS}", f"data.samples={2 * (PRETRAIN + GAN_ITERS)}", "trainer.val_check_interval=4",
            "+callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.progress_bar=null", "callbacks.image_grid=null",
            "task.loss.perceptual.layer=conv2_2", *extra]  # a shallow VGG: the 5-layer one costs seconds on CPU


def state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(folders, tmp_path_factory) -> tuple[Path, Record]:
    """The CPU preset with LPIPS and DISTS validated (small stand-in weight files in torchvision's layout)."""
    from test_perceptual import make_weight_files

    out = tmp_path_factory.mktemp("realgan")
    weights = make_weight_files(tmp_path_factory.mktemp("weights"))
    rec = Record()
    cfg = compose_cfg("train", cpu_preset(folders, "task.metrics=[lpips,dists]",
                                          *(f"task.metric_weights.{k}={v}" for k, v in weights.items())))
    assert cfg.task.loss_weights == {"pixel": 1.0, "perceptual": 1.0, "adversarial": 0.1}
    assert cfg.task.discriminator._target_.endswith("UNetDiscriminatorSN") and cfg.task.ema_decay == 0.999
    run(cfg, run_dir=str(out), callbacks=[rec])
    return out, rec


def test_both_phases_run_and_switch_at_the_right_step(reference):
    out, rec = reference
    steps = [r[0] for r in rec.rows]
    assert steps == [1, 2, 4, 6]  # phase 1: one step a batch; phase 2: a G and a D step
    for step, g_same, d_same, opt_states in rec.rows:
        assert not g_same
        if step <= PRETRAIN:  # D neither stepped nor touched; only the phase-1 optimiser holds state
            assert d_same and opt_states[:2] == [0, 0] and opt_states[2] > 0
        else:
            assert not d_same and opt_states[0] > 0 and opt_states[1] > 0
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    phases = [float(r["train/phase"]) for r in rows if r.get("train/phase")]
    assert phases == [1.0] * PRETRAIN + [2.0] * GAN_ITERS
    assert sum(bool(r.get("train/g_perceptual")) for r in rows) == GAN_ITERS
    assert any(r.get("val/psnr") for r in rows)
    for k in ("val/lpips", "val/dists"):  # the perceptual metrics beside PSNR (stand-in weights: any scale)
        assert 0 < float([r[k] for r in rows if r.get(k)][-1]) < float("inf"), k
    last = state(out / "checkpoints" / "last.ckpt")
    assert last["global_step"] == STEPS and len(last["optimizer_states"]) == 3 and len(last["lr_schedulers"]) == 3
    assert {k.split(".")[0] for k in last["state_dict"]} == {"net", "net_ema", "discriminator"}
    # phase 2 starts G from the phase-1 average (gan_from_ema), which differed from G until then
    assert any(not torch.equal(rec.ema[k], v) for k, v in rec.g_before.items())
    assert all(torch.equal(rec.ema[k], v) for k, v in rec.handover.items())


# at the boundary (the resumed run makes the switch), and inside phase 2 (three optimisers and schedulers restored)
@pytest.mark.parametrize("at", [PRETRAIN, pytest.param(PRETRAIN + 2, marks=pytest.mark.slow)])
def test_resume_across_the_phase_boundary_is_bit_identical(reference, folders, tmp_path, at):
    ref, _ = reference
    cfg = compose_cfg("train", cpu_preset(folders, f"ckpt_path={ref / 'checkpoints' / f'step-{at}.ckpt'}"))
    run(cfg, run_dir=str(tmp_path))
    a, b = state(ref / "checkpoints" / "last.ckpt"), state(tmp_path / "checkpoints" / "last.ckpt")
    assert b["global_step"] == STEPS and a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_pretrain_steps_without_its_loss_or_optimiser_is_one_line():
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from srexp.nets import build_net

    base = compose_cfg("train", ["experiment=realesrgan_x4_cpu", "task.loss.perceptual=null"])
    net = build_net(base.net)
    for key, value in (("pretrain_loss", None), ("pretrain_optimizer", None), ("pretrain_steps", -1)):
        task = base.task.copy()
        task[key] = value
        with pytest.raises(InstantiationException) as e:  # the CLI prints its cause in one line
            instantiate(task, net=net)
        cause = e.value.__cause__
        assert isinstance(cause, ConfigError) and "task.pretrain_steps=" in str(cause) and "\n" not in str(cause)


def test_the_leaderboard_shows_the_perceptual_metrics(reference, tmp_path):
    from test_perceptual import write_leaderboard

    out, _ = reference
    write_leaderboard([out], tmp_path)
    header = (tmp_path / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "LPIPS" in header and "DISTS" in header
    row = next(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert float(row["LPIPS"]) > 0 and float(row["DISTS"]) > 0
