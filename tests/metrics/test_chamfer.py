"""Chamfer, normal consistency and F-score: analytic spheres and a naive O(N M) reference."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from im2hands.benchmarks.meshes import capsule_hand
from im2hands.metrics.chamfer import fscore, fscore_key, mesh_surface_metrics, point_metrics


def _sphere(radius, subdivisions=5, center=(0.0, 0.0, 0.0)):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + np.asarray(center), np.asarray(m.faces)


def _naive(pred, gt, pn, gn, taus_mm):
    """Brute-force reference: full distance matrix, metres -> mm by hand."""
    d = np.sqrt(((pred[:, None, :] - gt[None, :, :]) ** 2).sum(-1))  # (N, M)
    i_pg, i_gp = d.argmin(1), d.argmin(0)
    d_pg, d_gp = d.min(1) * 1000.0, d.min(0) * 1000.0
    out = {
        "chamfer_l1_mm": 0.5 * (d_pg.mean() + d_gp.mean()),
        "chamfer_l2_mm2": 0.5 * ((d_pg**2).mean() + (d_gp**2).mean()),
        "normal_consistency": 0.5 * (np.abs((pn * gn[i_pg]).sum(1)).mean() + np.abs((gn * pn[i_gp]).sum(1)).mean()),
    }
    for t in taus_mm:
        p, r = (d_pg < t).mean(), (d_gp < t).mean()
        out[fscore_key(t)] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out


def test_point_metrics_match_naive_reference():
    rng = np.random.default_rng(0)
    pred = rng.uniform(-0.01, 0.01, size=(300, 3))
    gt = rng.uniform(-0.01, 0.01, size=(200, 3)) + 0.001
    pn = rng.normal(size=(300, 3))
    gn = rng.normal(size=(200, 3))
    pn /= np.linalg.norm(pn, axis=1, keepdims=True)
    gn /= np.linalg.norm(gn, axis=1, keepdims=True)
    taus = (0.5, 1.0, 2.0, 5.0)
    got = point_metrics(pred, gt, pn, gn, thresholds_mm=taus)
    want = _naive(pred, gt, pn, gn, taus)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    assert 0.0 < got["fscore_1mm"] < 1.0  # the thresholds actually discriminate here


def test_fscore_edges():
    assert fscore(np.array([0.5, 1.5]), np.array([0.5, 0.5]), [1.0]).tolist() == [pytest.approx(2 * 0.5 * 1 / 1.5)]
    assert fscore(np.array([3.0]), np.array([3.0]), [1.0, 3.0, 3.5]).tolist() == [0.0, 0.0, 1.0]  # strict <
    assert fscore_key(1.0) == "fscore_1mm" and fscore_key(1.5) == "fscore_1p5mm"


def test_identical_meshes_score_perfectly():
    v, f = capsule_hand(8)
    res = mesh_surface_metrics(v, f, v, f, n_points=20_000, seed=3, curve_mm=(0.5, 1.0))
    assert res["chamfer_l1_mm"] == 0.0 and res["chamfer_l2_mm2"] == 0.0
    assert res["fscore_1mm"] == res["fscore_2mm"] == res["fscore_5mm"] == 1.0
    assert res["normal_consistency"] == pytest.approx(1.0, abs=1e-12)
    assert res["fscore_curve"] == [1.0, 1.0]


def test_concentric_spheres():
    r, R = 0.05, 0.06  # 10 mm apart
    vi, fi = _sphere(r)
    vo, fo = _sphere(R)
    res = mesh_surface_metrics(vi, fi, vo, fo, n_points=50_000, seed=0, curve_mm=(9.0, 11.0))
    gap_mm = (R - r) * 1000.0
    assert res["chamfer_l1_mm"] == pytest.approx(gap_mm, rel=0.01)
    assert res["chamfer_l2_mm2"] == pytest.approx(gap_mm**2, rel=0.02)
    assert res["accuracy_mm"] >= gap_mm * 0.999 and res["completeness_mm"] >= gap_mm * 0.999
    assert res["normal_consistency"] > 0.99
    assert res["fscore_5mm"] == 0.0
    assert res["fscore_curve"] == [0.0, pytest.approx(1.0)]


def test_seeded_sampling_is_deterministic():
    v, f = capsule_hand(8)
    v2 = v * 1.02
    a = mesh_surface_metrics(v, f, v2, f, n_points=5000, seed=7)
    b = mesh_surface_metrics(v, f, v2, f, n_points=5000, seed=7)
    c = mesh_surface_metrics(v, f, v2, f, n_points=5000, seed=8)
    assert a == b
    assert a["chamfer_l1_mm"] != c["chamfer_l1_mm"]
    assert a["chamfer_l1_mm"] == pytest.approx(c["chamfer_l1_mm"], rel=0.1)
