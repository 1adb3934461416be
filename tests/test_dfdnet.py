"""DFDNet (face restoration with component dictionaries): component AdaIN, atom selection, RoIAlign and its inverse,
the dictionary file and its one-line errors, K-means, the batched degradation (blur, JPEG) and the face data; then
through the real commands: a dictionary built from the shared face crops, experiment=dfdnet_x4 trained a few steps,
a held-back face restored, and the output following the dictionary."""
import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_cfg, data_root, run_cli, shrink
from srexp.data.faces import FaceDataModule, FaceDegradation, flip_face, load_face, load_landmarks
from srexp.errors import ConfigError
from srexp.losses.adversarial import AdversarialLoss
from srexp.losses.perceptual import StyleLoss
from srexp.nets.face.dfdnet import (CANONICAL_BOXES, DFDNet, canonical_boxes, component_adain, dictionary_shapes, paste,
                               roi_align, select_atoms)
from srexp.nets.face.dictionary import kmeans, read_dictionary, save_dictionary
from srexp.ops.degrade import gaussian_blur, jpeg

SIZE = 64  # faces downscaled from 512: every stride (2–16) still has a grid
NET = ["face_size=64", "net.num_atoms=4", "net.num_feat=4", "net.encoder.width=4", "net.encoder.pretrained=false"]
# faces have no patches; the width is NET's
TRAIN = shrink(*NET, "experiment=dfdnet_x4", "task.loss.perceptual.pretrained=false", "task.loss.style.pretrained=false",
               "task.discriminator.num_feat=8", "task.discriminator.num_layers=2", patch=None, width=None)
ENV = {"OMP_NUM_THREADS": "1"}
HELD_BACK = "Adele_crop.png"  # in no dictionary, no training and no validation set



@pytest.fixture(scope="module")
def faces():
    root = data_root()
    if root is None or not (root / "faces" / "CodeFormer_cropped_faces").is_dir():
        pytest.skip("face crops not found: set SREXP_DATA to the folder holding faces/GFPGAN_cropped_faces and "
                    "faces/CodeFormer_cropped_faces")
    return root / "faces"


def tiny_net(atoms: dict, **kw) -> DFDNet:
    return DFDNet(atoms, size=SIZE, num_atoms=4, num_feat=4, encoder={"width": 4, "pretrained": False}, **kw)


def random_atoms(seed: int = 0, k: int = 4) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=g) for name, shape in dictionary_shapes(SIZE, 4, k).items()}


# ------------------------------------------------------------------------------------------------------- the net's ops
def test_component_adain_gives_every_atom_the_targets_mean_and_std():
    g = torch.Generator().manual_seed(0)
    atoms = torch.randn(5, 3, 6, 7, generator=g) * 4 + 2
    target = torch.randn(2, 3, 6, 7, generator=g) * torch.tensor([0.5, 2.0, 3.0]).view(1, 3, 1, 1) - 1
    out = component_adain(atoms, target)
    assert out.shape == (2, 5, 3, 6, 7)
    mean, std = target.mean((-2, -1)), target.std((-2, -1), unbiased=False)
    torch.testing.assert_close(out.mean((-2, -1)), mean[:, None].expand(2, 5, 3), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.std((-2, -1), unbiased=False), std[:, None].expand(2, 5, 3), atol=1e-4, rtol=1e-4)
    # the structure stays the atom's: AdaIN is affine per channel, so correlation with the atom is 1
    a, o = atoms[1, 2].flatten(), out[0, 1, 2].flatten()
    assert torch.corrcoef(torch.stack([a, o]))[0, 1] > 0.9999


