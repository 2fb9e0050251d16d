"""Volumetric IoU: identical meshes, concentric spheres, offset boxes, query-point boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from im2hands.benchmarks.meshes import capsule_hand
from im2hands.geometry.frames import apply_transform, palm_frame
from im2hands.geometry.inside import winding_number_exact
from im2hands.metrics.iou import bbox_points, inside, iou_from_occupancy, mesh_iou, palm_box_points


def _sphere(radius, subdivisions=4):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices), np.asarray(m.faces)


def _box(extents, center):
    m = trimesh.creation.box(extents=extents)
    return np.asarray(m.vertices) + np.asarray(center), np.asarray(m.faces)


def test_iou_from_occupancy_matches_sets():
    rng = np.random.default_rng(0)
    a, b = rng.random(1000) < 0.3, rng.random(1000) < 0.4
    sa, sb = set(np.flatnonzero(a)), set(np.flatnonzero(b))
    assert iou_from_occupancy(a, b) == pytest.approx(len(sa & sb) / len(sa | sb))
    assert iou_from_occupancy(np.zeros(5, bool), np.zeros(5, bool)) == 1.0
    assert iou_from_occupancy(np.ones(5, bool), np.zeros(5, bool)) == 0.0
    with pytest.raises(ValueError):
        iou_from_occupancy(a, b[:10])


def test_identical_meshes_iou_one():
    v, f = capsule_hand(8)
    points = bbox_points(v, 20_000, seed=0)
    assert mesh_iou(v, f, v, f, points) == 1.0


def test_concentric_spheres_iou_is_volume_ratio():
    r, R = 0.04, 0.05
    vi, fi = _sphere(r)
    vo, fo = _sphere(R)  # same subdivision: the polyhedra are similar, volume ratio (r/R)^3 exactly
    points = bbox_points(vo, 100_000, seed=1)
    assert mesh_iou(vi, fi, vo, fo, points) == pytest.approx((r / R) ** 3, abs=0.01)


def test_offset_boxes_iou():
    ext = np.array([0.10, 0.08, 0.06])
    shift = np.array([0.03, 0.02, 0.01])
    va, fa = _box(ext, (0.0, 0.0, 0.0))
    vb, fb = _box(ext, shift)
    inter = np.prod(ext - shift)
    want = inter / (2 * np.prod(ext) - inter)
    points = bbox_points(np.concatenate([va, vb]), 100_000, seed=2)
    assert mesh_iou(va, fa, vb, fb, points) == pytest.approx(want, abs=0.01)
    far = vb + [1.0, 0.0, 0.0]
    assert mesh_iou(va, fa, far, fb, points) == 0.0


def test_bbox_points_cover_the_padded_box():
    v, _ = capsule_hand(8)
    p = bbox_points(v, 20_000, seed=3)
    lo, hi = v.min(0), v.max(0)
    ext = hi - lo
    assert np.all(p >= lo - 0.1 * ext - 1e-12) and np.all(p <= hi + 0.1 * ext + 1e-12)
    assert np.allclose(p.min(0), lo - 0.1 * ext, atol=0.01 * ext.max())
    assert np.allclose(p.max(0), hi + 0.1 * ext, atol=0.01 * ext.max())
    assert np.array_equal(p, bbox_points(v, 20_000, seed=3))
    assert not np.array_equal(p, bbox_points(v, 20_000, seed=4))


def test_palm_box_points_in_the_palm_cube():
    rng = np.random.default_rng(5)
    kp = rng.normal(size=(21, 3)) * 0.04 + [0.0, 0.0, 0.5]
    for is_left in (False, True):
        p = palm_box_points(kp, is_left, 10_000, seed=6)
        T = palm_frame(torch.as_tensor(kp)[None], is_left)
        u = apply_transform(T, torch.as_tensor(p)[None])[0].numpy()  # palm-frame coordinates
        assert np.all(np.abs(u) <= 0.22 + 1e-9)
        assert np.abs(u).max() > 0.215  # fills the 0.44 m cube
        assert np.allclose(p.mean(0), kp[0], atol=0.01)  # centred at the wrist
        assert np.array_equal(p, palm_box_points(kp, is_left, 10_000, seed=6))


def test_inside_open_mesh_matches_generalized_winding_number():
    v, f = _sphere(0.05, subdivisions=3)
    f_open = f[1:]  # one triangle missing
    rng = np.random.default_rng(7)
    points = rng.uniform(-0.06, 0.06, size=(400, 3))
    want = np.abs(winding_number_exact(v, f_open, points).numpy()) >= 0.5
    got = inside(v, f_open, points)
    assert (got == want).mean() > 0.99
    assert inside(v, f_open, np.zeros((1, 3)))[0]
    assert inside(v, f[:0], points).sum() == 0  # no faces: nothing inside
