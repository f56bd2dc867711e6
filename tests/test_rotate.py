import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from rotcore.rotate import (
    D4,
    angle_to_vec,
    apply_d4,
    apply_d4_batch,
    circular_mean_deg,
    d4_compose,
    d4_inverse,
    quarter_turns,
    rot90_batch,
    rotate_batch,
    rotate_vec,
    signed_diff_deg,
    vec_to_angle,
    wrap_deg,
)


@pytest.fixture
def x():
    return torch.rand(6, 3, 17, 17, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_grid_path_agrees_with_rot90(x, k, interpolation):
    """The resampling path, forced, reproduces torch.rot90 at quarter turns (pixel centres map to centres)."""
    resampled = rotate_batch(x, 90.0 * k, interpolation=interpolation, exact_rot90=False)
    torch.testing.assert_close(resampled, torch.rot90(x, k, dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [16, 17])
def test_exact_path_is_bit_identical(size):
    x = torch.rand(4, 1, size, size)
    for k in range(4):
        assert torch.equal(rotate_batch(x, 90 * k), torch.rot90(x, k, dims=(-2, -1)))


def test_non_square_half_turn():
    x = torch.rand(2, 1, 6, 10)
    assert torch.equal(rotate_batch(x, 180.0), torch.rot90(x, 2, dims=(-2, -1)))
    torch.testing.assert_close(rotate_batch(x, 180.0, exact_rot90=False), torch.flip(x, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_angles_wrap_and_sign(x):
    assert torch.equal(rotate_batch(x, 450.0), rotate_batch(x, 90.0))
    assert torch.equal(rotate_batch(x, -90.0), rotate_batch(x, 270.0))
    torch.testing.assert_close(rotate_batch(x, 30.0 + 360.0), rotate_batch(x, 30.0), atol=1e-5, rtol=0)


def test_positive_is_counter_clockwise():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 4] = 1.0  # top-right corner
    y = rotate_batch(x, 90.0, exact_rot90=False)
    assert y[0, 0, 0, 0] == pytest.approx(1.0)  # moves to the top-left


def test_matches_torchvision_rotate():
    """Same convention and geometry as torchvision's rotate (nearest neighbour, zero fill)."""
    x = torch.rand(3, 1, 28, 28)
    ours = rotate_batch(x, 33.0, interpolation="nearest")
    ref = TF.rotate(x, 33.0, interpolation=InterpolationMode.NEAREST)
    assert (ours != ref).float().mean() < 0.01  # a handful of ties at pixel boundaries may round differently


def test_batched_equals_per_sample(x):
    angles = torch.tensor([0.0, 12.5, 90.0, 181.0, 270.0, 359.0])
    batched = rotate_batch(x, angles)
    single = torch.cat([rotate_batch(x[i : i + 1], float(a)) for i, a in enumerate(angles)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)


def test_mixed_batch_uses_exact_path_for_quarter_turns(x):
    angles = torch.tensor([90.0, 45.0, 180.0, 10.0, 0.0, 270.0])
    out = rotate_batch(x, angles)
    for i, k in [(0, 1), (2, 2), (4, 0), (5, 3)]:
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))


def test_round_trip_is_close_in_the_centre():
    """θ then -θ recovers a smooth image away from the cut corners."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 33), torch.linspace(-1, 1, 33), indexing="ij")
    img = torch.exp(-4 * (xx**2 + (yy - 0.2) ** 2))[None, None]
    back = rotate_batch(rotate_batch(img, 37.0), -37.0)
    assert (back - img)[..., 8:25, 8:25].abs().max() < 0.02


def test_rotation_keeps_the_device_and_dtype(x):
    y = rotate_batch(x.double(), 20.0)
    assert y.dtype == torch.float64 and y.device == x.device


@pytest.mark.parametrize("kwargs, err", [
    ({"interpolation": "lanczos"}, ValueError), ({"padding": "wrap"}, ValueError),
])
def test_bad_arguments(x, kwargs, err):
    with pytest.raises(err, match="choose one of"):
        rotate_batch(x, 10.0, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        rotate_batch(torch.rand(3, 8, 8), 10.0)
    with pytest.raises(ValueError, match="shape"):
        rotate_batch(torch.rand(3, 1, 8, 8), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-finite"):
        rotate_batch(torch.rand(1, 1, 8, 8), float("nan"))
    with pytest.raises(TypeError):
        rotate_batch(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 10.0)


def test_rot90_batch_per_sample_k(x):
    k = torch.tensor([0, 1, 2, 3, 1, 2])
    out = rot90_batch(x, k)
    for i in range(len(x)):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
    assert torch.equal(rot90_batch(x, k + 4), out) and torch.equal(rot90_batch(x, k - 4), out)  # k is taken mod 4


def test_rot90_batch_is_d4_batch_of_rotations(x):
    k = torch.tensor([3, 2, 1, 0, 2, 3])
    assert torch.equal(rot90_batch(x, k), apply_d4_batch(x, k))
    g = torch.tensor([4, 5, 6, 7, 0, 1])  # flips too: each sample gets its own element
    out = apply_d4_batch(x, g)
    for i in range(len(x)):
        assert torch.equal(out[i], apply_d4(x[i], D4[int(g[i])]))


def test_rot90_batch_on_non_square_images():
    x = torch.rand(2, 1, 4, 6)
    assert torch.equal(rot90_batch(x, torch.tensor([0, 2])), torch.stack([x[0], torch.rot90(x[1], 2, dims=(-2, -1))]))
    with pytest.raises(ValueError, match="square"):
        rot90_batch(x, torch.tensor([0, 1]))


def test_quarter_turns():
    exact, k = quarter_turns(torch.tensor([0.0, 90.0, -90.0, 45.0, 720.0, 90.0 + 1e-12]))
    assert exact.tolist() == [True, True, True, False, True, True]
    assert k[exact].tolist() == [0, 1, 3, 0, 1]


# ---- angle codecs ----------------------------------------------------------------------------------------

def test_codec_round_trip():
    a = torch.linspace(0, 359.9, 1000, dtype=torch.float64)
    torch.testing.assert_close(vec_to_angle(angle_to_vec(a)), a, atol=1e-9, rtol=0)
    assert torch.allclose(angle_to_vec(a).norm(dim=-1), torch.ones(1000, dtype=torch.float64))


def test_rotate_vec_adds_to_the_angle():
    a, b = torch.rand(2, 50, dtype=torch.float64).unbind(0)
    turned = vec_to_angle(rotate_vec(angle_to_vec(360 * a), 720 * b - 360))
    assert torch.allclose(signed_diff_deg(turned, 360 * a + 720 * b - 360), torch.zeros(50, dtype=torch.float64),
                          atol=1e-9)


def test_vec_to_angle_ignores_length():
    assert vec_to_angle(torch.tensor([0.0, 3.0])).item() == pytest.approx(90.0)
    assert vec_to_angle(torch.tensor([-2.0, -2.0])).item() == pytest.approx(225.0)


def test_wrap_and_signed_diff():
    assert wrap_deg(torch.tensor([-10.0, 360.0, 725.0])).tolist() == pytest.approx([350.0, 0.0, 5.0])
    d = signed_diff_deg(torch.tensor([1.0, 359.0, 180.0]), torch.tensor([359.0, 1.0, 0.0]))
    assert d.tolist() == pytest.approx([2.0, -2.0, -180.0])


def test_circular_mean_across_zero():
    assert circular_mean_deg(torch.tensor([350.0, 10.0])).item() == pytest.approx(0.0, abs=1e-4) or \
        circular_mean_deg(torch.tensor([350.0, 10.0])).item() == pytest.approx(360.0, abs=1e-4)
    assert circular_mean_deg(torch.tensor([80.0, 100.0])).item() == pytest.approx(90.0, abs=1e-4)


# ---- D4 --------------------------------------------------------------------------------------------------

def test_d4_matches_torch():
    x = torch.rand(2, 4, 5, 5)
    for k in range(4):
        name = "e" if k == 0 else f"r{90 * k}"
        assert torch.equal(apply_d4(x, name), torch.rot90(x, k, dims=(-2, -1)))
        assert torch.equal(apply_d4(x, f"r{90 * k}f" if k else "f"),
                           torch.rot90(torch.flip(x, dims=(-1,)), k, dims=(-2, -1)))


def test_d4_group_axioms():
    x = torch.rand(1, 1, 4, 4)
    for g in D4:
        assert torch.equal(apply_d4(apply_d4(x, g), d4_inverse(g)), x)
        for h in D4:
            assert torch.equal(apply_d4(x, d4_compose(g, h)), apply_d4(apply_d4(x, h), g))
    assert len({d4_compose(g, "r90") for g in D4}) == 8  # closed and a bijection


def test_d4_rotation_matches_rotate_batch():
    x = torch.rand(3, 2, 9, 9)
    for k in range(4):
        g = "e" if k == 0 else f"r{90 * k}"
        assert torch.equal(apply_d4(x, g), rotate_batch(x, 90.0 * k))


def test_d4_unknown_element():
    with pytest.raises(ValueError, match="unknown D4 element"):
        apply_d4(torch.rand(1, 1, 2, 2), "r45")


@pytest.mark.parametrize("shape", [(6, 3, 17, 17), (6, 1, 8, 12)])
def test_device_path_without_host_sync_equals_host_path(shape):
    """Accelerator tensors take a mask-based path with no host sync; it must give the host path's result."""
    from rotcore.rotate import _rotate_without_sync, quarter_turns

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    angles = torch.tensor([90.0, 45.0, 180.0, -10.0, 0.0, 270.0], dtype=torch.float64)
    exact, k = quarter_turns(angles)
    if shape[-1] != shape[-2]:
        exact = exact & (k % 2 == 0)
    assert torch.equal(_rotate_without_sync(x, angles, exact, k, "bilinear", "zeros"), rotate_batch(x, angles))