@pytest.mark.parametrize("distance", ["inner_product", "l2"])
def test_selection_picks_the_nearest_adained_atom(distance):
    g = torch.Generator().manual_seed(1)
    atoms = torch.randn(16, 4, 5, 5, generator=g)
    x = torch.randn(3, 4, 5, 5, generator=g)
    x[1] = atoms[7] * 3 + 0.5  # an affine copy of atom 7: after AdaIN, atom 7 *is* x
    index, chosen = select_atoms(x, atoms, distance)
    full = component_adain(atoms, x)  # (N, K, C, h, w)
    if distance == "l2":
        brute = (full - x[:, None]).pow(2).sum((2, 3, 4)).argmin(1)
    else:
        brute = (full * x[:, None]).sum((2, 3, 4)).argmax(1)
    assert index.tolist() == brute.tolist() and index[1] == 7
    torch.testing.assert_close(chosen, full[torch.arange(3), index])
    torch.testing.assert_close(chosen[1], x[1], atol=1e-3, rtol=1e-3)


def test_roi_align_crops_exactly_on_the_grid_and_paste_inverts_it():
    feat = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    boxes = torch.tensor([[8.0, 4.0, 20.0, 12.0], [0.0, 0.0, 32.0, 32.0]])  # image pixels; stride 2
    crop = roi_align(feat, boxes, (4, 6), 0.5, sampling_ratio=1)
    torch.testing.assert_close(crop[0], feat[0, :, 2:6, 4:10])  # a box on pixel edges, one sample per pixel centre
    pasted = paste(torch.ones(2, 3, 4, 6), boxes, (16, 16), 0.5)
    assert pasted[0, :, 2:6, 4:10].eq(1).all() and pasted[0].sum() == 3 * 4 * 6  # zero outside the box
    torch.testing.assert_close(roi_align(paste(crop, boxes, (16, 16), 0.5), boxes, (4, 6), 0.5, 1)[0], crop[0])


def test_dfdnet_contract_gradients_and_no_frozen_weights_in_its_state():
    net = tiny_net(random_atoms())
    lq = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(net(lq), lq)  # the last conv starts at zero: a fresh net returns its input
    torch.nn.init.normal_(net.conv_last[-1].weight, std=0.1)
    out = net(lq, canonical_boxes(2, SIZE, SIZE))
    assert out.shape == lq.shape and torch.equal(out, net(lq))  # boxes=None: the canonical boxes
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert not any(k.startswith("encoder") or "atoms" in k for k in net.state_dict())  # frozen VGG, dictionary
    assert net.last_index.shape == (2, 4, 4)  # (N, scales, parts)
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.rand(1, 3, 40, 40))


