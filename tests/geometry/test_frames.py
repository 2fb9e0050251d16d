import pytest
import torch

from im2hands.geometry.frames import (
    HALO_SCALE,
    apply_transform,
    camera_to_world,
    m_to_mm,
    mirror_x,
    mm_to_m,
    palm_frame,
    palm_frame_inverse,
    palm_rotation,
    project,
    rescale_transform,
    to_homogeneous,
    world_to_camera,
)
from im2hands.geometry.rotations import axis_angle_to_matrix, make_transform, normalize, rotation_between

# A right hand lying palm down on a table (x right, y forward, z up), fingers along +y:
# the thumb is on the -x side and the back of the hand faces +z.
_RIGHT_HAND = torch.tensor(
    [
        [0.0, 0.0, 0.0],
        [-0.02, 0.025, -0.005], [-0.035, 0.05, -0.008], [-0.05, 0.07, -0.01], [-0.06, 0.09, -0.01],
        [-0.02, 0.09, 0.0], [-0.022, 0.13, 0.0], [-0.023, 0.155, 0.0], [-0.024, 0.175, 0.0],
        [0.0, 0.095, 0.0], [0.0, 0.14, 0.0], [0.0, 0.167, 0.0], [0.0, 0.19, 0.0],
        [0.02, 0.09, 0.0], [0.021, 0.13, 0.0], [0.022, 0.155, 0.0], [0.023, 0.175, 0.0],
        [0.037, 0.08, 0.0], [0.04, 0.11, 0.0], [0.042, 0.128, 0.0], [0.044, 0.145, 0.0],
    ],
    dtype=torch.float64,
)  # fmt: skip


def _random_rigid(B: int, dtype=torch.float64):
    R = axis_angle_to_matrix(torch.randn(B, 3, dtype=dtype))
    t = torch.randn(B, 3, dtype=dtype)
    return R, t


def _hands(B: int) -> torch.Tensor:
    """Random right hands in random poses: (B, 21, 3), metres."""
    kp = _RIGHT_HAND + 0.004 * torch.randn(B, 21, 3, dtype=torch.float64)
    R, t = _random_rigid(B)
    return world_to_camera(kp, R, t)


def test_mirror_twice_is_identity():
    p = torch.randn(4, 7, 3)
    assert torch.equal(mirror_x(mirror_x(p)), p)
    assert torch.equal(mirror_x(p)[..., 1:], p[..., 1:])
    assert torch.equal(mirror_x(p)[..., 0], -p[..., 0])


