import pytest
import torch

from srexp.data.images import list_images, load_image
from srexp.ops.resize import cubic, imresize, modcrop


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_matches_matlab_bit_for_bit(shared_data, set_name, scale):
    lr_dir = shared_data / "matlab_lr" / set_name / f"x{scale}"
    files = list_images(lr_dir)
    assert files, f"no MATLAB LR files in {lr_dir}"
    for f in files:
        hr = modcrop(load_image(shared_data / set_name / f.name), scale)
        ours = imresize(hr, scale=1 / scale)
        matlab = load_image(f)
        assert ours.shape == matlab.shape, f.name
        mismatched = (ours != matlab).sum().item()
        assert mismatched == 0, f"{set_name}/{f.name} ×{scale}: {mismatched} of {ours.numel()} pixels differ"


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    expected = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(cubic(x), expected)


def test_upscale_reproduces_linear_ramp_inside():
    # cubic convolution (a = -0.5) reproduces linear functions exactly away from the borders
    ramp = torch.arange(20, dtype=torch.float64).repeat(6, 1)[None, None]  # (1,1,6,20), x = column index
    up = imresize(ramp, scale=2)
    assert up.shape == (1, 1, 12, 40)
    # output column x (0-based) sits at input coordinate (x + 0.5)/2 - 0.5
    xs = (torch.arange(40, dtype=torch.float64) + 0.5) / 2 - 0.5
    assert torch.allclose(up[0, 0, 5, 4:-4], xs[4:-4], atol=1e-12)


def test_uint8_rounds_per_pass_and_float_does_not():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 30, 27), generator=g, dtype=torch.uint8)
    u8 = imresize(img, scale=1 / 3)
    fl = imresize(img.double(), scale=1 / 3)
    assert u8.dtype == torch.uint8 and fl.dtype == torch.float64
    assert u8.shape == fl.shape == (3, 10, 9)
    diff = (u8.double() - fl).abs()
    assert diff.max() <= 1.0 and diff.max() > 0.5  # close, but per-pass rounding makes some pixels differ


def test_batched_equals_per_image_and_size_argument():
    g = torch.Generator().manual_seed(1)
    batch = torch.rand(4, 3, 24, 20, generator=g)
    out = imresize(batch, scale=0.5)
    for k in range(4):
        assert torch.equal(out[k], imresize(batch[k], scale=0.5))
    assert imresize(batch, size=(30, 7)).shape == (4, 3, 30, 7)


def test_constant_image_stays_constant():
    img = torch.full((1, 17, 23), 200, dtype=torch.uint8)
    for s in (0.5, 1 / 3, 0.25, 2, 3, 4):
        out = imresize(img, scale=s)
        assert (out == 200).all()


def test_bad_arguments_are_one_line_errors():
    img = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="exactly one of"):
        imresize(img)
    with pytest.raises(ValueError, match="expected"):
        imresize(torch.zeros(8, 8), scale=2)
    with pytest.raises(TypeError, match="uint8 or floating"):
        imresize(img.long(), scale=2)
