import math
from pathlib import Path

import pytest
import torch

from im2hands.geometry.canonical import (
    ROOT_BONE_ANGLES,
    ROOT_PLANE_ANGLES,
    Canonicalization,
    canonicalize as _canonicalize,
    part_bones,
)
from im2hands.geometry.frames import apply_transform, mirror_x, world_to_camera
from im2hands.geometry.rotations import axis_angle_to_matrix, make_transform, normalize
from im2hands.hands.joint_orders import permutation

F64 = torch.float64
STD_OF_MANO = permutation("standard", "mano")  # canonical.py takes the joint permutation as an argument
PART_BONES = part_bones(STD_OF_MANO)


def canonicalize(keypoints, is_left):
    return _canonicalize(keypoints, is_left, STD_OF_MANO)

X_FLIP = torch.tensor([-1.0, 1.0, 1.0], dtype=F64)

# A flat right hand (palm in the xy-plane, fingers along +y, thumb at -x), standard order.
_FLAT_HAND = torch.tensor(
    [
        [0.0, 0.0, 0.0],
        [-0.02, 0.025, -0.005], [-0.035, 0.05, -0.008], [-0.05, 0.07, -0.01], [-0.06, 0.09, -0.01],
        [-0.02, 0.09, 0.0], [-0.022, 0.13, 0.0], [-0.023, 0.155, 0.0], [-0.024, 0.175, 0.0],
        [0.0, 0.095, 0.0], [0.0, 0.14, 0.0], [0.0, 0.167, 0.0], [0.0, 0.19, 0.0],
        [0.02, 0.09, 0.0], [0.021, 0.13, 0.0], [0.022, 0.155, 0.0], [0.023, 0.175, 0.0],
        [0.037, 0.08, 0.0], [0.04, 0.11, 0.0], [0.042, 0.128, 0.0], [0.044, 0.145, 0.0],
    ],
    dtype=F64,
)  # fmt: skip


def _skeletons(B: int) -> torch.Tensor:
    """Straight-ish right-hand skeletons with varied proportions: (B, 21, 3), metres."""
    scale = 0.85 + 0.3 * torch.rand(B, 1, 1, dtype=F64)
    return _FLAT_HAND * scale + 0.003 * torch.randn(B, 21, 3, dtype=F64)


def _random_rigid(kp: torch.Tensor) -> torch.Tensor:
    B = kp.shape[0]
    R = axis_angle_to_matrix(torch.randn(B, 3, dtype=kp.dtype))
    return world_to_camera(kp, R, torch.randn(B, 3, dtype=kp.dtype))


