"""Two-hand interaction templates: overlap estimator, contact without interpenetration, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from im2hands.hands.constants import LEFT, RIGHT
from im2hands.hands.interactions import TEMPLATES, pose_pair, rotate_pair, sample_interaction
from im2hands.hands.overlap import overlap_profile, penetration_volume, penetration_volume_grid
from im2hands.hands.mano_io import DEFAULT_MODEL_DIR

needs_model = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "MANO_RIGHT.pkl").exists(), reason="open hand model not built")

pytestmark = pytest.mark.usefixtures("one_thread")  # batch-1 hand-model calls (docs/poses.md)


def _lens_volume(r: float, d: float) -> float:
    """Intersection volume of two balls of radius r at centre distance d."""
    return math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12 if d < 2 * r else 0.0


def test_overlap_profile_matches_two_spheres():
    r = 0.02
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    u = np.array([0.6, 0.0, 0.8])
    prof = overlap_profile(v, f, v + 0.05 * u, f, u, spacing=0.0008)
    # B sits at 5 cm along u; V(s) is the lens volume at centre distance |0.05 + s|
    for s in (-0.05, -0.045, -0.035, -0.025, -0.015):
        expected = _lens_volume(r * 0.997, abs(0.05 + s))  # the polyhedron is slightly smaller
        assert abs(prof(s) - expected) < 0.02 * _lens_volume(r, 0.0), s
    assert prof(0.0) == 0.0 and prof(-0.0099) == 0.0 and prof(-0.0105) > 0.0
    # contact search: coming from +inf, V reaches the target where the lens holds that volume
    target = 0.3e-6
    s_star = prof.last_crossing(target)
    assert abs(prof(s_star) - target) < 1e-12
    lo, hi = 0.0, 2 * r  # centre distance with lens volume == target (bisection)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _lens_volume(r * 0.997, mid) > target else (lo, mid)
    assert abs(s_star - (lo - 0.05)) < 2e-4
    assert prof.first_reach(0.0, False, target) == pytest.approx(s_star)
    assert prof.first_exit(-0.05, True, target) == pytest.approx(s_star, abs=1e-9)


def test_penetration_estimators_agree_on_spheres():
    r = 0.02
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    shift = np.array([0.03, 0.0, 0.0])
    exact = _lens_volume(r, 0.03) * 1e6
    mc = penetration_volume(v, f, v + shift, f, n=40000, generator=torch.Generator().manual_seed(0))
    grid = penetration_volume_grid(v, f, v + shift, f, direction=(0.0, 1.0, 0.0))
    assert abs(grid - exact) < 0.05 * exact
    assert abs(mc - exact) < 0.1 * exact
    assert penetration_volume(v, f, v + 3 * shift, f) == 0.0


@pytest.fixture(scope="module")
def models():
    from im2hands.hands.layer import load_hand_models

    m = load_hand_models(DEFAULT_MODEL_DIR)
    return m["right"], m["left"]


@needs_model
@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_touch_without_interpenetration(models, name):
    right, left = models
    g = torch.Generator().manual_seed(11)
    for _ in range(2):
        shapes = 0.8 * torch.randn(2, 10, generator=g)
        pair = sample_interaction(name, right, left, shapes, g, max_penetration_cm3=0.5)
        assert pair.template == name
        assert pair.pose.shape == (2, 48) and pair.trans.shape == (2, 3) and pair.shape.shape == (2, 10)
        assert torch.equal(pair.shape, shapes.to(pair.shape.dtype))
        assert 0.0 <= pair.penetration_cm3 <= 0.5
        out = pose_pair(pair, right, left)
        vr, vl = out["right"].vertices[0].double(), out["left"].vertices[0].double()
        fr, fl = out["right"].faces, out["left"].faces
        # independent check: Monte-Carlo winding-number estimate within the limit (+ noise)
        mc = penetration_volume(vr, fr, vl, fl, n=30000, generator=g)
        assert mc <= 0.5 + 0.15, mc
        # the hands touch: some overlap, or a gap of at most 3 mm ...
        assert pair.contact_gap_m <= 0.003
        assert pair.penetration_cm3 > 0.0 or pair.contact_gap_m > 0.0
        # ... and the contact is tight: pushing the left hand 4 mm toward the right one (in
        # every direction we try, at least the best of them) overlaps more than the limit
        worst = max(
            penetration_volume_grid(vr, fr, vl + 0.004 * torch.as_tensor(dvec), fl, dvec)
            for dvec in _toward(vr, vl)
        )
        assert worst > pair.penetration_cm3


def _toward(vr: torch.Tensor, vl: torch.Tensor):
    """Unit directions from the left hand toward the right hand (centroids, plus axes)."""
    c = (vr.mean(0) - vl.mean(0)).numpy()
    dirs = [c / np.linalg.norm(c)]
    for k in range(3):
        e = np.zeros(3)
        e[k] = np.sign(c[k]) or 1.0
        dirs.append(e)
    return dirs


@needs_model
def test_sample_interaction_is_deterministic(models):
    right, left = models
    shapes = torch.zeros(2, 10)
    a = sample_interaction("grasp_fingers", right, left, shapes, torch.Generator().manual_seed(5))
    b = sample_interaction("grasp_fingers", right, left, shapes, torch.Generator().manual_seed(5))
    c = sample_interaction("grasp_fingers", right, left, shapes, torch.Generator().manual_seed(6))
    assert torch.equal(a.pose, b.pose) and torch.equal(a.trans, b.trans)
    assert a.penetration_cm3 == b.penetration_cm3 and a.swapped == b.swapped
    assert not torch.equal(a.pose, c.pose)


@needs_model
def test_swap_gives_the_grasp_to_the_left_hand(models):
    right, left = models
    for swap in (False, True):
        pair = sample_interaction("grasp_fingers", right, left, None, torch.Generator().manual_seed(3), swap=swap)
        assert pair.swapped is swap
        grasper, held = (LEFT, RIGHT) if swap else (RIGHT, LEFT)
        # the grasper curls its index; the held hand keeps its index straight
        assert pair.angles[grasper, 1, 0] > pair.angles[held, 1, 0] + 0.3  # index PIP


@needs_model
def test_rotate_pair_moves_both_hands_rigidly(models):
    right, left = models
    pair = sample_interaction("fists_touching", right, left, 0.5 * torch.randn(2, 10, generator=torch.Generator().manual_seed(1)),
                              torch.Generator().manual_seed(2))
    rv = np.array([0.4, -1.1, 0.7])
    t = np.array([0.1, 0.2, -0.3])
    moved = rotate_pair(pair, rv, right, left, translation=t)
    R = trimesh.transformations.rotation_matrix(np.linalg.norm(rv), rv)[:3, :3]
    before, after = pose_pair(pair, right, left), pose_pair(moved, right, left)
    for side in ("left", "right"):
        expect = before[side].vertices[0].double().numpy() @ R.T + t
        assert np.allclose(after[side].vertices[0].double().numpy(), expect, atol=2e-5)


@needs_model
def test_unknown_template_raises(models):
    with pytest.raises(ValueError, match="unknown interaction template"):
        sample_interaction("high_five", *models)
