"""Anatomical pose sampler: limits, axes, flexion direction, mirroring, batching, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from im2hands.hands.mirror import mirror_pose
from im2hands.hands.mano_io import DEFAULT_MODEL_DIR
from im2hands.hands.pose_sampler import (
    JOINT_LIMITS_DEG,
    JOINT_NAMES,
    MODES,
    PoseSampler,
    limits_radians,
    random_rotation,
)

pytestmark = [
    pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "MANO_RIGHT.pkl").exists(), reason="open hand model not built"),
    pytest.mark.usefixtures("one_thread"),  # batch-1 hand-model calls (docs/poses.md)
]

DEG = math.pi / 180
MIRROR = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)


@pytest.fixture(scope="module")
def models():
    from im2hands.hands.layer import load_hand_models

    return load_hand_models(DEFAULT_MODEL_DIR, dtype=torch.float64)


@pytest.fixture(scope="module")
def samplers(models):
    return {side: PoseSampler.from_model(m, dtype=torch.float64) for side, m in models.items()}


@pytest.fixture(scope="module")
def v1_models(tmp_path_factory):
    """Hand model version 1 (built here), whose skeleton the sampler's limits were tuned on."""
    from im2hands.hands.builder import write_hand_model
    from im2hands.hands.layer import load_hand_models

    out = tmp_path_factory.mktemp("handmodel_v1")
    write_hand_model(out, version=1)
    return load_hand_models(out, dtype=torch.float64)


# Version 2 (the committed files) moved the MCPs distally and shortened the proximal phalanges;
# the opposition targets were tuned on version 1 and do not hold for version 2 yet: the
# opposition pose lands 21 mm from the ring base (docs/poses.md). Tracked, not fixed: strict xfail.
# (The collision check's finger-palm limits now follow each model's rest skeleton and hold for both.)
V2_OPPOSITION = pytest.mark.xfail(strict=True, reason="thumb-opposition angles tuned on hand model v1 (docs/poses.md)")


def _versioned(version, models, samplers, v1_models):
    if version == 2:
        return models, samplers
    return v1_models, {side: PoseSampler.from_model(m, dtype=torch.float64) for side, m in v1_models.items()}


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def versioned(request, models, samplers, v1_models):
    """(models, samplers) of hand model version 1 and 2."""
    return _versioned(request.param, models, samplers, v1_models)


@pytest.fixture(params=[1, pytest.param(2, marks=V2_OPPOSITION)], ids=["v1", "v2"])
def versioned_opposition(request, models, samplers, v1_models):
    """The same, version 2 a strict xfail (the opposition test)."""
    return _versioned(request.param, models, samplers, v1_models)


def _run(model, pose48):
    b = pose48.shape[0]
    with torch.no_grad():
        return model(pose48, torch.zeros(b, 10, dtype=torch.float64), torch.zeros(b, 3, dtype=torch.float64))


def test_limits_table_is_complete_and_ordered():
    assert set(JOINT_LIMITS_DEG) == set(JOINT_NAMES) and len(JOINT_NAMES) == 15
    lo, hi = limits_radians()
    assert lo.shape == (15, 3) and bool((lo <= hi).all())


@pytest.mark.parametrize("mode", MODES)
def test_samples_within_limits(samplers, mode):
    s = samplers["right"]
    a = s.sample(64, torch.Generator().manual_seed(1), mode)
    assert a.shape == (64, 15, 3) and torch.isfinite(a).all()
    assert bool((a >= s.lower - 1e-9).all()) and bool((a <= s.upper + 1e-9).all())


def test_random_mode_covers_open_to_fist(samplers):
    s = samplers["right"]
    a = s.sample(400, torch.Generator().manual_seed(2))
    curl = a[:, [0, 3, 6, 9], 0].mean(1) / DEG  # mean MCP flexion, degrees
    assert curl.min() < 10 and curl.max() > 70
    assert 0.2 < (curl > 40).float().mean() < 0.8


def test_zero_angles_give_zero_pose(samplers):
    for s in samplers.values():
        pose = s.angles_to_pose(torch.zeros(3, 15, 3, dtype=torch.float64))
        assert pose.shape == (3, 45) and pose.abs().max() == 0