def _rotate_chain(kp: torch.Tensor, joint: torch.Tensor, R: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """Rotate keypoints ``idx`` about ``joint`` (B, 3) by ``R`` (B, 3, 3)."""
    kp = kp.clone()
    kp[:, idx] = (kp[:, idx] - joint[:, None]) @ R.transpose(-1, -2) + joint[:, None]
    return kp


def _pose_randomly(kp: torch.Tensor, max_angle: float = 1.0) -> torch.Tensor:
    """Rotate each finger's distal chain about random axes at its first three joints."""
    B = kp.shape[0]
    for f in range(5):
        chain = [1 + 4 * f + j for j in range(4)]
        for j in range(3):
            angle = max_angle * (2 * torch.rand(B, 1, dtype=kp.dtype) - 1)
            axis_angle = normalize(torch.randn(B, 3, dtype=kp.dtype)) * angle
            kp = _rotate_chain(kp, kp[:, chain[j]], axis_angle_to_matrix(axis_angle), chain[j + 1 :])
    return kp


def _bones(kp: torch.Tensor) -> torch.Tensor:
    """(B, 5, 4, 3) bone vectors, finger x level, from standard-order keypoints."""
    joints = kp[:, 1:].reshape(-1, 5, 4, 3)
    parents = torch.cat([kp[:, None, None, 0].expand(-1, 5, 1, 3), joints[:, :, :3]], 2)
    return joints - parents


def _signed(a, b, axis):
    return torch.atan2((torch.cross(a, b, dim=-1) * normalize(axis)).sum(-1), (a * b).sum(-1))


def test_part_bones_follow_mano_part_order():
    # Bone i ends at standard keypoint i + 1: index 6-8, middle 10-12, pinky 18-20, ring 14-16, thumb 2-4.
    assert PART_BONES == (5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3)


def test_shapes_dtypes_and_errors():
    for dtype in (torch.float32, F64):
        c = canonicalize(_skeletons(3).to(dtype), torch.tensor([True, False, True]))
        assert isinstance(c, Canonicalization)
        shapes = {"palm_T": (3, 4, 4), "unpose": (3, 16, 4, 4), "posed_to_canonical": (3, 16, 4, 4),
                  "bone_lengths": (3, 16), "keypoints_palm": (3, 21, 3), "keypoints_canonical": (3, 21, 3),
                  "bone_unpose": (3, 20, 4, 4)}  # fmt: skip
        for name, shape in shapes.items():
            value = getattr(c, name)
            assert value.shape == shape and value.dtype == dtype, name
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        canonicalize(torch.zeros(2, 20, 3), False)
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        canonicalize(torch.zeros(21, 3), False)
    with pytest.raises(ValueError, match=r"is_left of shape \(2,\)"):
        canonicalize(torch.zeros(2, 21, 3), torch.tensor([True]))


def test_unpose_is_rigid_and_maps_bone_endpoints():
    kp = _random_rigid(_pose_randomly(_skeletons(8)))
    c = canonicalize(kp, False)
    R = c.unpose[..., :3, :3]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=F64).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8, 16, dtype=F64), atol=1e-12)
    assert torch.equal(c.unpose[:, 0], torch.eye(4, dtype=F64).expand(8, 4, 4))
    assert torch.equal(c.unpose[:, 1:], c.bone_unpose[:, list(PART_BONES)])
    assert torch.allclose(c.posed_to_canonical, c.unpose @ c.palm_T[:, None])
    # Each bone's transform sends its parent and child joints to the canonical ones.
    for i in range(20):
        parent = 0 if i % 4 == 0 else i
        ends = apply_transform(c.bone_unpose[:, i], c.keypoints_palm[:, [parent, i + 1]])
        assert torch.allclose(ends, c.keypoints_canonical[:, [parent, i + 1]], atol=1e-12)
        # ... and from the input frame through posed_to_canonical (parts only).
    for k, i in enumerate(PART_BONES, start=1):
        ends = apply_transform(c.posed_to_canonical[:, k], kp[:, [i, i + 1]])
        assert torch.allclose(ends, c.keypoints_canonical[:, [i, i + 1]], atol=1e-12)


def test_canonical_keypoints_invariant_to_pose_straight_and_lengths_kept():
    rest = _skeletons(16)
    posed = _random_rigid(_pose_randomly(rest, max_angle=1.2))
    c_rest, c_posed = canonicalize(rest, False), canonicalize(posed, False)
    assert (c_posed.keypoints_canonical - c_rest.keypoints_canonical).abs().max() < 1e-5
    # Bone lengths kept (poses are rigid per bone, so rest == posed lengths too).
    lengths = _bones(posed).norm(dim=-1)
    assert torch.allclose(_bones(c_posed.keypoints_canonical).norm(dim=-1), lengths, atol=1e-12)
    assert torch.allclose(c_posed.bone_lengths, c_rest.bone_lengths, atol=1e-12)
    assert torch.allclose(c_posed.bone_lengths[:, 0], (posed[:, 9] - posed[:, 0]).norm(dim=-1))  # palm
    assert torch.allclose(c_posed.bone_lengths[:, 1:], lengths.flatten(1)[:, list(PART_BONES)])
    # Straight fingers: all four bones of a finger are parallel (the finger continues its root bone).
    d = normalize(_bones(c_posed.keypoints_canonical))
    assert torch.allclose(d, d[:, :, :1].expand_as(d), atol=1e-10)


def test_canonical_root_bone_angles():
    c = canonicalize(_random_rigid(_pose_randomly(_skeletons(8))), False)
    t, i, m, r, p = _bones(c.keypoints_canonical)[:, :, 0].unbind(1)
    angle = lambda a, b: torch.atan2(torch.cross(a, b, dim=-1).norm(dim=-1), (a * b).sum(-1))  # noqa: E731
    for (a, b), target in zip([(t, i), (i, m), (m, r), (r, p)], ROOT_BONE_ANGLES):
        assert torch.allclose(angle(a, b), torch.full((8,), target, dtype=F64), atol=1e-10)
    cross = lambda a, b: torch.cross(a, b, dim=-1)  # noqa: E731
    a0, a1, a2 = ROOT_PLANE_ANGLES
    # HALO's sign conventions: n0 -> n1 about the index root bone, n2 -> n1 about the middle one.
    assert torch.allclose(_signed(cross(i, t), cross(m, i), i), torch.full((8,), a0, dtype=F64), atol=1e-10)
    assert torch.allclose(_signed(cross(r, m), cross(m, i), m), torch.full((8,), -a1, dtype=F64), atol=1e-10)
    assert torch.allclose(_signed(cross(p, r), cross(r, m), r), torch.full((8,), -a2, dtype=F64), atol=1e-10)
    # The middle root bone is kept: canonical middle MCP is the palm-frame one, on the -x axis.
    assert torch.allclose(c.keypoints_canonical[:, 9], c.keypoints_palm[:, 9], atol=1e-12)