def test_a_trainable_encoder_is_saved_under_torchvisions_numbering():
    """Checkpoints of a fine-tuned encoder keep the keys they always had: encoder.features.N.* with N torchvision's
    index of each VGG19 conv up to conv5_4 (no pool5)."""
    net = DFDNet(random_atoms(), size=SIZE, num_atoms=4, num_feat=4,
                 encoder={"width": 4, "pretrained": False, "trainable": True})
    convs = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    assert {k for k in net.state_dict() if k.startswith("encoder.")} == {
        f"encoder.features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    assert net.encoder.training and all(p.requires_grad for p in net.encoder.parameters())


def test_canonical_boxes_scale_with_the_face_and_flip_swaps_the_eyes():
    b = canonical_boxes(1, 128, 128)[0]
    torch.testing.assert_close(b, torch.tensor(CANONICAL_BOXES, dtype=torch.float32) / 4)
    img = torch.zeros(3, 128, 128, dtype=torch.uint8)
    img[:, :, :10] = 255
    f_img, f_b = flip_face(img, b)
    assert f_img[:, :, -10:].eq(255).all()
    torch.testing.assert_close(f_b[0], torch.stack([128 - b[1, 2], b[1, 1], 128 - b[1, 0], b[1, 3]]))  # eyes swap
    torch.testing.assert_close(flip_face(f_img, f_b)[1], b)


# -------------------------------------------------------------------------------------------------- dictionary file
def test_dictionary_errors_are_one_line_naming_file_and_shapes(tmp_path):
    good = random_atoms()
    path = tmp_path / "d.safetensors"
    save_dictionary(path, good, {"encoder": "vgg19[width=4]:random(seed=0)", "K": 4})
    atoms, prov = read_dictionary(path)
    assert prov["K"] == 4 and all(torch.equal(atoms[k], good[k]) for k in good)
    tiny_net(path)  # loads
    wrong = {**good, "nose.relu3_4": torch.zeros(4, 16, 3, 3)}
    save_dictionary(tmp_path / "w.safetensors", wrong, {"encoder": "vgg19[width=4]:random(seed=0)"})
    with pytest.raises(ConfigError) as e:
        tiny_net(tmp_path / "w.safetensors")
    msg = str(e.value)
    assert "\n" not in msg and "w.safetensors" in msg and "nose.relu3_4" in msg
    assert "(4, 16, 3, 3)" in msg and "(4, 16, 2, 2)" in msg  # found and expected
    with pytest.raises(ConfigError, match="(4, 8, 5, 5)"):  # K from the config: 5 atoms expected, 4 found
        DFDNet(path, size=SIZE, num_atoms=5, num_feat=4, encoder={"width": 4, "pretrained": False})
    with pytest.raises(ConfigError, match="built with encoder"):
        DFDNet(path, size=SIZE, num_atoms=4, num_feat=4, encoder={"width": 4, "pretrained": False, "seed": 1})
    with pytest.raises(ConfigError, match="no such file"):
        tiny_net(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="net.dictionary is null"):
        tiny_net(None)


def test_kmeans_finds_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    x = (centres.repeat_interleave(50, 0) + 0.3 * torch.randn(200, 2, generator=g))[torch.randperm(200, generator=g)]
    found = kmeans(x, 4, seed=3)
    err = torch.cdist(found, centres).min(0).values
    assert err.max() < 0.2 and torch.equal(found, kmeans(x, 4, seed=3))
    with pytest.raises(ConfigError, match="at least K"):
        kmeans(x[:3], 4)


# ------------------------------------------------------------------------------------------------------ degradation
def test_jpeg_on_the_device_matches_libjpeg(faces):
    img = load_face(faces / "GFPGAN_cropped_faces" / "Julia_Roberts_crop.png", 96, {})[0]
    x = img[None].float() / 255
    psnr = lambda a, b: float(10 * torch.log10(1 / (a - b).pow(2).mean()))  # noqa: E731
    ours = jpeg(x.repeat(2, 1, 1, 1), torch.tensor([40.0, 80.0]))
    for k, q in enumerate((40, 80)):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=q)
        pil = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)[None].float() / 255
        assert psnr(ours[k : k + 1], pil) > 40 > psnr(pil, x)  # ours ≈ libjpeg's decode, and both are lossy
    assert psnr(ours[1:], x) > psnr(ours[:1], x) + 2  # quality 80 keeps more than 40
    assert torch.equal(ours, torch.round(ours * 255) / 255)


def test_blur_is_per_sample_and_degradation_is_reproducible():
    x = torch.rand(3, 3, 32, 32)
    b = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]), max_sigma=2.0)
    assert torch.allclose(b[0], x[0]) and b[1].std() > b[2].std() and torch.allclose(b.mean(), x.mean(), atol=0.02)
    deg = FaceDegradation()
    run = lambda seed: deg(x, torch.Generator().manual_seed(seed), 4.0)  # noqa: E731
    a = run(0)
    assert a.shape == x.shape and torch.equal(a, run(0)) and not torch.equal(a, run(1))
    assert torch.equal(a, torch.round(a * 255) / 255) and not torch.allclose(a, x, atol=0.05)
    with pytest.raises(ConfigError, match="unknown keys"):
        FaceDegradation(blur=[1, 2])


