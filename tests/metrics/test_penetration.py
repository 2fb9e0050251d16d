"""Penetration volume: the lens of two overlapping spheres, containment, disjoint shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from im2hands.metrics.penetration import intersection_volume, penetration_volume_cm3, stratified_box_points


def _sphere(radius, center=(0.0, 0.0, 0.0), subdivisions=4):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + np.asarray(center), np.asarray(m.faces)


def _lens_volume(r1, r2, d):
    """Volume of the intersection of two balls of radii r1, r2 whose centres are d apart."""
    poly = d * d + 2 * d * r1 - 3 * r1 * r1 + 2 * d * r2 + 6 * r1 * r2 - 3 * r2 * r2
    return math.pi * (r1 + r2 - d) ** 2 * poly / (12 * d)


def _lens_setup():
    r1, r2, d = 0.05, 0.04, 0.06
    va, fa = _sphere(r1)
    vb, fb = _sphere(r2, center=(d, 0.0, 0.0))
    return va, fa, vb, fb, _lens_volume(r1, r2, d)


@pytest.mark.parametrize("method, rel", [("lines", 0.01), ("points", 0.02)])
def test_overlapping_spheres_lens_volume(method, rel):
    va, fa, vb, fb, want = _lens_setup()
    got = intersection_volume(va, fa, vb, fb, n=50_000, seed=0, method=method)
    assert got == pytest.approx(want, rel=rel)
    cm3 = penetration_volume_cm3(va, fa, vb, fb, n=50_000, seed=0, method=method)
    assert cm3 == pytest.approx(got * 1e6, rel=1e-12)
    assert intersection_volume(vb, fb, va, fa, n=50_000, seed=0, method=method) == pytest.approx(want, rel=rel)


def test_line_estimator_is_precise_and_orientation_free():
    va, fa, vb, fb, want = _lens_setup()
    vals = [intersection_volume(va, fa, vb, fb, seed=s) for s in range(3)]
    assert np.std(vals) < 2e-3 * want  # far below Monte Carlo's scatter
    # icospheres (subdivision 4) hold 0.2 % less volume than their balls: the lens is a bit smaller
    assert np.mean(vals) == pytest.approx(want, rel=0.01) and np.mean(vals) < want
    inward = fa[:, ::-1]  # the same surface with inward faces: |winding number| semantics
    assert intersection_volume(va, inward, vb, fb, seed=0) == pytest.approx(vals[0], rel=1e-9)


def test_lines_needing_point_tests_and_open_meshes():
    va, fa, vb, fb, want = _lens_setup()
    base = intersection_volume(va, fa, vb, fb, seed=0)
    # a small extra ball behind the lens along the lines: those few lines cross A 4 times,
    # more than max_hits=3, so they are measured by inside tests on points along them
    from im2hands.metrics.penetration import _LINE_DIR

    vs, fs = _sphere(0.006, center=np.array([0.035, 0.0, 0.0]) + 0.09 * _LINE_DIR, subdivisions=2)
    v2, f2 = np.concatenate([va, vs]), np.concatenate([fa, fs + len(va)])
    assert intersection_volume(v2, f2, vb, fb, seed=0, max_hits=3) == pytest.approx(base, rel=0.01)
    # an open mesh falls back to the points estimator
    open_a = fa[1:]
    assert intersection_volume(va, open_a, vb, fb, n=50_000, seed=0) == pytest.approx(want, rel=0.03)


def test_contained_sphere_volume():
    va, fa = _sphere(0.05)
    vb, fb = _sphere(0.02, center=(0.01, 0.0, 0.0))
    want = trimesh.Trimesh(vb, fb, process=False).volume  # the polyhedron's own volume
    for method in ("lines", "points"):
        assert intersection_volume(va, fa, vb, fb, n=30_000, seed=1, method=method) == pytest.approx(want, rel=0.01)


def test_disjoint_shapes_have_zero_volume():
    va, fa = _sphere(0.03)
    vb, fb = _sphere(0.03, center=(0.1, 0.0, 0.0))  # boxes do not overlap
    assert intersection_volume(va, fa, vb, fb, n=1000) == 0.0
    vc, fc = _sphere(0.03, center=(0.05, 0.05, 0.0))  # boxes overlap, balls do not (corner region)
    for method in ("lines", "points"):
        assert intersection_volume(va, fa, vc, fc, n=20_000, method=method) == 0.0
    with pytest.raises(ValueError):
        intersection_volume(va, fa, vc, fc, method="exact")


def test_deterministic_for_a_seed():
    va, fa, vb, fb, _ = _lens_setup()
    for method in ("lines", "points"):
        a = intersection_volume(va, fa, vb, fb, n=5000, seed=3, method=method)
        assert a == intersection_volume(va, fa, vb, fb, n=5000, seed=3, method=method)
        assert a != intersection_volume(va, fa, vb, fb, n=5000, seed=4, method=method)


def test_stratified_points_one_per_cell():
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([0.2, 0.1, 0.05])
    p = stratified_box_points(lo, hi, 1000, seed=0)
    assert len(p) == 1000  # near-cubic cells of 1 cm: 20 x 10 x 5
    assert np.all(p >= lo) and np.all(p <= hi)
    cells = np.floor((p - lo) / (hi - lo) * [20, 10, 5]).astype(int)
    assert len({tuple(c) for c in cells}) == 1000  # exactly one point in every cell
    assert len(stratified_box_points(lo, hi, 777, seed=0)) == pytest.approx(777, rel=0.3)
    with pytest.raises(ValueError):
        stratified_box_points(lo, lo, 10)
