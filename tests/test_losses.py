"""Losses: pixel, adversarial, and the VGG19 perceptual loss (layer list, torchvision weights, where weights come
from, frozen and out of the checkpoint)."""
import math
import urllib.error

import pytest
import torch
import torch.nn as nn

from srexp.errors import ConfigError, SrexpError
from srexp.losses.adversarial import AdversarialLoss
from srexp.losses.perceptual import PerceptualLoss
from srexp.losses.pixel import CharbonnierLoss
from srexp.nets import vgg
from srexp.nets.vgg import VGG19_FILE, VGG19_URL, VGG19Features

# torchvision's vgg19().features: conv layers at these indices (ReLU after each, max-pools at 4, 9, 18, 27, 36)
TV_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
            16: (256, 256), 19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512), 28: (512, 512),
            30: (512, 512), 32: (512, 512), 34: (512, 512)}



def tv_state_dict(upto: int, seed: int = 0) -> dict:
    """A state dict with torchvision's VGG19 key names and shapes for features.0 … features.<upto>, plus a
    classifier entry (torchvision's file has one; it must be ignored)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (co, ci) in TV_CONVS.items():
        if i <= upto:
            sd[f"features.{i}.weight"] = torch.randn(co, ci, 3, 3, generator=g) * math.sqrt(2 / (9 * co))
            sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.01
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    return sd


def test_pixel_losses():
    x, y = torch.zeros(1, 1, 2, 2), torch.tensor([0.0, 0.5, -1.0, 2.0]).view(1, 1, 2, 2)
    c = CharbonnierLoss(eps=1e-3)
    assert c(x, x).item() == pytest.approx(1e-3)
    assert c(x, y).item() == pytest.approx(nn.L1Loss()(x, y).item() + 0.25e-3, abs=1e-5)
    assert c(x, y).item() > nn.L1Loss()(x, y).item()


def test_vgg19_layer_list_is_torchvisions():
    net = VGG19Features("pool5", pretrained=False)
    assert len(net.features) == 37 and vgg.LAYER_NAMES[34:37] == ["conv5_4", "relu5_4", "pool5"]
    shapes = {k: tuple(v.shape) for k, v in net.features.state_dict().items()}
    assert shapes == {**{f"{i}.weight": (co, ci, 3, 3) for i, (co, ci) in TV_CONVS.items()},
                      **{f"{i}.bias": (co,) for i, (co, _) in TV_CONVS.items()}}
    assert not any(k in net.state_dict() for k in ("mean", "std"))  # normalisation buffers are not persistent


def test_vgg_loads_torchvision_state_dict_and_feature_shapes(tmp_path):
    path = tmp_path / "vgg.pth"
    sd = tv_state_dict(upto=7)
    torch.save(sd, path)
    net = VGG19Features("relu2_2", weights=str(path))
    assert torch.equal(net.features[5].weight, sd["features.5.weight"])
    assert torch.equal(net.features[7].bias, sd["features.7.bias"])
    x = torch.rand(2, 3, 24, 20)
    assert net(x).shape == (2, 128, 12, 10)
    # ImageNet normalisation happens inside, and grey input is replicated to RGB
    expected = torch.relu(nn.functional.conv2d((x - net.mean) / net.std, sd["features.0.weight"], sd["features.0.bias"],
                                               padding=1))
    assert torch.allclose(net.features[:2]((x - net.mean) / net.std), expected, atol=1e-6)
    assert torch.allclose(net(x[:, :1]), net(x[:, :1].expand(-1, 3, -1, -1)))
    deep = VGG19Features("relu5_4", pretrained=False)
    assert deep(x[..., :16, :16]).shape == (2, 512, 1, 1) and VGG19Features("conv5_4", pretrained=False).layer == "conv5_4"
    with pytest.raises(SrexpError, match="no features.10.weight"):
        VGG19Features("relu3_1", weights=str(path))  # deeper than the file has
    with pytest.raises(ConfigError, match="relu5_4"):
        VGG19Features("relu6_1", pretrained=False)


def test_one_vgg_taps_several_layers_in_one_pass():
    """Named taps: a list in the order asked, each equal to a net ending at that layer; the net stops at the
    deepest; a width scales the blocks (DFDNet's small random encoders) and a seed makes the random init repeatable."""
    torch.manual_seed(0)
    multi = VGG19Features(["relu3_4", "relu1_2", "relu3_4"], pretrained=False)
    assert multi.layer == "relu3_4" and len(multi.features) == vgg.LAYER_NAMES.index("relu3_4") + 1
    assert multi.channels == [256, 64, 256] and vgg.layer_channels("pool5", width=4) == 32
    x = torch.rand(2, 3, 16, 16)
    out = multi(x)
    assert isinstance(out, list) and [f.shape[1] for f in out] == [256, 64, 256] and torch.equal(out[0], out[2])
    single = VGG19Features("relu1_2", pretrained=False)
    single.load_state_dict(multi.state_dict(), strict=False)
    assert torch.equal(single(x), out[1])
    small = VGG19Features(["relu2_2", "relu5_4"], pretrained=False, width=4, seed=3, frozen=False)
    again = VGG19Features(["relu2_2", "relu5_4"], pretrained=False, width=4, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(small.state_dict().values(), again.state_dict().values()))
    assert small.identity == "vgg19[width=4]:random(seed=3)" and [f.shape[1] for f in small(x)] == [8, 32]
    assert small.training and all(p.requires_grad for p in small.parameters())  # not frozen: trainable
    assert not again.train().training and not any(p.requires_grad for p in again.parameters())
    with pytest.raises(ConfigError, match="width=64"):
        VGG19Features("relu1_2", width=4)  # torchvision's weights are width 64
    with pytest.raises(ConfigError, match="unknown"):
        VGG19Features([], pretrained=False)


def test_download_only_when_no_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []
    sd = tv_state_dict(upto=2)

    def fake_download(url, **kw):
        calls.append(url)
        return sd

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    assert vgg.hub_cache_path() == tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE
    net = VGG19Features("relu1_2")  # nothing local: downloaded
    assert calls == [VGG19_URL] and torch.equal(net.features[2].weight, sd["features.2.weight"])

    vgg.hub_cache_path().parent.mkdir(parents=True)
    torch.save(tv_state_dict(upto=2, seed=1), vgg.hub_cache_path())
    net = VGG19Features("relu1_2")  # in the hub cache: no download
    assert calls == [VGG19_URL] and not torch.equal(net.features[2].weight, sd["features.2.weight"])

    explicit = tmp_path / "mine.pth"
    torch.save(sd, explicit)
    net = VGG19Features("relu1_2", weights=str(explicit))  # an explicit file wins
    assert calls == [VGG19_URL] and torch.equal(net.features[2].weight, sd["features.2.weight"])


def test_missing_weights_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, **kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SrexpError) as e:
        PerceptualLoss("relu5_4")
    msg = str(e.value)
    assert "\n" not in msg and str(vgg.hub_cache_path()) in msg and VGG19_URL in msg and "weights=" in msg
    with pytest.raises(SrexpError, match="no such file") as e:
        PerceptualLoss("relu5_4", weights=str(tmp_path / "nope.pth"))
    assert "\n" not in str(e.value)
    (tmp_path / "bad.pth").write_text("not a state dict")
    with pytest.raises(SrexpError, match="not loadable"):
        PerceptualLoss("relu5_4", weights=str(tmp_path / "bad.pth"))


