"""The torch pyramid equals pyrtools' SteerablePyramidFreq band for band."""
import numpy as np
import pytest
import torch

from features.pyramid import ComplexSteerablePyramid

pt = pytest.importorskip("pyrtools")


@pytest.mark.parametrize("size", [(96, 96), (64, 64), (48, 80), (32, 32)])
def test_bands_equal_pyrtools_float64(size):
    rng = np.random.default_rng(sum(size))
    images = rng.standard_normal((3, *size)) * 40 + 120
    ours = ComplexSteerablePyramid(size, scales=2, orientations=2)(torch.from_numpy(images))
    assert [tuple(b.shape) for b in ours] == [(3, 2, size[0], size[1]), (3, 2, size[0] // 2, size[1] // 2)]
    assert all(b.dtype == torch.complex128 for b in ours)
    for i, image in enumerate(images):
        ref = pt.pyramids.SteerablePyramidFreq(image, height=2, order=1, is_complex=True)
        for s in range(2):
            for b in range(2):
                want = ref.pyr_coeffs[(s, b)]
                got = ours[s][i, b].numpy()
                assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (s, b)


def test_float32_is_complex64_and_close():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (96, 96))
    ref = pt.pyramids.SteerablePyramidFreq(image, height=2, order=1, is_complex=True)
    bands = ComplexSteerablePyramid((96, 96))(torch.from_numpy(image[None]).float())
    assert bands[0].dtype == torch.complex64
    for s in range(2):
        for b in range(2):
            want = ref.pyr_coeffs[(s, b)]
            assert np.abs(bands[s][0, b].numpy() - want).max() <= 1e-4 * np.abs(want).max()


def test_out_size_returns_the_top_left_block():
    pyr = ComplexSteerablePyramid((64, 48))
    images = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 64, 48)))
    full, part = pyr(images), pyr(images, out_size=(32, 24))
    assert torch.allclose(part[0], full[0][..., :32, :24], atol=1e-12)
    assert torch.allclose(part[1], full[1][..., :16, :12], atol=1e-12)


def test_orientation_0_responds_to_horizontal_frequency():
    x = np.arange(64)
    vertical_stripes = np.tile(np.cos(2 * np.pi * x / 6.0), (64, 1))  # varies along x only
    bands = ComplexSteerablePyramid((64, 64))(torch.from_numpy(vertical_stripes[None]))
    energy = bands[0][0].abs().pow(2).sum(dim=(-2, -1))
    assert energy[0] > 100 * energy[1]


def test_filters_are_cached_per_device_and_dtype():
    pyr = ComplexSteerablePyramid((32, 32))
    assert pyr.filters("cpu", torch.float32) is pyr.filters("cpu", torch.float32)
    assert pyr.filters("cpu", torch.float64)[0][2].dtype == torch.complex128


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ComplexSteerablePyramid((8, 8), scales=2)
    with pytest.raises(ValueError):
        ComplexSteerablePyramid((32, 32))(torch.zeros(2, 32, 30))
