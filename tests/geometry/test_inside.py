"""Inside/outside labels: fast paths against the exact solid-angle winding number and analytic shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from im2hands.benchmarks.meshes import capsule_hand
from im2hands.geometry.inside import (
    available_backends,
    inside_mesh,
    is_closed,
    winding_number,
    winding_number_exact,
)

FAST = [b for b in available_backends() if b != "exact"]


def _sphere(subdivisions: int = 3, radius: float = 1.0, center=(0.0, 0.0, 0.0)):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + np.asarray(center), np.asarray(m.faces)


def _two_overlapping_spheres():
    """Two closed unit spheres 1 apart, given as ONE self-intersecting mesh (no boolean union)."""
    va, fa = _sphere()
    vb, fb = _sphere(center=(1.0, 0.0, 0.0))
    return np.concatenate([va, vb]), np.concatenate([fa, fb + len(va)])


def test_exact_reference_sphere_values():
    v, f = _sphere(2)
    w = winding_number_exact(v, f, np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [2.0, 0.0, 0.0], [0.0, 5.0, 1.0]]))
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-10)
    # reversed orientation gives -1 inside; |w| >= 0.5 still counts as inside
    w_rev = winding_number_exact(v, f[:, ::-1].copy(), np.zeros((1, 3)))
    assert w_rev.item() == pytest.approx(-1.0, abs=1e-10)
    assert inside_mesh(v, f[:, ::-1].copy(), np.zeros((1, 3)), backend="exact").tolist() == [True]


@pytest.mark.parametrize("backend", FAST)
def test_sphere_analytic(backend):
    v, f = _sphere(4)  # inscribed polyhedron: radius between ~0.995 and 1
    rng = np.random.default_rng(0)
    p = rng.uniform(-1.3, 1.3, size=(20_000, 3))
    r = np.linalg.norm(p, axis=1)
    far = np.abs(r - 1.0) > 0.01
    got = inside_mesh(v, f, p, backend=backend)
    np.testing.assert_array_equal(got[far], r[far] < 1.0)


@pytest.mark.parametrize("backend", FAST)
def test_box_analytic(backend):
    m = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    rng = np.random.default_rng(1)
    p = rng.uniform(-0.15, 0.15, size=(20_000, 3))
    half = np.array([0.1, 0.05, 0.025])
    margin = np.min(np.abs(np.abs(p) - half), axis=1)
    truth = np.all(np.abs(p) < half, axis=1)
    got = inside_mesh(m.vertices, m.faces, p, backend=backend)
    np.testing.assert_array_equal(got[margin > 1e-6], truth[margin > 1e-6])
    # points exactly on the box's axis-aligned planes through its centre (edge-aligned rays)
    grid = np.stack(np.meshgrid(*[np.linspace(-0.12, 0.12, 13)] * 3), -1).reshape(-1, 3)
    gmargin = np.min(np.abs(np.abs(grid) - half), axis=1)
    gtruth = np.all(np.abs(grid) < half, axis=1)
    got = inside_mesh(m.vertices, m.faces, grid, backend=backend)
    np.testing.assert_array_equal(got[gmargin > 1e-6], gtruth[gmargin > 1e-6])


@pytest.mark.parametrize("backend", FAST)
def test_self_intersecting_overlap_counts_inside(backend):
    v, f = _two_overlapping_spheres()
    assert is_closed(f)
    rng = np.random.default_rng(2)
    p = rng.uniform([-1.3, -1.3, -1.3], [2.3, 1.3, 1.3], size=(20_000, 3))
    ra = np.linalg.norm(p, axis=1)
    rb = np.linalg.norm(p - [1.0, 0.0, 0.0], axis=1)
    far = (np.abs(ra - 1) > 0.01) & (np.abs(rb - 1) > 0.01)
    truth = (ra < 1) | (rb < 1)
    got = inside_mesh(v, f, p, backend=backend)
    np.testing.assert_array_equal(got[far], truth[far])
    overlap = far & (ra < 1) & (rb < 1)
    assert overlap.sum() > 500 and got[overlap].all()
    # the winding number itself is 2 in the overlap
    w = winding_number(v, f, p[overlap][:50], backend=backend)
    np.testing.assert_allclose(w, 2.0, atol=0.05)


def test_ray_parity_fails_in_overlap_but_we_do_not():
    """Documents why we do not use trimesh.contains: parity calls the overlap outside."""
    v, f = _two_overlapping_spheres()
    p = np.array([[0.5, 0.0, 0.0], [0.5, 0.2, -0.1]])  # in both spheres
    assert inside_mesh(v, f, p).all()
    assert not trimesh.Trimesh(v, f, process=False).contains(p).any()


@pytest.mark.parametrize("backend", FAST)
def test_fast_matches_exact_on_capsule_hand(backend):
    v, f = capsule_hand(8)  # 768 faces, self-intersecting where fingers enter the palm
    rng = np.random.default_rng(3)
    lo, hi = v.min(0) - 0.02, v.max(0) + 0.02
    surf, _ = trimesh.sample.sample_surface(trimesh.Trimesh(v, f, process=False), 1500, seed=3)
    p = np.concatenate([rng.uniform(lo, hi, size=(1500, 3)), surf + rng.normal(0, 0.004, size=surf.shape)])
    w_exact = winding_number_exact(v, f, p).numpy()
    got = inside_mesh(v, f, p, backend=backend)
    # labels may differ only where the exact winding number is ambiguous (on the surface)
    clear = np.abs(np.abs(w_exact) - 0.5) > 1e-3
    np.testing.assert_array_equal(got[clear], np.abs(w_exact[clear]) >= 0.5)
    assert (np.round(w_exact) >= 2).any()  # the test really covers overlaps


def test_batched_and_torch_io():
    v, f = _sphere(2)
    vb = torch.tensor(np.stack([v, v * 0.5]))  # (2, V, 3)
    p = torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.0, 0.0], [2.0, 0.0, 0.0]])
    got = inside_mesh(vb, torch.tensor(f), p)  # points broadcast over the batch
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == (2, 3)
    assert got.tolist() == [[True, True, False], [True, False, False]]
    got_np = inside_mesh(np.stack([v, v]), f, np.stack([p.numpy(), p.numpy() * 2]))
    assert isinstance(got_np, np.ndarray) and got_np.tolist() == [[True, True, False], [True, False, False]]


def test_empty_inputs_and_errors():
    v, f = _sphere(1)
    assert inside_mesh(v, f, np.zeros((0, 3))).shape == (0,)
    assert not inside_mesh(v, np.zeros((0, 3), dtype=int), np.zeros((2, 3)), backend="exact").any()
    with pytest.raises(ValueError):
        inside_mesh(v, f, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        inside_mesh(v, f + 1000, np.zeros((1, 3)))
    with pytest.raises(ValueError):
        inside_mesh(v, f, np.zeros((1, 3)), backend="nope")


def test_is_closed():
    v, f = _sphere(1)
    assert is_closed(f)
    assert not is_closed(f[1:])  # a hole
    bad = f.copy()
    bad[0] = bad[0, ::-1]  # one flipped face breaks consistent orientation
    assert not is_closed(bad)


def test_ray_budget_exhausted_falls_back_to_exact():
    v, f = _two_overlapping_spheres()
    p = np.array([[0.5, 0.0, 0.0], [-0.5, 0.1, 0.0], [3.0, 0.0, 0.0], [1.5, 0.0, 0.2]])
    if "embree" in FAST:
        assert inside_mesh(v, f, p, backend="embree", max_hits=1).tolist() == [True, True, False, True]


def test_auto_without_fast_libraries(monkeypatch):
    import im2hands.geometry.inside as mod

    monkeypatch.setattr(mod, "_import_embree", lambda: None)
    monkeypatch.setattr(mod, "_import_igl", lambda: None)
    assert mod.available_backends() == ["exact"]
    v, f = _sphere(2)
    assert inside_mesh(v, f, np.array([[0.0, 0.0, 0.1], [0.0, 1.5, 0.0]])).tolist() == [True, False]
    with pytest.raises(ImportError):
        inside_mesh(v, f, np.zeros((1, 3)), backend="embree")