@pytest.mark.parametrize("side", ["right", "left"])
def test_flexion_curls_toward_palm_and_abduction_spreads(models, samplers, side):
    model, s = models[side], samplers[side]
    rest = _run(model, torch.zeros(1, 48, dtype=torch.float64)).keypoints[0]
    # (angle row, standard index of the finger's tip): every flexing joint
    tips = {0: 8, 1: 8, 2: 8, 3: 12, 4: 12, 5: 12, 6: 20, 7: 20, 8: 20, 9: 16, 10: 16, 11: 16, 13: 4, 14: 4}
    for row, tip in tips.items():
        a = torch.zeros(1, 15, 3, dtype=torch.float64)
        a[0, row, 0] = 40 * DEG
        moved = _run(model, s.pose_from_angles(a)).keypoints[0, tip] - rest[tip]
        assert moved[1] < -0.004, (side, JOINT_NAMES[row], moved)  # toward the palm side (-y)
    # positive abduction of the index moves its tip toward the thumb side (-z), pinky toward +z
    for row, tip, sign in ((0, 8, -1.0), (6, 20, 1.0)):
        a = torch.zeros(1, 15, 3, dtype=torch.float64)
        a[0, row, 1] = 15 * DEG
        moved = _run(model, s.pose_from_angles(a)).keypoints[0, tip] - rest[tip]
        assert sign * moved[2] > 0.005, (side, row, moved)


def test_thumb_opposition_reaches_across_the_palm(versioned_opposition):
    models, samplers = versioned_opposition
    model, s = models["right"], samplers["right"]
    rest = _run(model, torch.zeros(1, 48, dtype=torch.float64)).keypoints[0]
    volar = torch.tensor([0.0, -0.025, 0.0], dtype=torch.float64)
    # (CMC across, palmar abduction, opposition, MCP, IP) -> the base it reaches (standard index)
    for th, base in (((20.0, 20.0, 50.0, 45.0, 80.0), 13), ((30.0, 20.0, 40.0, 60.0, 60.0), 17)):
        a = torch.zeros(1, 15, 3, dtype=torch.float64)
        a[0, 12] = torch.tensor(th[:3]) * DEG
        a[0, 13, 0], a[0, 14, 0] = th[3] * DEG, th[4] * DEG
        assert bool((a >= s.lower).all() and (a <= s.upper).all())
        k = _run(model, s.pose_from_angles(a)).keypoints[0]
        # the thumb tip lands in front of the ring / pinky base (volar side of the palm)
        assert (k[4] - (k[base] + volar)).norm() < 0.012
        assert (rest[4] - (rest[base] + volar)).norm() > 0.07
        assert s.collision_distances(a)[0] > 0