def test_canonical_hand_is_a_fixed_point():
    c = canonicalize(_random_rigid(_pose_randomly(_skeletons(4))), False)
    again = canonicalize(c.keypoints_canonical, False)
    assert torch.allclose(again.palm_T, torch.eye(4, dtype=F64).expand(4, 4, 4), atol=1e-10)
    assert torch.allclose(again.bone_unpose, torch.eye(4, dtype=F64).expand(4, 20, 4, 4), atol=1e-10)


def _halo_finger_frames(kp: torch.Tensor) -> torch.Tensor:
    """Finger frames (rows x, y, z) of a hand in the palm frame, as HALO defines them."""
    root = normalize(_bones(kp)[:, :, 0])
    n = normalize(torch.cross(root[:, :-1], root[:, 1:], dim=-1))
    plane = torch.stack([n[:, 0], n[:, 1], (n[:, 1] + n[:, 2]) / 2, (n[:, 2] + n[:, 3]) / 2, n[:, 3]], 1)
    y = normalize(torch.cross(root, plane, dim=-1))
    return torch.stack([torch.cross(y, root, dim=-1), y, root], -2)


def test_points_near_bones_return_exactly_under_flexion_abduction_poses():
    """Forward kinematics with HALO's flexion/abduction parametrisation is undone exactly.

    Start from a canonical hand (its unposing is the identity), attach marker points to each
    phalanx, pose the fingers by flexion ``theta`` about the local y axis then abduction
    ``alpha`` about the rotated x axis at each joint, in frames carried along the finger; the
    posed markers, mapped through their bone's transform, must land where they started.
    """
    B = 6
    rest = canonicalize(_random_rigid(_pose_randomly(_skeletons(B))), False).keypoints_canonical
    bones = _bones(rest)
    markers = rest[:, 1:].reshape(B, 5, 4, 1, 3) - bones[:, :, :, None] * torch.rand(B, 5, 4, 7, 1, dtype=F64)
    markers = markers + 0.008 * torch.randn_like(markers)  # (B, 5, 4, 7, 3) around each bone
    posed, posed_markers = rest.clone(), markers.clone()
    frames = _halo_finger_frames(rest)
    for f in range(5):
        F = frames[:, f]
        for j in range(1, 4):  # joint at the start of bone level j
            theta = -0.3 + 1.8 * torch.rand(B, dtype=F64)
            alpha = 0.8 * torch.rand(B, dtype=F64) - 0.4
            e = torch.eye(3, dtype=F64).expand(B, 3, 3)
            P = axis_angle_to_matrix(e[:, 1] * theta[:, None]) @ axis_angle_to_matrix(-e[:, 0] * alpha[:, None])
            Rg = F.transpose(-1, -2) @ P @ F  # in palm-frame coordinates
            joint = posed[:, 4 * f + j].clone()
            posed = _rotate_chain(posed, joint, Rg, [1 + 4 * f + k for k in range(j, 4)])
            moved = posed_markers[:, f, j:] - joint[:, None, None]
            posed_markers[:, f, j:] = moved @ Rg[:, None].transpose(-1, -2) + joint[:, None, None]
            F = F @ Rg.transpose(-1, -2)
    T_rigid = make_transform(axis_angle_to_matrix(torch.randn(B, 3, dtype=F64)), torch.randn(B, 3, dtype=F64))
    c = canonicalize(apply_transform(T_rigid, posed), False)
    maps = (c.bone_unpose @ c.palm_T[:, None] @ T_rigid[:, None]).reshape(B, 5, 4, 4, 4)
    back = apply_transform(maps, posed_markers)
    assert (back - markers).abs().max() < 1e-10
    assert (c.keypoints_canonical - rest).abs().max() < 1e-10