def test_face_data_batches_boxes_from_landmarks_and_degrades_on_transfer(faces, tmp_path):
    gfp = faces / "GFPGAN_cropped_faces"
    box = {"left_eye": [150, 190, 230, 270], "right_eye": [282, 190, 362, 270], "nose": [230, 282, 280, 332],
           "mouth": [200, 320, 310, 430]}
    (tmp_path / "lm.json").write_text(json.dumps({"Julia_Roberts_crop.png": box}))
    lm = load_landmarks(tmp_path / "lm.json")
    _, b = load_face(gfp / "Julia_Roberts_crop.png", 128, lm)
    torch.testing.assert_close(b[3], torch.tensor([50.0, 80, 77.5, 107.5]))  # 512 px → 128 px
    (tmp_path / "bad.json").write_text(json.dumps({"x.png": {"left_eye": [1, 2, 3, 4]}}))
    with pytest.raises(ConfigError, match="needs left_eye"):
        load_landmarks(tmp_path / "bad.json")
    dm = FaceDataModule(train=[str(gfp)], val=[str(gfp / "Paris_Hilton_crop.png")], size=SIZE, batch_size=2,
                        num_workers=0, samples=4, landmarks=str(tmp_path / "lm.json"))
    dm.setup("fit")
    hq, boxes, k = next(iter(dm.train_dataloader()))
    assert hq.dtype == torch.uint8 and hq.shape == (2, 3, SIZE, SIZE) and boxes.shape == (2, 4, 4)
    assert k.tolist() == [0, 1]
    lq, hq_f, boxes_f = dm.on_after_batch_transfer(dm.on_before_batch_transfer((hq, boxes, k)))
    assert lq.shape == hq_f.shape and lq.dtype == torch.float32 and (lq - hq_f).abs().mean() > 0.01
    again = dm.on_after_batch_transfer(dm.on_before_batch_transfer((hq, boxes, k)))[0]
    assert torch.equal(lq, again)  # a batch's degradation is a function of its sample indices
    (pair,) = dm.val_pairs
    assert pair.lr.shape == pair.hr.shape == (3, SIZE, SIZE) and not torch.equal(pair.lr, pair.hr)
    with pytest.raises(ConfigError, match="data.val is empty"):
        FaceDataModule(train=[str(gfp)], val=[])


