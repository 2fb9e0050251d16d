"""HALO-style canonicalisation of one hand from its 21 keypoints (pure torch, batched).

Follows the algorithm of HALO's ``PoseConverter`` (reference section 8), with everything in
metres and without HALO's internal 0.4 scaling:

1. **Palm frame** (:func:`im2hands.geometry.frames.palm_frame`): mirror left hands, wrist to the
   origin, wrist -> middle MCP along ``-x``, palm normal along ``+y`` (out of the back of the hand).
2. **Bones**: per finger (thumb, index, middle, ring, pinky) 4 bones, level 0 = wrist -> base
   joint ("root bone"), then base -> 2nd, 2nd -> 3rd, 3rd -> tip.
3. **Root normalisation** ``N_f`` (one rotation per finger, inherited by the finger's bones):
   (a) dihedral angles between adjacent finger planes set to :data:`ROOT_PLANE_ANGLES` (thumb
   rotated about the index root bone; ring and pinky about the middle root bone; pinky also
   about the ring root bone); (b) in-plane angles between adjacent root bones set to
   :data:`ROOT_BONE_ANGLES` (middle fixed; index with thumb, thumb, ring with pinky, pinky
   rotated in the plane of the pair).
4. **Finger frames** ``C_f`` (rows x, y, z) from the normalised root bones: ``z`` = root-bone
   direction, ``y = z x m_f`` with ``m_f`` the finger-plane normal (thumb ``n0``, index ``n1``,
   middle ``(n1+n2)/2``, ring ``(n2+n3)/2``, pinky ``n3``, ``n_i = root_i x root_(i+1)``),
   ``x = y x z``. ``+x`` points to the palm side, so positive flexion curls the finger.
5. **Angles and unposing**: bone ``l`` of a finger, in the frame of its parent bone (``C_f``
   rotated by the parent unposing rotations), has flexion ``theta`` (angle of its xz-projection
   from ``+z``, sign of ``x``) and abduction ``alpha`` (elevation out of the xz-plane, sign of
   ``y``). ``R_l = R_x(alpha) R_y(-theta)`` takes it to ``+z`` (all canonical angles are 0:
   straight fingers). Accumulated along the finger, the bone's unposing rotation is
   ``G_l = C_f^T (R_l ... R_1) C_f`` (identity for root bones), equal to HALO's conjugation
   ``C_l^T (R_(l-1) ... R_1) R_l C_l`` with ``C_l = R_(l-1) ... R_1 C_f``.
6. **Per-bone transform** ``T(q_parent) (G_l N_f) T(-j_parent)``: a rigid map (HALO's
   ``S(l) . S(1/l)`` around the rotation cancel) sending the posed parent joint ``j_parent`` to
   its canonical position ``q_parent``, accumulated along the finger from the canonical bones
   ``length * G_l N_f d`` (canonical wrist = palm-frame wrist = origin).

The 16 occupancy parts (palm + 15 phalanges, MANO part order) use the transform of the bone
that ends at MANO/HALO joint :data:`PART_END_JOINTS_MANO` (the palm part is the identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from im2hands.geometry.frames import apply_transform, palm_frame
from im2hands.geometry.rotations import make_transform, normalize, rotation_about_axis, safe_norm
from im2hands.typing import Bool, Float, Tensor

__all__ = [
    "ROOT_PLANE_ANGLES",
    "ROOT_BONE_ANGLES",
    "PART_END_JOINTS_MANO",
    "BONE_LENGTH_PAIRS_MANO",
    "part_bones",
    "Canonicalization",
    "canonicalize",
]

ROOT_PLANE_ANGLES: tuple[float, float, float] = (0.8, 0.2, 0.2)
"""Canonical dihedral angles (rad) between adjacent root-bone planes: plane(thumb, index) vs
plane(index, middle), plane(index, middle) vs plane(middle, ring), plane(middle, ring) vs
plane(ring, pinky) (HALO ``root_plane_angles``)."""

ROOT_BONE_ANGLES: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)
"""Canonical angles (rad) between adjacent root bones: thumb-index, index-middle, middle-ring,
ring-pinky (HALO ``root_bone_angles``)."""

PART_END_JOINTS_MANO: tuple[int, ...] = (0, 2, 3, 17, 5, 6, 18, 8, 9, 20, 11, 12, 19, 14, 15, 16)
"""For each of the 16 parts, the MANO/HALO joint at which its bone ends (0: palm, identity)."""

BONE_LENGTH_PAIRS_MANO: tuple[tuple[int, int], ...] = (
    (0, 4), (1, 2), (2, 3), (3, 17), (4, 5), (5, 6), (6, 18), (7, 8),
    (8, 9), (9, 20), (10, 11), (11, 12), (12, 19), (13, 14), (14, 15), (15, 16),
)  # fmt: skip
"""MANO/HALO keypoint pairs of the 16 part lengths (palm = wrist -> middle MCP)."""



def part_bones(std_of_mano: Sequence[int]) -> tuple[int, ...]:
    """Bone index (0..19, the bone ending at ``standard`` keypoint ``index + 1``) of parts 1..15.

    Args:
        std_of_mano: ``std_of_mano[h]`` is the ``standard`` index of MANO/HALO joint ``h``
            (``im2hands.hands.joint_orders.permutation("standard", "mano")``).
    """
    return tuple(int(std_of_mano[h]) - 1 for h in PART_END_JOINTS_MANO[1:])


def _length_pairs(std_of_mano: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple((int(std_of_mano[a]), int(std_of_mano[b])) for a, b in BONE_LENGTH_PAIRS_MANO)


@dataclass
class Canonicalization:
    """Result of :func:`canonicalize` for a batch of B hands (all lengths in metres).

    Attributes:
        palm_T: ``(B, 4, 4)`` input frame -> palm frame (mirrors left hands).
        unpose: ``(B, 16, 4, 4)`` rigid maps, palm frame -> canonical hand, one per part (MANO
            part order: palm, index x3, middle x3, pinky x3, ring x3, thumb x3).
        posed_to_canonical: ``(B, 16, 4, 4)`` ``unpose @ palm_T``: input frame -> canonical.
        bone_lengths: ``(B, 16)`` part lengths for :data:`BONE_LENGTH_PAIRS_MANO`.
        keypoints_palm: ``(B, 21, 3)`` keypoints in the palm frame, ``standard`` order.
        keypoints_canonical: ``(B, 21, 3)`` canonical-pose keypoints (palm frame axes, straight
            fingers, this hand's bone lengths), ``standard`` order.
        bone_unpose: ``(B, 20, 4, 4)`` palm frame -> canonical map of every skeleton bone; bone
            ``i`` ends at ``standard`` keypoint ``i + 1`` (``unpose[:, 1:] == bone_unpose[:, part_bones(std_of_mano)]``).
    """

    palm_T: Float[Tensor, "B 4 4"]
    unpose: Float[Tensor, "B K 4 4"]
    posed_to_canonical: Float[Tensor, "B K 4 4"]
    bone_lengths: Float[Tensor, "B K"]
    keypoints_palm: Float[Tensor, "B J 3"]
    keypoints_canonical: Float[Tensor, "B J 3"]
    bone_unpose: Float[Tensor, "B 20 4 4"]


def _mv(R: Tensor, v: Tensor) -> Tensor:
    """Batched matrix-vector product ``R @ v`` over the last dims."""
    return (R @ v[..., :, None]).squeeze(-1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def _angle(a: Tensor, b: Tensor) -> Tensor:
    """Unsigned angle between ``a`` and ``b`` in ``[0, pi]`` (stable for tiny angles)."""
    return torch.atan2(safe_norm(torch.cross(a, b, dim=-1)), _dot(a, b))


def _signed_angle(a: Tensor, b: Tensor, axis: Tensor) -> Tensor:
    """Angle from ``a`` to ``b`` about ``axis`` (both perpendicular to it), in ``(-pi, pi]``."""
    y = _dot(torch.cross(a, b, dim=-1), normalize(axis))
    x = _dot(a, b)
    tiny = (x.abs() + y.abs()) < 1e-12  # degenerate: one vector is zero; call the angle 0
    return torch.atan2(torch.where(tiny, torch.zeros_like(y), y), torch.where(tiny, torch.ones_like(x), x))


def _root_normalisation(root: Float[Tensor, "B 5 3"]) -> Float[Tensor, "B 5 3 3"]:
    """Rotation per finger that puts its root bone into the canonical palm configuration.

    Args:
        root: ``(B, 5, 3)`` unit root-bone directions (wrist -> base joint), thumb to pinky.

    Returns:
        ``(B, 5, 3, 3)`` rotations ``N_f`` (``N_middle = I``).
    """
    t, i, m, r, p = root.unbind(1)  # (B, 3) each
    a0, a1, a2 = ROOT_PLANE_ANGLES
    b0, b1, b2, b3 = ROOT_BONE_ANGLES
    cross = lambda u, v: torch.cross(u, v, dim=-1)  # noqa: E731
    # (a) finger-plane (dihedral) angles; reference plane index|middle, normal n1 = m x i.
    n1 = cross(m, i)
    plane_t = rotation_about_axis(i, _signed_angle(cross(i, t), n1, i) - a0)
    plane_r = rotation_about_axis(m, _signed_angle(cross(r, m), n1, m) + a1)
    r, p = _mv(plane_r, r), _mv(plane_r, p)
    plane_p = rotation_about_axis(r, _signed_angle(cross(p, r), cross(r, m), r) + a2) @ plane_r
    t, p = _mv(plane_t, t), _mv(plane_p, root[:, 4])
    # (b) in-plane angles between adjacent root bones, the middle root bone fixed.
    ang_i = rotation_about_axis(cross(m, i), b1 - _angle(m, i))
    i, t = _mv(ang_i, i), _mv(ang_i, t)
    ang_t = rotation_about_axis(cross(i, t), b0 - _angle(i, t)) @ ang_i
    ang_r = rotation_about_axis(cross(r, m), _angle(r, m) - b2)
    r, p = _mv(ang_r, r), _mv(ang_r, p)
    ang_p = rotation_about_axis(cross(p, r), _angle(p, r) - b3) @ ang_r
    eye = torch.eye(3, dtype=root.dtype, device=root.device).expand_as(ang_i)
    return torch.stack([ang_t @ plane_t, ang_i, eye, ang_r @ plane_r, ang_p @ plane_p], 1)  # (B, 5, 3, 3)


def _finger_frames(root: Float[Tensor, "B 5 3"]) -> Float[Tensor, "B 5 3 3"]:
    """Local frame of each finger (rows x, y, z) from its normalised root-bone direction."""
    n = normalize(torch.cross(root[:, :-1], root[:, 1:], dim=-1))  # (B, 4, 3) n_i = root_i x root_i+1
    plane = torch.stack([n[:, 0], n[:, 1], (n[:, 1] + n[:, 2]) / 2, (n[:, 2] + n[:, 3]) / 2, n[:, 3]], 1)  # (B, 5, 3)
    z = normalize(root)
    y = normalize(torch.cross(z, plane, dim=-1))
    x = torch.cross(y, z, dim=-1)
    return torch.stack([x, y, z], -2)  # (B, 5, 3, 3)


def _straighten(local: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """``R_x(alpha) R_y(-theta)``: takes the direction ``local`` to ``+z``, undoing its flexion
    ``theta = atan2(x, z)`` and then its abduction ``alpha = atan2(y, |(x, z)|)``.

    Built from the normalised components, so no inverse trigonometry is needed. A bone along
    ``+-y`` (abduction of 90 deg, flexion undefined) gets ``theta = 0``.
    """
    lx, ly, lz = normalize(local).unbind(-1)
    h = (lx * lx + lz * lz).clamp(min=1e-18).sqrt()  # cos(alpha)
    flat = h < 1e-9
    ct = torch.where(flat, torch.ones_like(h), lz / h)
    st = torch.where(flat, torch.zeros_like(h), lx / h)
    ca, sa = h, ly
    o = torch.zeros_like(h)
    rows = [ct, o, -st, -sa * st, ca, -sa * ct, ca * st, sa, ca * ct]
    return torch.stack(rows, -1).unflatten(-1, (3, 3))  # (..., 3, 3)


def _check_inputs(keypoints: Tensor, is_left: bool | Tensor) -> None:
    if not isinstance(keypoints, torch.Tensor) or keypoints.dim() != 3 or keypoints.shape[-2:] != (21, 3):
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"expected keypoints of shape (B, 21, 3) in standard order, got {shape}")
    if not keypoints.is_floating_point():
        raise ValueError(f"expected floating-point keypoints, got {keypoints.dtype}")
    if isinstance(is_left, torch.Tensor) and is_left.dim() > 0 and is_left.shape != keypoints.shape[:1]:
        raise ValueError(f"expected is_left of shape ({keypoints.shape[0]},), got {tuple(is_left.shape)}")


def canonicalize(
    keypoints: Float[Tensor, "B 21 3"], is_left: bool | Bool[Tensor, "B"], std_of_mano: Sequence[int]
) -> Canonicalization:
    """HALO canonicalisation of a batch of hands from their keypoints.

    Args:
        keypoints: ``(B, 21, 3)`` keypoints, ``standard`` order, metres, in any right-handed frame
            (world or camera). Differentiable.
        is_left: bool or ``(B,)`` bool; left hands are mirrored (``x -> -x``) first.
        std_of_mano: the joint permutation, ``std_of_mano[h]`` the ``standard`` index of
            MANO/HALO joint ``h`` (``permutation("standard", "mano")`` of
            :mod:`im2hands.hands.joint_orders`; geometry does not import the hand model).

    Returns:
        A :class:`Canonicalization` (same dtype and device as ``keypoints``).

    Example:
        >>> kp = torch.randn(2, 21, 3) * 0.05
        >>> from im2hands.hands.joint_orders import permutation
        >>> c = canonicalize(kp, torch.tensor([True, False]), permutation("standard", "mano"))
        >>> c.unpose.shape, c.keypoints_canonical.shape
        (torch.Size([2, 16, 4, 4]), torch.Size([2, 21, 3]))
    """
    _check_inputs(keypoints, is_left)
    B = keypoints.shape[0]
    palm_T = palm_frame(keypoints, is_left)  # (B, 4, 4)
    kp = apply_transform(palm_T, keypoints)  # (B, 21, 3)
    wrist = kp[:, 0]  # (B, 3), ~0
    joints = kp[:, 1:].reshape(B, 5, 4, 3)  # (B, finger, level, 3)
    parents = torch.cat([wrist[:, None, None].expand(B, 5, 1, 3), joints[:, :, :3]], 2)  # (B, 5, 4, 3)
    bones = joints - parents
    lengths = safe_norm(bones, keepdim=True)  # (B, 5, 4, 1)
    dirs = bones / lengths

    N = _root_normalisation(dirs[:, :, 0])  # (B, 5, 3, 3)
    dirs_n = _mv(N[:, :, None], dirs)  # (B, 5, 4, 3) after root normalisation
    C = _finger_frames(dirs_n[:, :, 0])  # (B, 5, 3, 3)
    local = _mv(C[:, :, None], dirs_n)  # (B, 5, 4, 3) bone directions in the finger frames

    eye = torch.eye(3, dtype=kp.dtype, device=kp.device).expand(B, 5, 3, 3)
    acc, G = eye, [eye]  # acc = R_l ... R_1 (finger-frame coordinates); root bones: identity
    for level in range(1, 4):
        acc = _straighten(_mv(acc, local[:, :, level])) @ acc
        G.append(C.transpose(-1, -2) @ acc @ C)
    M = torch.stack(G, 2) @ N[:, :, None]  # (B, 5, 4, 3, 3) posed -> canonical rotation per bone

    canon_joints = wrist[:, None, None] + torch.cumsum(lengths * _mv(M, dirs), 2)  # (B, 5, 4, 3)
    canon_parents = torch.cat([wrist[:, None, None].expand(B, 5, 1, 3), canon_joints[:, :, :3]], 2)
    bone_T = make_transform(M, canon_parents - _mv(M, parents)).reshape(B, 20, 4, 4)  # (B, 20, 4, 4)

    identity = torch.eye(4, dtype=kp.dtype, device=kp.device).expand(B, 1, 4, 4)
    unpose = torch.cat([identity, bone_T[:, list(part_bones(std_of_mano))]], 1)  # (B, 16, 4, 4)
    a, b = zip(*_length_pairs(std_of_mano))
    bone_lengths = safe_norm(kp[:, list(b)] - kp[:, list(a)])  # (B, 16)
    return Canonicalization(
        palm_T=palm_T,
        unpose=unpose,
        posed_to_canonical=unpose @ palm_T[:, None],
        bone_lengths=bone_lengths,
        keypoints_palm=kp,
        keypoints_canonical=torch.cat([wrist[:, None], canon_joints.reshape(B, 20, 3)], 1),
        bone_unpose=bone_T,
    )