def test_left_hand_equals_mirrored_right():
    kp = _random_rigid(_pose_randomly(_skeletons(5)))
    right, left = canonicalize(kp, False), canonicalize(mirror_x(kp), True)
    for name in ("unpose", "bone_lengths", "keypoints_palm", "keypoints_canonical"):
        assert torch.allclose(getattr(left, name), getattr(right, name), atol=1e-12), name
    mirror = make_transform(torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64)))
    assert torch.allclose(left.posed_to_canonical @ mirror, right.posed_to_canonical, atol=1e-12)


def test_invariant_to_global_rotation_and_translation():
    kp = _pose_randomly(_skeletons(5))
    R = axis_angle_to_matrix(torch.randn(5, 3, dtype=F64))
    t = torch.randn(5, 3, dtype=F64)
    c0, c1 = canonicalize(kp, False), canonicalize(world_to_camera(kp, R, t), False)
    for name in ("unpose", "bone_lengths", "keypoints_palm", "keypoints_canonical"):
        assert torch.allclose(getattr(c0, name), getattr(c1, name), atol=1e-12), name
    T = make_transform(R, t)[:, None]
    assert torch.allclose(c1.posed_to_canonical @ T, c0.posed_to_canonical, atol=1e-12)


def test_batch_of_one_matches_batch_of_eight():
    kp = _random_rigid(_pose_randomly(_skeletons(8))).float()
    is_left = torch.rand(8) < 0.5
    full = canonicalize(kp, is_left)
    for b in (0, 5):
        one = canonicalize(kp[b : b + 1], is_left[b : b + 1])
        for name in ("posed_to_canonical", "keypoints_canonical", "bone_lengths"):
            assert torch.allclose(getattr(one, name)[0], getattr(full, name)[b], atol=1e-6), name


def test_runs_on_the_test_device(device):
    kp = _random_rigid(_pose_randomly(_skeletons(4))).float()
    is_left = torch.tensor([True, False, False, True])
    on_device = canonicalize(kp.to(device), is_left.to(device))
    reference = canonicalize(kp, is_left)
    for name, value in vars(on_device).items():
        assert value.device.type == device.type, name
        assert torch.allclose(value.cpu(), getattr(reference, name), atol=1e-5), name


def test_float32_matches_float64():
    kp = _random_rigid(_pose_randomly(_skeletons(8)))
    c32, c64 = canonicalize(kp.float(), False), canonicalize(kp, False)
    assert (c32.keypoints_canonical.double() - c64.keypoints_canonical).abs().max() < 1e-5
    assert (c32.posed_to_canonical.double() - c64.posed_to_canonical).abs().max() < 1e-4


def test_gradcheck_float64():
    kp = _random_rigid(_pose_randomly(_skeletons(2))).requires_grad_()
    is_left = torch.tensor([True, False])

    def fn(k):
        c = canonicalize(k, is_left[: k.shape[0]])
        return c.posed_to_canonical[..., :3, :], c.keypoints_canonical, c.bone_lengths

    assert torch.autograd.gradcheck(fn, (kp[:1].detach().requires_grad_(),), atol=1e-6)  # every entry
    assert torch.autograd.gradcheck(fn, (kp,), atol=1e-6, fast_mode=True)  # random projections


def test_degenerate_inputs_stay_finite():
    flat_line = torch.zeros(1, 21, 3, dtype=F64)
    flat_line[0, 1:, 1] = torch.linspace(0.01, 0.2, 20, dtype=F64)  # every keypoint on one line
    repeated = _skeletons(1)
    repeated[0, 6:9] = repeated[0, 5]  # a collapsed finger
    for kp in (torch.zeros(2, 21, 3, dtype=F64), flat_line, repeated):
        kp = kp.clone().requires_grad_()
        c = canonicalize(kp, True)
        for value in vars(c).values():
            assert torch.isfinite(value).all()
        (c.posed_to_canonical.sum() + c.keypoints_canonical.sum() + c.bone_lengths.sum()).backward()
        assert torch.isfinite(kp.grad).all()


_HAND_MODEL = Path(__file__).resolve().parents[2] / "im2hands" / "assets" / "handmodel" / "MANO_RIGHT.pkl"