def test_style_loss_and_hinge():
    style = StyleLoss(layers=("relu1_2", "relu2_2"), pretrained=False)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    assert float(style(x, x)) == 0 and float(style(y, x)) > 0
    style(y, x).backward()
    assert y.grad.abs().sum() > 0 and not list(style.state_dict()) and not list(style.parameters())
    hinge = AdversarialLoss("hinge")
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(hinge.discriminator(real, fake)) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert float(hinge.generator(fake)) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def dictionaries(faces, tmp_path_factory):
    """A: built through the CLI from the 20 CodeFormer crops; B: from the GFPGAN crops but the held-back one."""
    out = tmp_path_factory.mktemp("dict")
    r = run_cli("srexp.cli.face", "build-dictionary", f"images=[{faces / 'CodeFormer_cropped_faces'}]",
                f"output={out / 'a.safetensors'}", *NET, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote" in r.stdout and "K=4" in r.stdout
    from srexp.cli.face import build

    gfp = faces / "GFPGAN_cropped_faces"
    keep = [str(p) for p in sorted(gfp.glob("*.png")) if p.name != HELD_BACK]
    build(compose_cfg("face_dictionary", [*NET, f"images=[{','.join(keep)}]", f"output={out / 'b.safetensors'}",
                                          "device=cpu"]))
    return out / "a.safetensors", out / "b.safetensors"


@pytest.mark.slow
def test_dictionary_provenance(dictionaries):
    atoms, prov = read_dictionary(dictionaries[0])
    assert prov["images"] == 20 and prov["flip"] and prov["K"] == 4 and prov["size"] == SIZE
    assert prov["encoder"] == "vgg19[width=4]:random(seed=0)" and len(prov["images_sha1"]) == 12
    assert set(atoms) == set(dictionary_shapes(SIZE, 4, 4)) and all(torch.isfinite(a).all() for a in atoms.values())
    assert read_dictionary(dictionaries[1])[1]["images"] == 3


@pytest.fixture(scope="module")
def trained(faces, dictionaries, tmp_path_factory):
    out = tmp_path_factory.mktemp("dfdnet") / "run"
    gfp = faces / "GFPGAN_cropped_faces"
    r = run_cli("srexp.cli.train", *TRAIN, f"net.dictionary={dictionaries[0]}",
                f"data.train=[{faces / 'CodeFormer_cropped_faces'}]",
                f"data.val=[{gfp / 'Julia_Roberts_crop.png'},{gfp / 'Justin_Timberlake_crop.png'}]",
                f"hydra.run.dir={out}", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow
def test_train_through_the_cli(trained):
    out, r = trained
    assert "model PSNR" in r.stdout
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    for key in ("train/loss", "train/d_loss", "train/g_pixel", "train/g_perceptual", "train/g_style",
                "train/g_adversarial"):
        values = [float(row[key]) for row in rows if row.get(key)]
        assert len(values) == 2 and all(math.isfinite(v) for v in values), key  # one per batch: 4 steps / 2
    val = json.loads((out / "val_metrics.json").read_text())
    assert val["n_images"] == 2 and math.isfinite(val["psnr"]) and val["bicubic_psnr"] > 15  # the degraded input's
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"net", "discriminator"}
    assert not any(".encoder." in k or "atoms" in k for k in ckpt["state_dict"])  # frozen VGG and dictionary stay out
    assert ckpt["srexp_config"]["task"]["_target_"] == "srexp.tasks.face.FaceTask"


@pytest.mark.slow
def test_restore_a_held_back_face_through_the_cli(faces, trained, tmp_path):
    src = faces / "GFPGAN_cropped_faces" / HELD_BACK
    r = run_cli("srexp.cli.face", "restore", f"ckpt={trained[0] / 'checkpoints' / 'last.ckpt'}", f"input={src}",
                f"output={tmp_path / 'out.png'}", "degrade=true", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("out.png", "out_input.png"):
        assert Image.open(tmp_path / name).size == (SIZE, SIZE)
    assert "restored" in r.stdout and "LPIPS: not installed" in r.stdout


@pytest.mark.slow
def test_the_output_follows_the_dictionary(faces, trained, dictionaries):
    from srexp.training.checkpoint import load_model, load_net

    tcfg, _, state = load_model(trained[0] / "checkpoints" / "last.ckpt")
    img, boxes = load_face(faces / "GFPGAN_cropped_faces" / HELD_BACK, SIZE, {})
    lq = FaceDegradation()(img[None].float() / 255, torch.Generator().manual_seed(0), 4.0)
    outs = []
    for path in (dictionaries[0], dictionaries[1], dictionaries[0]):
        net = load_net({**tcfg["net"], "dictionary": str(path)}, state)
        with torch.no_grad():
            outs.append(net(lq, boxes[None]))
    assert torch.equal(outs[0], outs[2])  # deterministic for one dictionary
    assert (outs[0] - outs[1]).abs().max() > 1e-6  # another dictionary, another face


@pytest.mark.slow
def test_a_dictionary_of_another_shape_is_one_line_from_the_cli(faces, dictionaries, tmp_path):
    r = run_cli("srexp.cli.train", *TRAIN, "net.num_atoms=6", f"net.dictionary={dictionaries[0]}",
                f"data.train=[{faces / 'GFPGAN_cropped_faces'}]", f"data.val=[{faces / 'GFPGAN_cropped_faces'}]",
                f"hydra.run.dir={tmp_path / 'run'}", env=ENV)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("srexp-train: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert str(dictionaries[0]) in lines[0] and "(6, 8, 5, 5)" in lines[0] and "(4, 8, 5, 5)" in lines[0]
