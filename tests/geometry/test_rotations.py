import math

import pytest
import torch

from im2hands.geometry.rotations import (
    axis_angle_to_matrix,
    invert_transform,
    make_transform,
    matrix_to_axis_angle,
    normalize,
    random_rotation,
    random_rotation_matrix,
    rotation_about_axis,
    rotation_between,
    skew,
)


def _random_axis_angle(n: int, max_angle: float, dtype=torch.float64) -> torch.Tensor:
    axis = normalize(torch.randn(n, 3, dtype=dtype))
    return axis * (torch.rand(n, 1, dtype=dtype) * max_angle)


def _assert_rotation(R: torch.Tensor, atol: float = 1e-6) -> None:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=atol)
    assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=atol)


def test_axis_angle_known_value():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(R, expected, atol=1e-6)


def test_skew_is_cross_product():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose((skew(a) @ b[..., None]).squeeze(-1), torch.cross(a, b, dim=-1), atol=1e-6)


@pytest.mark.parametrize("max_angle", [1e-7, 1e-3, 1.0, math.pi - 1e-3])
def test_axis_angle_round_trip(max_angle):
    aa = _random_axis_angle(200, max_angle)
    R = axis_angle_to_matrix(aa)
    _assert_rotation(R, atol=1e-10)
    assert torch.allclose(matrix_to_axis_angle(R), aa, atol=1e-8)


def test_matrix_round_trip_float32():
    R = axis_angle_to_matrix(_random_axis_angle(100, 3.0, torch.float32))
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-5)


def test_zero_axis_angle_is_identity_with_finite_grad():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(aa)
    assert torch.equal(R.detach(), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    R.sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_axis_angle_gradcheck():
    aa = torch.cat([_random_axis_angle(3, 3.0), torch.full((1, 3), 1e-6, dtype=torch.float64)])
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa.requires_grad_(),))


def test_rotation_about_axis_matches_axis_angle_and_degenerate_axis():
    axis, angle = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    expected = axis_angle_to_matrix(normalize(axis) * angle[:, None])
    assert torch.allclose(rotation_about_axis(axis, angle), expected)
    R = rotation_about_axis(torch.zeros(3), torch.tensor(1.3))
    assert torch.allclose(R, torch.eye(3))


def test_rotation_between_maps_a_to_b_and_is_minimal():
    a, b = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    R = rotation_between(a, b)
    _assert_rotation(R, atol=1e-10)
    assert torch.allclose((R @ normalize(a)[..., None]).squeeze(-1), normalize(b), atol=1e-10)
    # Minimal: the axis a x b is fixed.
    axis = torch.cross(a, b, dim=-1)
    assert torch.allclose((R @ axis[..., None]).squeeze(-1), axis, atol=1e-10)


def test_rotation_between_parallel_and_antiparallel():
    a = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(rotation_between(a, 2 * a), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    R = rotation_between(a, -a)
    _assert_rotation(R, atol=1e-10)
    assert torch.allclose((R @ normalize(a)[..., None]).squeeze(-1), -normalize(a), atol=1e-10)


def test_make_and_invert_transform():
    R = axis_angle_to_matrix(_random_axis_angle(6, 3.0))
    t = torch.randn(6, 3, dtype=torch.float64)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    for L in (R, R @ mirror, 2.5 * R @ mirror):
        T = make_transform(L, t)
        assert T.shape == (6, 4, 4)
        assert torch.equal(T[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(6, 4))
        eye = torch.eye(4, dtype=torch.float64).expand(6, 4, 4)
        assert torch.allclose(invert_transform(T) @ T, eye, atol=1e-12)
        assert torch.allclose(T @ invert_transform(T), eye, atol=1e-12)
    assert torch.equal(make_transform(R)[:, :3, 3], torch.zeros(6, 3, dtype=torch.float64))


def _qr_rotations_as_anchors_drew_them(n: int, generator: torch.Generator) -> torch.Tensor:
    """The rotations ``models/anchors.py`` drew before they moved here (a copy of the old code)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[:, :, 2] *= torch.det(q)[:, None]
    return q


@pytest.mark.parametrize("seed, n", [(0, 1), (7, 69), (123, 300)])
def test_random_rotation_matrix_draws_what_the_anchors_drew(seed, n):
    new = random_rotation_matrix(n, torch.Generator().manual_seed(seed))
    old = _qr_rotations_as_anchors_drew_them(n, torch.Generator().manual_seed(seed))
    assert torch.equal(new, old)  # bit for bit: stage 2's anchor rays do not move
    _assert_rotation(new, atol=1e-12)
    assert random_rotation_matrix(n, torch.Generator().manual_seed(seed), torch.float32).dtype == torch.float32


def test_the_two_random_rotations_differ_but_are_both_uniform():
    """Same generator, different draws (documented in random_rotation_matrix); both uniform:
    the mean of a uniform rotation matrix is 0 (so is its trace; a rotation by at most
    a small angle has trace near 3)."""
    a = random_rotation_matrix(4000, torch.Generator().manual_seed(1))
    b = axis_angle_to_matrix(random_rotation(4000, torch.Generator().manual_seed(1), torch.float64))
    assert not torch.allclose(a[:10], b[:10], atol=1e-3)
    for R in (a, b):
        _assert_rotation(R, atol=1e-9)
        assert R.mean(0).abs().max() < 0.05
        assert abs(float(R.diagonal(dim1=-2, dim2=-1).sum(-1).mean())) < 0.08