def _finger_axes_model_frame(c_rest: Canonicalization) -> torch.Tensor:
    """(5, 3, 3) rows (x: palmar, y: flexion axis, z: along the finger) of each finger's HALO
    frame, expressed in the hand model's own frame (the rest hand's input frame)."""
    frames = _halo_finger_frames(c_rest.keypoints_canonical)[0]  # after root normalisation
    root_norm = c_rest.bone_unpose[0, 0::4, :3, :3]  # (5, 3, 3) N_f: root bones' rotations
    palm_R = c_rest.palm_T[0, :3, :3]
    return frames @ root_norm @ palm_R  # rows mapped back: palm -> model frame


def test_mesh_vertices_land_on_the_canonical_mesh():
    """Hand-model vertices of two finger poses, each mapped by its dominant part, agree.

    Poses: flexion of 0-60 deg at each of the 15 finger joints about the finger's flexion axis,
    plus -10..10 deg abduction at the base joints; compared with each other and with the rest
    pose. Vertices whose top skinning weight is >= 0.9 move (almost) rigidly with their part:
    median < 1 mm, 90th percentile < 3 mm (measured with the open model v1: <= 0.34 and
    <= 1.42 mm). All vertices, blended ones near joints included: median < 2 mm, p90 < 6 mm
    (measured: <= 1.15 and <= 2.82 mm). A model with pose corrective offsets adds to these.
    """
    if not _HAND_MODEL.exists():
        pytest.skip("open hand model not built yet")
    from im2hands.hands.joint_orders import MANO_JOINT_TO_STANDARD
    from im2hands.hands.layer import HandModel

    model = HandModel(_HAND_MODEL.parent, "right", dtype=F64)
    mean = getattr(model.mano, "pose_mean", torch.zeros(48, dtype=F64)).to(F64)[3:]  # (45,)
    zeros = lambda n: torch.zeros(1, n, dtype=F64)  # noqa: E731
    flat_pose = torch.cat([zeros(3), -mean[None]], 1)  # absolute rotations 0: the template's pose
    rest = model(flat_pose, zeros(10), zeros(3))
    axes = _finger_axes_model_frame(canonicalize(rest.keypoints, False))  # (5, 3, 3)

    gen = torch.Generator().manual_seed(0)
    poses = [flat_pose]
    for _ in range(2):
        pose = flat_pose.clone()
        for j in range(1, 16):
            s = MANO_JOINT_TO_STANDARD[j]
            f, level = (s - 1) // 4, (s - 1) % 4
            theta = math.radians(60.0) * torch.rand(1, generator=gen, dtype=F64)
            aa = theta * axes[f, 1]
            if level == 0:
                aa = aa + math.radians(10.0) * (2 * torch.rand(1, generator=gen, dtype=F64) - 1) * axes[f, 0]
            pose[0, 3 * j : 3 * j + 3] += aa
        poses.append(pose)
    pose = torch.cat(poses)  # (3, 48): rest, pose A, pose B
    out = model(pose, torch.zeros(3, 10, dtype=F64), torch.zeros(3, 3, dtype=F64))
    c = canonicalize(out.keypoints, False)

    weights = model.skinning_weights.to(F64)  # (V, 16), MANO joint order = part order
    top, part = weights.max(-1)
    maps = c.posed_to_canonical[:, part]  # (3, V, 4, 4)
    canon = apply_transform(maps, out.vertices[:, :, None])[:, :, 0]  # (3, V, 3)
    for min_weight, max_median, max_p90 in ((0.9, 1.0, 3.0), (0.0, 2.0, 6.0)):
        keep = top >= min_weight
        for a, b in ((1, 2), (0, 1), (0, 2)):
            dist_mm = (canon[a, keep] - canon[b, keep]).norm(dim=-1) * 1000.0
            median, p90 = dist_mm.median().item(), dist_mm.quantile(0.9).item()
            msg = f"weight >= {min_weight}, poses {a} vs {b}: median {median:.2f} mm, p90 {p90:.2f} mm"
            assert median < max_median and p90 < max_p90, msg


