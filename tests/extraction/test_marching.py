"""Marching cubes on analytic occupancy grids: area, volume, orientation, watertightness, components."""

import numpy as np
import pytest
import trimesh

from im2hands.extraction.marching import NoSurfaceError, extract_surface, grid_affine, largest_component


def grid_points(n, side=1.0):
    """(n+1)^3 points of a cube of side ``side`` centred at 0, as (n+1, n+1, n+1, 3)."""
    t = (np.arange(n + 1) / n - 0.5) * side
    return np.stack(np.meshgrid(t, t, t, indexing="ij"), -1)


def sphere_occ(p, center, radius, soft=0.02):
    """Occupancy-like field: 1 inside, 0 outside, linear across 2 * soft around the sphere."""
    d = np.linalg.norm(p - np.asarray(center), axis=-1)
    return np.clip(0.5 + (radius - d) / (2 * soft), 0.0, 1.0).astype(np.float32)


def test_sphere_area_volume_orientation():
    n, side, r, c = 96, 0.44, 0.1, np.array([0.01, -0.02, 0.015])
    values = sphere_occ(grid_points(n, side), c, r)
    m = extract_surface(values, 0.5, grid_affine(n, side=side))
    assert m.watertight and m.components == 1 and not m.inverted
    assert m.volume == pytest.approx(4 / 3 * np.pi * r**3, rel=0.01)
    assert m.area == pytest.approx(4 * np.pi * r**2, rel=0.01)
    assert np.abs(np.linalg.norm(m.vertices - c, axis=1) - r).max() < 1e-3  # vertices on the sphere
    tri = m.vertices[m.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.einsum("ij,ij->i", normals, tri.mean(1) - c)
    assert (outward > 0).all()  # every face points away from the centre
    assert trimesh.Trimesh(m.vertices, m.faces).is_watertight  # also after trimesh's vertex merging
    assert m.faces.dtype == np.int64 and m.vertices.shape[1] == 3


def test_binary_occupancy_and_threshold():
    n = 64
    p = grid_points(n)
    binary = (np.linalg.norm(p, axis=-1) < 0.3).astype(np.float32)
    m = extract_surface(binary, 0.5, grid_affine(n))
    assert m.watertight and m.volume == pytest.approx(4 / 3 * np.pi * 0.3**3, rel=0.03)
    soft = sphere_occ(p, (0, 0, 0), 0.3, soft=0.05)  # the 0.45 level lies 0.005 further out
    m45 = extract_surface(soft, 0.45, grid_affine(n))
    assert np.linalg.norm(m45.vertices, axis=1).mean() == pytest.approx(0.305, abs=1e-3)


def test_mirrored_frame_keeps_outward_normals():
    n = 32
    values = sphere_occ(grid_points(n), (0.1, 0, 0), 0.25)
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    m = extract_surface(values, 0.5, mirror @ grid_affine(n))
    assert m.volume > 0 and not m.inverted and m.watertight
    assert m.vertices[:, 0].mean() == pytest.approx(-0.1, abs=1e-3)


def test_surface_touching_the_box_is_closed():
    n = 32
    values = sphere_occ(grid_points(n), (0.45, 0, 0), 0.2)  # cut by the x = 0.5 face
    m = extract_surface(values, 0.5, grid_affine(n))
    assert m.watertight and m.components == 1
    assert m.vertices[:, 0].max() == pytest.approx(0.5, abs=1e-6)  # closed on the box face


def test_components_largest_kept_and_counted():
    n = 48
    p = grid_points(n)
    values = np.maximum(sphere_occ(p, (-0.2, 0, 0), 0.15), sphere_occ(p, (0.25, 0, 0), 0.08))
    m = extract_surface(values, 0.5, grid_affine(n))
    assert m.components == 2 and m.dropped_faces > 0 and m.watertight
    assert m.vertices[:, 0].max() < 0  # the small sphere is gone
    both = extract_surface(values, 0.5, grid_affine(n), keep_largest=False)
    assert both.components == 2 and len(both.faces) == len(m.faces) + m.dropped_faces
    v, f, count, dropped = largest_component(both.vertices, both.faces)
    assert count == 2 and f.max() == len(v) - 1 and dropped == m.dropped_faces


def test_no_surface():
    with pytest.raises(NoSurfaceError, match="no surface"):
        extract_surface(np.zeros((5, 5, 5), np.float32), 0.5)
    with pytest.raises(NoSurfaceError, match="no surface"):
        extract_surface(np.ones((5, 5, 5), np.float32), 0.5)
    with pytest.raises(ValueError):
        extract_surface(np.zeros((5, 5), np.float32), 0.5)


def test_grid_affine_maps_corners():
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    A = grid_affine(64, T, side=0.44)
    corners = np.array([[0, 0, 0, 1], [64, 64, 64, 1], [32, 32, 32, 1]], dtype=float) @ A.T
    np.testing.assert_allclose(corners[:, :3], [[0.78, 1.78, 2.78], [1.22, 2.22, 3.22], [1.0, 2.0, 3.0]])