def test_limits_let_the_thumb_reach_across_the_palm(versioned):
    """Whatever the skeleton, some collision-free thumb angles within the limits put the thumb
    tip in front of the ring and the pinky base (a search over 4,000 draws of the five thumb
    degrees); at rest it is far from both."""
    models, samplers = versioned
    model, s = models["right"], samplers["right"]
    rest = _run(model, torch.zeros(1, 48, dtype=torch.float64)).keypoints[0]
    volar = torch.tensor([0.0, -0.025, 0.0], dtype=torch.float64)
    n = 4000
    u = torch.rand(n, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = torch.zeros(n, 15, 3, dtype=torch.float64)
    for col, (row, dof) in enumerate(((12, 0), (12, 1), (12, 2), (13, 0), (14, 0))):
        a[:, row, dof] = s.lower[row, dof] + u[:, col] * (s.upper[row, dof] - s.lower[row, dof])
    k = _run(model, s.pose_from_angles(a)).keypoints
    free = s.collision_distances(a) > 0
    for base in (13, 17):  # ring, pinky MCP (standard order)
        d = (k[:, 4] - (k[:, base] + volar)).norm(dim=-1)
        assert bool(((d < 0.012) & free).any())
        assert (rest[4] - (rest[base] + volar)).norm() > 0.07


def test_left_angles_give_mirrored_pose_and_mesh(models, samplers):
    a = samplers["right"].sample(8, torch.Generator().manual_seed(3)).double()
    go = random_rotation(8, torch.Generator().manual_seed(4), torch.float64)
    pr = samplers["right"].pose_from_angles(a, go)
    pl = samplers["left"].pose_from_angles(a, mirror_pose(pr)[:, :3])
    assert torch.allclose(pl, mirror_pose(pr), atol=1e-9)
    vr = _run(models["right"], pr).vertices
    vl = _run(models["left"], pl).vertices
    assert torch.allclose(vl, vr * MIRROR, atol=1e-6)


def test_batch_equals_single(samplers):
    s = samplers["right"]
    a = s.sample(6, torch.Generator().manual_seed(5)).double()
    batch = s.angles_to_pose(a)
    single = torch.cat([s.angles_to_pose(a[i : i + 1]) for i in range(6)])
    assert torch.allclose(batch, single, atol=1e-12)
    # and the pose really is the composition R_abd @ R_flex @ R_twist of the axis rotations
    from im2hands.geometry.rotations import axis_angle_to_matrix

    R = axis_angle_to_matrix(batch.reshape(6, 15, 3))
    ax = s.axes.double()
    ref = (axis_angle_to_matrix(ax[:, 1] * a[..., 1:2]) @ axis_angle_to_matrix(ax[:, 0] * a[..., 0:1])
           @ axis_angle_to_matrix(ax[:, 2] * a[..., 2:3]))
    assert torch.allclose(R, ref, atol=1e-9)


def test_axes_follow_the_rest_skeleton(samplers):
    """Axes come from the rest skeleton: rotating the skeleton rotates every axis the same way
    (the sampler works for rest poses other than ours, e.g. MANO's)."""
    s = samplers["right"]
    R = torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0.5], [0.3, 0, -0.2], [-0.5, 0.2, 0]],
                                             dtype=torch.float64)).numpy()
    s2 = PoseSampler(s.rest_joints @ R.T, s.rest_tips @ R.T, "right", dtype=torch.float64)
    assert np.allclose(s2.axes_np, s.axes_np @ R.T, atol=1e-9)
    ortho = np.einsum("jab,jcb->jac", s.axes_np[:12], s.axes_np[:12])  # long fingers: orthonormal frames
    assert np.allclose(ortho, np.eye(3), atol=1e-9)


def test_determinism(samplers):
    s = samplers["right"]
    a = s.sample(16, torch.Generator().manual_seed(7))
    b = s.sample(16, torch.Generator().manual_seed(7))
    c = s.sample(16, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_collision_check_separates_clean_and_crossed_fingers(versioned):
    s = versioned[1]["right"]
    rest = torch.zeros(1, 15, 3, dtype=torch.float64)
    assert s.collision_distances(rest)[0] > 0
    crossed = rest.clone()
    crossed[0, 0, 1] = -15 * DEG  # index toward the middle finger ...
    crossed[0, 3, 1] = 15 * DEG  # ... while the middle finger goes toward the index
    thumb_in_palm = rest.clone()
    thumb_in_palm[0, 12] = torch.tensor([50.0, 0.0, 60.0]) * DEG  # thumb pressed into the palm
    thumb_in_palm[0, 13, 0], thumb_in_palm[0, 14, 0] = 60 * DEG, 80 * DEG
    assert s.collision_distances(crossed)[0] < 0
    assert s.collision_distances(thumb_in_palm)[0] < 0
    # rejection sampling leaves (almost) no flagged poses
    a = s.sample(200, torch.Generator().manual_seed(9))
    assert (s.collision_distances(a.double()) < 0).float().mean() < 0.05


def test_random_rotation_is_rotation():
    r = random_rotation(100, torch.Generator().manual_seed(0), torch.float64)
    assert r.shape == (100, 3) and bool((r.norm(dim=1) <= math.pi + 1e-9).all())
    small = random_rotation(50, torch.Generator().manual_seed(0), torch.float64, max_angle=0.1)
    assert bool((small.norm(dim=1) <= 0.1 + 1e-12).all())