def test_sampled_poses_and_shapes_land_on_the_canonical_mesh_both_hands():
    """Hand-model vertices under poses from the package's pose sampler and random shapes,
    each mapped by its dominant part's ``posed_to_canonical``, land on the canonical mesh of
    the same shape (its flat rest pose mapped the same way); the left hand goes through the
    mirroring path (``mirror_pose`` on the model, ``is_left=True`` in canonicalization).

    Tolerances, per sample (mm), with what 300 sampled poses (``PoseSampler.sample``, mode
    "random", random global rotations, betas ~ N(0, 1) clipped to [-3, 3], seed 123) gave
    with the open model v1 in brackets (worst sample):

    - vertices with top skinning weight >= 0.9, thumb metacarpal excluded: median < 1 mm
      (0.66), p90 < 6 mm (4.75);
    - all vertices, thumb metacarpal excluded: median < 4 mm (2.92), p90 < 12 mm (9.06);
    - vertices of the thumb metacarpal part (13, thenar pad included): median < 20 mm
      (13.7). Its error is large by nature: the sampler twists the thumb CMC by up to 60 deg
      (opposition), and a twist about a bone is invisible to 21 keypoints, so the unposing
      cannot undo it (HALO's canonicalization has the same blind spot);
    - every vertex: < 35 mm (25.0);
    - per-part maps do the work: on non-palm vertices the median error is < 0.25 x that of
      mapping every vertex by the palm's transform alone (worst ratio 0.145).

    The remaining error of near-rigid vertices comes from pose correctives (joint
    inflation), MCP twist and the blend zones; a wrong part order, a wrong left-hand mirror
    or a wrong bone transform gives centimetres.
    """
    if not _HAND_MODEL.exists():
        pytest.skip("open hand model not built yet")
    from im2hands.hands.layer import load_hand_models
    from im2hands.hands.mirror import mirror_pose
    from im2hands.hands.pose_sampler import PoseSampler

    models = load_hand_models(_HAND_MODEL.parent, dtype=F64)
    right, left = models["right"], models["left"]
    B = 6
    gen = torch.Generator().manual_seed(0)
    sampler = PoseSampler.from_model(right, dtype=F64)
    pose = sampler.pose_from_angles(sampler.sample(B, gen), torch.randn(B, 3, generator=gen, dtype=F64))
    mean = getattr(right.mano, "pose_mean", torch.zeros(48, dtype=F64)).to(F64)  # (48,), zero global part
    pose = pose - mean  # the sampler gives absolute joint rotations; the layer adds hands_mean
    flat = -mean.expand(B, 48)
    shape = torch.randn(B, 10, generator=gen, dtype=F64).clamp(-3.0, 3.0)
    trans = 0.1 * torch.randn(B, 3, generator=gen, dtype=F64)

    top, part = right.skinning_weights.to(F64).max(-1)  # (V,): dominant part, MANO joint order
    assert torch.equal(part, left.skinning_weights.to(F64).max(-1).indices)

    def to_canonical(out, is_left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        c = canonicalize(out.keypoints, is_left)
        by_part = apply_transform(c.posed_to_canonical[:, part], out.vertices[:, :, None])[:, :, 0]
        by_palm = apply_transform(c.posed_to_canonical[:, 0], out.vertices)
        return by_part, by_palm

    with torch.no_grad():
        reference, _ = to_canonical(right(flat, shape, torch.zeros(B, 3, dtype=F64)), False)  # (B, V, 3)
        posed = {
            "right": to_canonical(right(pose, shape, trans), False),
            "left": to_canonical(left(mirror_pose(pose), shape, trans * X_FLIP), True),
        }
    # The mirrored left hand lands where the right one does (measured: 4e-9 m apart).
    assert (posed["left"][0] - posed["right"][0]).abs().max() < 1e-7

    rigid = (top >= 0.9) & (part != 13)
    groups = {"weight>=0.9 w/o thumb mc": (rigid, 1.0, 6.0), "all w/o thumb mc": (part != 13, 4.0, 12.0),
              "thumb mc": (part == 13, 20.0, None)}  # fmt: skip
    for side, (by_part, by_palm) in posed.items():
        dist_mm = (by_part - reference).norm(dim=-1) * 1000.0  # (B, V)
        naive_mm = (by_palm - reference).norm(dim=-1) * 1000.0
        assert dist_mm.max() < 35.0, f"{side}: worst vertex {dist_mm.max():.1f} mm"
        for name, (keep, max_median, max_p90) in groups.items():
            median = dist_mm[:, keep].median(dim=1).values
            assert (median < max_median).all(), f"{side}, {name}: medians {median.tolist()} mm"
            if max_p90 is not None:
                p90 = dist_mm[:, keep].quantile(0.9, dim=1)
                assert (p90 < max_p90).all(), f"{side}, {name}: p90 {p90.tolist()} mm"
        moving = part != 0
        ratio = dist_mm[:, moving].median(dim=1).values / naive_mm[:, moving].median(dim=1).values
        assert (ratio < 0.25).all(), f"{side}: error / palm-only error {ratio.tolist()}"
