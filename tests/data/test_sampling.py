"""HALO-style samplers: counts, determinism, box bounds, noise scale, IoU-set volume fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from im2hands.data.sampling import (
    faces_near,
    fixed_iou_points,
    sample_box_uniform,
    sample_near_surface,
    sample_occupancy_points,
    sample_surface,
)


def _rotation(seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.det(q))


def _sphere(radius: float = 0.08, center=(0.0, 0.0, 0.0), subdivisions: int = 4):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = torch.tensor(m.vertices, dtype=torch.float64) + torch.tensor(center, dtype=torch.float64)
    return v, torch.tensor(m.faces), m


def test_box_uniform_inside_rotated_box_and_uniform():
    center, rot = torch.tensor([0.1, -0.2, 0.6], dtype=torch.float64), _rotation(1)
    p = sample_box_uniform(20_000, center, rot, side=0.44, generator=torch.Generator().manual_seed(0))
    assert p.shape == (20_000, 3) and p.dtype == torch.float64
    local = (p - center) @ rot  # back into the palm frame: u = R^T (p - c)
    assert local.abs().max() <= 0.22 + 1e-12
    # uniform marginals: mean 0, std side / sqrt(12)
    torch.testing.assert_close(local.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=0.004)
    torch.testing.assert_close(local.std(0), torch.full((3,), 0.44 / math.sqrt(12), dtype=torch.float64), rtol=0.02, atol=0)


def test_surface_samples_on_sphere_with_radial_normals():
    v, f, _ = _sphere(radius=1.0)
    p, n = sample_surface(v, f, 5000, generator=torch.Generator().manual_seed(0))
    assert p.shape == n.shape == (5000, 3)
    r = p.norm(dim=-1)
    assert r.max() <= 1.0 + 1e-9 and r.min() > 0.99  # on the inscribed polyhedron
    assert (n * p / r[:, None]).sum(-1).min() > 0.99  # outward face normals
    # area weighting: the samples' centroid is the sphere's centre
    torch.testing.assert_close(p.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=0.03)


def test_near_surface_noise_scale():
    v, f, _ = _sphere(radius=0.08)
    g = torch.Generator().manual_seed(0)
    p = sample_near_surface(v, f, 20_000, sigma=0.004, generator=g)
    offset = p.norm(dim=-1) - 0.08  # signed offset along the normal (radial for a sphere)
    # tangential noise pushes points outwards by sigma^2 / r = 0.2 mm on average
    assert abs(offset.mean().item() - 0.004**2 / 0.08) < 1.5e-4
    assert offset.std().item() == pytest.approx(0.004, rel=0.03)


def test_occupancy_points_counts_determinism_and_labels():
    v, f, _ = _sphere(radius=0.08, center=(0.01, 0.0, 0.5))
    center, rot = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64), _rotation(2)
    p1, o1 = sample_occupancy_points(v, f, center, rot, 2001, seed=7)
    p2, o2 = sample_occupancy_points(v, f, center, rot, 2001, seed=torch.Generator().manual_seed(7))
    p3, _ = sample_occupancy_points(v, f, center, rot, 2001, seed=8)
    assert p1.shape == (2001, 3) and o1.shape == (2001,) and o1.dtype == torch.bool
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    assert torch.equal(o1, o2) and not torch.equal(p1, p3)
    n_uniform = round(2001 * 0.5)
    assert (((p1[:n_uniform] - center) @ rot).abs() <= 0.22 + 1e-12).all()
    r = (p1 - torch.tensor([0.01, 0.0, 0.5], dtype=torch.float64)).norm(dim=-1)
    far = (r - 0.08).abs() > 1e-3
    assert torch.equal(o1[far], r[far] < 0.08)
    assert 0.3 < o1[n_uniform:].float().mean() < 0.7  # near-surface points straddle the surface
    p_all, _ = sample_occupancy_points(v, f, center, rot, 100, uniform_ratio=1.0, seed=0)
    assert (((p_all - center) @ rot).abs() <= 0.22 + 1e-12).all()


def test_faces_near_matches_a_loop():
    v, f, _ = _sphere(radius=0.08, subdivisions=3)
    pts = torch.tensor([[0.08, 0.0, 0.0], [0.0, 0.0, -0.08]], dtype=torch.float64)
    got = faces_near(v, f, pts, 0.03)
    want = [row for row in f.tolist()
            if min(float((v[row].mean(0) - q).norm()) for q in pts) <= 0.03]
    assert got.tolist() == want and 0 < len(want) < len(f) // 4
    assert faces_near(v, f, torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64), 0.03).shape == (0, 3)


def test_focus_points_land_near_the_focus_and_keep_the_rest():
    v, f, _ = _sphere(radius=0.08, center=(0.0, 0.0, 0.5))
    center, rot = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64), _rotation(4)
    tip = torch.tensor([[0.0, 0.08, 0.5]], dtype=torch.float64)  # a point on the sphere
    n, sigma = 2000, 0.002
    p, o = sample_occupancy_points(v, f, center, rot, n, sigma=sigma, seed=3, focus=tip, focus_ratio=0.5,
                                   focus_radius=0.02)
    n_uniform, n_focus = n // 2, n // 4
    assert p.shape == (n, 3) and o.shape == (n,)
    d_focus = (p[-n_focus:] - tip).norm(dim=-1)
    assert d_focus.max() < 0.02 + 0.01 + 5 * sigma  # within the radius (+ a face, + noise)
    d_rest = (p[n_uniform:-n_focus] - tip).norm(dim=-1)
    assert (d_rest > 0.05).float().mean() > 0.5  # the other surface points cover the whole sphere
    # ratio 0 (default) and a focus far from every face both sample the whole surface
    p0, _ = sample_occupancy_points(v, f, center, rot, n, sigma=sigma, seed=3)
    p1, _ = sample_occupancy_points(v, f, center, rot, n, sigma=sigma, seed=3, focus=tip, focus_ratio=0.0)
    assert torch.equal(p0, p1)
    far = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    p2, _ = sample_occupancy_points(v, f, center, rot, n, sigma=sigma, seed=3, focus=far, focus_ratio=0.5)
    assert p2.shape == (n, 3)
    with pytest.raises(ValueError, match="focus_ratio"):
        sample_occupancy_points(v, f, center, rot, 10, focus=tip, focus_ratio=1.5)


def test_iou_points_fixed_and_sphere_volume_fraction():
    center, rot = torch.tensor([0.0, 0.1, 0.5], dtype=torch.float64), _rotation(3)
    a = fixed_iou_points(center, rot)
    b = fixed_iou_points(center, rot)
    assert a.shape == (100_000, 3) and torch.equal(a, b)
    assert not torch.equal(a, fixed_iou_points(center, rot, seed=1))
    v, f, m = _sphere(radius=0.15, center=(0.0, 0.1, 0.5))
    from im2hands.geometry.inside import inside_mesh

    frac = inside_mesh(v, f, a).float().mean().item()
    want = m.volume / 0.44**3  # the polyhedron's volume over the cube's
    sd = math.sqrt(want * (1 - want) / 100_000)
    assert abs(frac - want) < 4 * sd
    assert abs(m.volume / (4 / 3 * math.pi * 0.15**3) - 1) < 0.01


def test_float32_inputs_keep_dtype():
    v, f, _ = _sphere()
    p, o = sample_occupancy_points(v.float(), f, torch.zeros(3), torch.eye(3), 64, seed=0)
    assert p.dtype == torch.float32 and o.dtype == torch.bool
    with pytest.raises(ValueError):
        sample_occupancy_points(v, f, torch.zeros(3), torch.eye(3), 10, uniform_ratio=1.5)


@pytest.mark.parametrize("is_left", [False, True])
def test_box_matches_palm_frame_convention(is_left):
    """rotation = palm_frame(...)[:3, :3].T puts the cube axis-aligned in frames' palm frame."""
    from im2hands.geometry.frames import apply_transform, palm_frame

    kp = torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.05
    kp[0, 0] += torch.tensor([0.05, 0.02, 0.5], dtype=torch.float64)
    T = palm_frame(kp, is_left)[0]  # (4, 4) camera -> palm
    p = sample_box_uniform(5000, kp[0, 0], T[:3, :3].T, generator=torch.Generator().manual_seed(0))
    local = apply_transform(T[None], p[None])[0]  # (N, 3) palm frame
    assert local.abs().max() <= 0.22 + 1e-9
    assert (local.abs().amax(0) > 0.21).all()  # fills the cube along each palm axis


def test_surface_samples_are_differentiable_in_the_vertices():
    """The hand-model fit moves meshes through their surface samples: translating every vertex
    by dx moves every sample by dx, and drawing from a mesh that needs gradients warns of nothing."""
    import warnings

    box = trimesh.creation.box(extents=(0.4, 0.1, 0.1))
    v = torch.tensor(box.vertices, dtype=torch.float64, requires_grad=True)
    f = torch.as_tensor(np.asarray(box.faces), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts, _ = sample_surface(v, f, 5000, generator=torch.Generator().manual_seed(0))
    pts[:, 0].sum().backward()
    np.testing.assert_allclose(v.grad[:, 0].sum().item(), 5000.0)
    np.testing.assert_allclose(v.grad[:, 1:].numpy(), 0.0)
    p = pts.detach().numpy()
    assert np.isclose(np.abs(p), [0.2, 0.05, 0.05], atol=1e-12).any(axis=1).all()  # on the box's faces