def test_perceptual_zero_for_identical_and_grows_with_distortion():
    torch.manual_seed(0)
    loss = PerceptualLoss("relu2_2", pretrained=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 32), torch.linspace(0, 6, 32), indexing="ij")
    hr = (0.5 + 0.4 * torch.sin(xx[None, None] + torch.arange(3).view(1, 3, 1, 1)) * torch.cos(yy)).clamp(0, 1)
    assert loss(hr, hr).item() == 0.0
    noise = torch.randn_like(hr)
    values = [loss(hr + s * noise, hr).item() for s in (0.01, 0.03, 0.1, 0.3)]
    assert values[0] > 0 and all(a < b for a, b in zip(values, values[1:])), values
    blur = [loss(nn.functional.avg_pool2d(hr, k, 1, k // 2, count_include_pad=False), hr).item() for k in (3, 5, 9)]
    assert all(a < b for a, b in zip(blur, blur[1:])), blur
    # feature_scale s scales the MSE by s²
    scaled = PerceptualLoss("relu2_2", pretrained=False, feature_scale=1 / 12.75)
    scaled.vgg.load_state_dict(loss.vgg.state_dict())
    assert scaled(hr + 0.1 * noise, hr).item() == pytest.approx(loss(hr + 0.1 * noise, hr).item() / 12.75**2, rel=1e-4)


def test_perceptual_gradient_reaches_generator_only():
    loss = PerceptualLoss("relu5_4", pretrained=False)
    gen = nn.Conv2d(3, 3, 3, padding=1)
    holder = nn.ModuleDict({"net": gen, "loss": loss})  # as a task holds them
    holder.train()
    assert not loss.vgg.training and all(not p.requires_grad for p in loss.vgg.parameters())
    assert list(holder.parameters()) == list(gen.parameters())  # an optimiser over the task sees only G
    assert set(holder.state_dict()) == {"net.weight", "net.bias"}  # no VGG weights in checkpoints
    x = torch.rand(2, 3, 16, 16)
    loss(gen(x), x).backward()
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.vgg.parameters())
    holder.to(torch.float64)  # moves/casts reach the hidden VGG
    assert loss.vgg.features[0].weight.dtype == torch.float64 and loss.vgg.mean.dtype == torch.float64


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "ragan"])
def test_adversarial_losses_push_the_right_way(kind):
    adv = AdversarialLoss(kind)
    real = torch.tensor([[0.2], [0.4]], requires_grad=True)
    fake = torch.tensor([[0.1], [0.3]], requires_grad=True)  # LSGAN targets: real 1, fake 0
    adv.discriminator(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # D: raise real, lower fake
    fake.grad = None
    adv.generator(fake, real.detach() if adv.needs_real_for_generator else None).backward()
    assert (fake.grad < 0).all()  # G: raise fake


def test_adversarial_values():
    zero = torch.zeros(4, 1)
    assert AdversarialLoss("vanilla").generator(zero).item() == pytest.approx(math.log(2))
    assert AdversarialLoss("vanilla").discriminator(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert AdversarialLoss("lsgan").generator(torch.ones(4, 1)).item() == 0.0
    assert AdversarialLoss("lsgan").discriminator(torch.ones(4, 1), zero).item() == 0.0
    assert AdversarialLoss("ragan").discriminator(zero, zero).item() == pytest.approx(math.log(2))
    assert AdversarialLoss("vanilla").score(zero).item() == 0.5 and AdversarialLoss("lsgan").score(zero).item() == 0
    with pytest.raises(ConfigError, match="vanilla, lsgan, ragan"):
        AdversarialLoss("wgan")