def test_homogeneous_and_apply_transform():
    p = torch.randn(3, 5, 3, dtype=torch.float64)
    R, t = _random_rigid(3)
    T = make_transform(R, t)
    expected = (to_homogeneous(p) @ T.transpose(-1, -2))[..., :3]
    assert torch.allclose(apply_transform(T, p), expected)
    assert torch.equal(to_homogeneous(p)[..., 3], torch.ones(3, 5, dtype=torch.float64))
    # Broadcasting over a part axis: T (B, K, 4, 4) with p (B, 1, N, 3).
    Tk = torch.stack([T, T.inverse()], 1)
    assert apply_transform(Tk, p[:, None]).shape == (3, 2, 5, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        apply_transform(T[:, :3], p)


def test_project_hand_computed():
    K = torch.tensor([[[500.0, 0.0, 128.0], [0.0, 400.0, 96.0], [0.0, 0.0, 1.0]]])
    p = torch.tensor([[[0.0, 0.0, 1.0], [0.1, -0.2, 2.0], [-0.3, 0.15, 0.5]]])
    uv = project(p, K)
    # u = fx x / z + cx, v = fy y / z + cy
    expected = torch.tensor([[[128.0, 96.0], [153.0, 56.0], [-172.0, 216.0]]])
    assert torch.allclose(uv, expected, atol=1e-4)
    # +x right -> larger u; +y down -> larger v.
    assert uv[0, 1, 0] > 128.0 and uv[0, 1, 1] < 96.0
    assert torch.isfinite(project(torch.zeros(1, 1, 3), K)).all()


def test_project_gradcheck():
    K = torch.tensor([[[500.0, 0.0, 128.0], [0.0, 400.0, 96.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    p = torch.randn(1, 4, 3, dtype=torch.float64) * 0.1 + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(project, (p.requires_grad_(), K.requires_grad_()))


def test_world_camera_round_trip_and_value():
    R, t = _random_rigid(2)
    p = torch.randn(2, 9, 3, dtype=torch.float64)
    p_cam = world_to_camera(p, R, t)
    assert torch.allclose(p_cam[0, 0], R[0] @ p[0, 0] + t[0])
    assert torch.allclose(camera_to_world(p_cam, R, t), p, atol=1e-12)


def test_unit_helpers():
    x = torch.tensor([0.25, -1.5])
    assert torch.equal(m_to_mm(x), torch.tensor([250.0, -1500.0]))
    assert torch.allclose(mm_to_m(m_to_mm(x)), x)


@pytest.mark.parametrize("left", [False, True])
def test_palm_frame_axes(left):
    kp = _hands(16)
    if left:
        kp = mirror_x(kp)
    T = palm_frame(kp, left)
    p = apply_transform(T, kp)
    zero = torch.zeros(16, dtype=torch.float64)
    assert torch.allclose(p[:, 0], torch.zeros(16, 3, dtype=torch.float64), atol=1e-12)  # wrist at origin
    assert torch.allclose(p[:, 9, 1:], torch.zeros(16, 2, dtype=torch.float64), atol=1e-12)  # middle MCP on x
    assert (p[:, 9, 0] < 0).all()  # ... along -x
    # The palm normal n = (wrist->middle MCP) x (wrist->index MCP), taken on the right-like
    # (mirrored) hand, maps to +y; the index MCP has no y component.
    kp_r = mirror_x(kp) if left else kp
    n = torch.cross(kp_r[:, 9] - kp_r[:, 0], kp_r[:, 5] - kp_r[:, 0], dim=-1)
    R = palm_rotation(kp_r)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(16, 3)
    assert torch.allclose((R @ normalize(n)[..., None]).squeeze(-1), y_axis, atol=1e-12)
    assert torch.allclose(p[:, 5, 1], zero, atol=1e-12)
    # The rotation itself is proper for both hands; mirroring is applied to the points.
    mirror = torch.diag(torch.tensor([-1.0 if left else 1.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(T[:, :3, :3] @ mirror), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(T[:, :3, :3]), -zero - 1 if left else zero + 1)


def test_palm_frame_sides_of_the_hand():
    """For a right hand +y points out of the back of the hand and +z to the thumb side."""
    kp = _RIGHT_HAND[None]
    T = palm_frame(kp, False)
    back = apply_transform(T, torch.tensor([[[0.0, 0.05, 0.02]]], dtype=torch.float64))  # above the back
    palm = apply_transform(T, torch.tensor([[[0.0, 0.05, -0.02]]], dtype=torch.float64))  # below the palm
    assert back[0, 0, 1] > 0.015 and palm[0, 0, 1] < -0.015
    p = apply_transform(T, kp)
    assert p[0, 4, 2] > 0.04 and p[0, 20, 2] < -0.03  # thumb tip at +z, pinky tip at -z
    assert (p[0, 1:, 0] < 0).all()  # fingers towards -x


def test_palm_frame_left_equals_mirrored_right():
    kp = _hands(8)
    p_right = apply_transform(palm_frame(kp, False), kp)
    p_left = apply_transform(palm_frame(mirror_x(kp), True), mirror_x(kp))
    assert torch.allclose(p_left, p_right, atol=1e-12)
    # Mixed batch via a (B,) mask.
    is_left = torch.tensor([True, False] * 4)
    kp_mixed = torch.where(is_left[:, None, None], mirror_x(kp), kp)
    assert torch.allclose(apply_transform(palm_frame(kp_mixed, is_left), kp_mixed), p_right, atol=1e-12)


def test_palm_frame_equals_halo_construction():
    """R1: middle root bone to -y, R2: rotated palm normal to +z, then (x, y, z) <- (y, z, x)."""
    kp = _hands(10)
    u = kp[:, 9] - kp[:, 0]
    n = torch.cross(u, kp[:, 5] - kp[:, 0], dim=-1)
    R1 = rotation_between(u, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64).expand(10, 3))
    z_axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(10, 3)
    R2 = rotation_between((R1 @ n[..., None]).squeeze(-1), z_axis)
    swap = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(palm_frame(kp, False)[:, :3, :3], swap @ R2 @ R1, atol=1e-12)


def test_palm_frame_invariant_to_rigid_motion_and_inverse():
    kp = _hands(6)
    R, t = _random_rigid(6)
    moved = world_to_camera(kp, R, t)
    p0 = apply_transform(palm_frame(kp, False), kp)
    assert torch.allclose(apply_transform(palm_frame(moved, False), moved), p0, atol=1e-12)
    for left in (False, True):
        T, T_inv = palm_frame(kp, left), palm_frame_inverse(kp, left)
        assert torch.allclose(T_inv @ T, torch.eye(4, dtype=torch.float64).expand(6, 4, 4), atol=1e-12)


def test_palm_frame_scale():
    kp = _hands(3)
    p_m = apply_transform(palm_frame(kp, False), kp)
    T_n = palm_frame(kp, False, scale=HALO_SCALE)
    assert torch.allclose(apply_transform(T_n, kp) * HALO_SCALE, p_m, atol=1e-12)
    assert torch.allclose(apply_transform(palm_frame_inverse(kp, False, HALO_SCALE), p_m / HALO_SCALE), kp, atol=1e-12)


def test_rescale_transform_matches_scale_conjugation():
    R, t = _random_rigid(2)
    T = make_transform(R, t)
    s = HALO_SCALE
    S = lambda k: torch.diag(torch.tensor([k, k, k, 1.0], dtype=torch.float64))  # noqa: E731
    assert torch.allclose(rescale_transform(T, s), S(1 / s) @ T @ S(s))


def test_palm_frame_dtype_grad_and_errors():
    kp32 = _hands(2).float()
    assert palm_frame(kp32, False).dtype == torch.float32
    kp = _hands(2).requires_grad_()
    assert torch.autograd.gradcheck(lambda k: palm_frame(k, torch.tensor([True, False])), (kp,))
    assert torch.isfinite(palm_frame(torch.zeros(1, 21, 3), False)).all()
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        palm_frame(torch.zeros(2, 16, 3), False)
    with pytest.raises(ValueError, match=r"is_left"):
        palm_frame(torch.zeros(2, 21, 3), torch.tensor([True, False, True]))


def test_orbit_view_keeps_distances_and_turns_about_the_centre():
    from im2hands.geometry.frames import orbit_view

    center = torch.tensor([0.05, -0.02, 0.6])
    pts = center + torch.randn(50, 3) * 0.05
    for angle in (0.0, 35.0, 90.0, -120.0):
        q = orbit_view(pts, center, angle)
        assert torch.allclose((q[:, None] - q[None]).norm(dim=-1), (pts[:, None] - pts[None]).norm(dim=-1), atol=1e-6)
        assert torch.allclose((q - center).norm(dim=-1), (pts - center).norm(dim=-1), atol=1e-6)
        assert torch.allclose(q[:, 1], pts[:, 1])  # about the vertical axis
    assert torch.allclose(orbit_view(pts, center, 0.0), pts)
    # camera moved to +x by 90 degrees: a point on the +x side of the centre comes nearer
    q = orbit_view(center + torch.tensor([[0.1, 0.0, 0.0]]), center, 90.0)
    assert torch.allclose(q, center + torch.tensor([[0.0, 0.0, -0.1]]), atol=1e-6)


def test_project_np_matches_project_and_clips_depth():
    import numpy as np

    from im2hands.geometry.frames import project, project_np

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(50, 3, generator=g, dtype=torch.float64) * 0.1 + torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64)
    K = torch.tensor([[500.0, 0.0, 128.0], [0.0, 480.0, 120.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(project_np(pts.numpy(), K.numpy()), project(pts, K).numpy(), rtol=1e-12, atol=1e-9)
    behind = np.array([[0.1, 0.0, -0.5], [0.1, 0.0, 0.5]])
    uv = project_np(behind, K.numpy(), min_depth=1e-6)
    # behind the camera: (K p) keeps its u, v and the depth -0.5 is clipped to 1e-6
    assert np.all(np.isfinite(uv)) and uv[0, 0] == pytest.approx((500.0 * 0.1 + 128.0 * -0.5) / 1e-6)
    assert uv[1, 0] == pytest.approx(128.0 + 500.0 * 0.1 / 0.5)
