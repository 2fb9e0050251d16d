"""Anatomically limited hand poses: joint angles <-> MANO axis-angle, and random pose sampling.

A hand pose is described here by three *anatomical angles* per finger joint (radians), in MANO
joint order (rows 0-14 = joints 1-15: index MCP/PIP/DIP, middle, pinky, ring, thumb CMC/MCP/IP):

- ``flex``: flexion (positive curls the finger toward the palm; negative = hyperextension);
- ``abd``: abduction (long fingers: positive spreads the finger away from the middle finger,
  the middle finger's positive is toward the thumb; thumb CMC: *palmar* abduction, positive
  lifts the thumb out of the palm plane toward the volar side);
- ``twist``: rotation about the bone (thumb CMC: opposition/pronation, positive turns the
  thumb pad toward the fingers).

For the thumb CMC, ``flex`` moves the thumb across the palm toward the pinky (in the palm plane).

The rotation axes are derived from the model's REST skeleton (:class:`PoseSampler`), so the same
angles mean the same motion for our open hand model and for the licensed MANO files, whose rest
poses differ. Per joint the local rotation is ``R = R_abd @ R_flex @ R_twist`` (abduction about
the fixed palm-normal-like axis, then flexion about the abducted flexion axis, then the twist
about the bone), expressed in the rest frame, exactly as MANO composes its joint rotations.
The axes are chirality-aware: the same angles on the left model give the x-mirrored pose
(:func:`mirror_pose`), so ``left(pose_from_angles(a)) == mirror(right(pose_from_angles(a)))``.

The limits table :data:`JOINT_LIMITS_DEG` (degrees) is the one place where ranges live; it is
reproduced in ``docs/poses.md``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from im2hands.geometry.rotations import random_rotation  # noqa: F401 - the one home; name kept here
from im2hands.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from im2hands.hands.constants import MANO_KINTREE_PARENTS, SIDES
from im2hands.hands.mirror import mirror_pose
from im2hands.typing import Float, Tensor

__all__ = [
    "JOINT_NAMES",
    "JOINT_LIMITS_DEG",
    "FINGER_PALM_LIMIT",
    "PALM_REST_CLEARANCE",
    "MODES",
    "PoseSampler",
    "mirror_pose",
    "random_rotation",
    "pose_from_angles",
    "limits_radians",
]

JOINT_NAMES: tuple[str, ...] = (
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "pinky_mcp", "pinky_pip", "pinky_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
)
"""Names of MANO joints 1..15 (rows of an angles array)."""

# ------------------------------------------------------------------------------------------------
# THE limits table (degrees): per joint (flex_min, flex_max), (abd_min, abd_max), (twist_min, twist_max).
# Long fingers: abd > 0 spreads away from the middle finger (middle: toward the thumb).
# Thumb CMC: flex = across the palm toward the pinky, abd = palmar abduction, twist = opposition.
JOINT_LIMITS_DEG: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "index_mcp": ((-20.0, 90.0), (-15.0, 20.0), (-8.0, 8.0)),
    "index_pip": ((0.0, 110.0), (-3.0, 3.0), (-5.0, 5.0)),
    "index_dip": ((0.0, 80.0), (-3.0, 3.0), (-5.0, 5.0)),
    "middle_mcp": ((-20.0, 90.0), (-15.0, 15.0), (-8.0, 8.0)),
    "middle_pip": ((0.0, 110.0), (-3.0, 3.0), (-5.0, 5.0)),
    "middle_dip": ((0.0, 80.0), (-3.0, 3.0), (-5.0, 5.0)),
    "pinky_mcp": ((-20.0, 90.0), (-15.0, 25.0), (-10.0, 10.0)),
    "pinky_pip": ((0.0, 110.0), (-3.0, 3.0), (-5.0, 5.0)),
    "pinky_dip": ((0.0, 80.0), (-3.0, 3.0), (-5.0, 5.0)),
    "ring_mcp": ((-20.0, 90.0), (-15.0, 20.0), (-8.0, 8.0)),
    "ring_pip": ((0.0, 110.0), (-3.0, 3.0), (-5.0, 5.0)),
    "ring_dip": ((0.0, 80.0), (-3.0, 3.0), (-5.0, 5.0)),
    "thumb_cmc": ((-20.0, 50.0), (-15.0, 60.0), (-10.0, 60.0)),
    "thumb_mcp": ((0.0, 60.0), (-10.0, 10.0), (-10.0, 10.0)),
    "thumb_ip": ((-10.0, 80.0), (-5.0, 5.0), (-5.0, 5.0)),
}
# ------------------------------------------------------------------------------------------------

MODES: tuple[str, ...] = ("random", "open", "relaxed", "fist", "pointing", "pinch", "grasp", "spread")
"""Names accepted by :meth:`PoseSampler.sample`."""

# Rows of the angles array.
_CHAINS: dict[str, tuple[int, int, int]] = {
    "index": (0, 1, 2), "middle": (3, 4, 5), "pinky": (6, 7, 8), "ring": (9, 10, 11), "thumb": (12, 13, 14),
}
_LONG = ("index", "middle", "ring", "pinky")  # radial -> ulnar
_TIP_OF_CHAIN = {"thumb": 0, "index": 1, "middle": 2, "ring": 3, "pinky": 4}  # tips in thumb..pinky order
_FINGERS = _LONG + ("thumb",)  # order of the collision check's per-finger values
FINGER_PALM_LIMIT = 0.019
"""Metres (x scale): distal bones closer to the palm's segments press into it (calibrated on v1, docs/poses.md)."""
PALM_REST_CLEARANCE = 0.002
"""Metres: each finger's palm limit stays this far under its rest distance (v2's pinky: 17.2 mm at rest)."""
# Abduction sign per long finger: which lateral direction is "spread" (+1 radial, -1 ulnar).
_SPREAD_SIDE = {"index": 1.0, "middle": 1.0, "ring": -1.0, "pinky": -1.0}
# Angle by which the thumb's pad direction (MCP/IP flexion direction) is tilted from the palm
# normal toward the ulnar side (the fingers); the thumb's nail faces sideways in a flat hand.
THUMB_PAD_TILT_DEG: float = 55.0


def limits_radians(dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """``(lower, upper)``, each ``(15, 3)`` radians, from :data:`JOINT_LIMITS_DEG`."""
    table = torch.tensor([JOINT_LIMITS_DEG[n] for n in JOINT_NAMES], dtype=torch.float64)  # (15, 3, 2)
    table = torch.deg2rad(table).to(dtype)
    return table[..., 0].contiguous(), table[..., 1].contiguous()


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _perp(v: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` perpendicular to unit ``d``."""
    return _unit(v - np.dot(v, d) * d)


def _segment_distance(p0: Tensor, p1: Tensor, q0: Tensor, q1: Tensor) -> Tensor:
    """Distance between segments ``[p0, p1]`` and ``[q0, q1]`` (broadcast over ``(..., 3)``)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e = (d1 * d1).sum(-1).clamp(min=1e-12), (d2 * d2).sum(-1).clamp(min=1e-12)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = (a * e - b * b).clamp(min=1e-12)
    s = ((b * f - c * e) / denom).clamp(0, 1)
    t = ((b * s + f) / e).clamp(0, 1)
    s = ((b * t - c) / a).clamp(0, 1)
    return ((p0 + d1 * s[..., None]) - (q0 + d2 * t[..., None])).norm(dim=-1)


class PoseSampler:
    """Anatomical joint angles -> MANO pose, and random plausible single-hand poses.

    Build it from the rest skeleton of a hand model (``from_model``) or from rest joints and
    fingertips. Everything is vectorised over a batch.

    Attributes:
        side: ``"left"`` or ``"right"``.
        rest_joints: ``(16, 3)`` rest joints (MANO order), float64.
        rest_tips: ``(5, 3)`` rest fingertips (thumb, index, middle, ring, pinky), float64.
        axes: ``(15, 3, 3)`` per joint the unit axes ``[flex, abd, twist]`` (rest frame).
        lower, upper: ``(15, 3)`` angle limits (radians).
        palm_normal: ``(3,)`` unit volar normal of the rest palm.
        palm_limits: ``(5,)`` metres, per finger (index, middle, ring, pinky, thumb) the distance
            to the palm below which :meth:`collision_distances` flags a pose.
    """

    def __init__(self, rest_joints, rest_tips, side: str = "right",
                 limits_deg: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        J, T = _np(rest_joints), _np(rest_tips)
        if J.shape != (16, 3) or T.shape != (5, 3):
            raise ValueError(f"expected rest joints (16, 3) and tips (5, 3), got {J.shape} and {T.shape}")
        self.side, self.dtype = side, dtype
        self.rest_joints, self.rest_tips = J, T
        self.parents = MANO_KINTREE_PARENTS
        c = 1.0 if side == "right" else -1.0  # chirality: pseudo-vector axes = c * polar vectors
        wrist = J[0]
        n = c * _unit(np.cross(J[1] - wrist, J[7] - wrist))  # volar normal (polar vector)
        radial = _perp(J[1] - J[7], n)  # toward the thumb side, in the palm plane
        self.palm_normal = n
        self.scale = float(np.linalg.norm(J[4] - wrist)) / 0.081  # 1 for the open model's mean hand
        axes = np.zeros((15, 3, 3))
        for name, rows in _CHAINS.items():
            joints = [r + 1 for r in rows]
            ends = [J[joints[1]], J[joints[2]], T[_TIP_OF_CHAIN[name]]]
            for k, (j, end) in enumerate(zip(joints, ends)):
                d = _unit(end - J[j])
                if name != "thumb":
                    flex = _unit(np.cross(d, n))  # positive moves d toward n (volar)
                    abd = _unit(np.cross(flex, d))  # = n without its d component (polar)
                    spread = _SPREAD_SIDE[name] * radial
                    k_abd = np.sign(np.dot(c * np.cross(abd, d), spread)) or 1.0
                    axes[j - 1] = (flex, c * k_abd * abd, c * d)
                elif k == 0:  # CMC
                    ulnar = -radial
                    flex = _unit(np.cross(d, _perp(ulnar, d)))  # across the palm toward the pinky
                    palmar = _unit(np.cross(d, _perp(n, d)))  # out of the palm plane, volar
                    k_opp = np.sign(np.dot(c * np.cross(d, n), ulnar)) or 1.0  # pad from n toward ulnar
                    axes[j - 1] = (flex, palmar, c * k_opp * d)
                else:  # thumb MCP / IP: flex toward the thumb pad
                    tilt = math.radians(THUMB_PAD_TILT_DEG)
                    pad = _perp(math.cos(tilt) * n - math.sin(tilt) * radial, d)
                    flex = _unit(np.cross(d, pad))
                    abd = _unit(np.cross(flex, d))
                    axes[j - 1] = (flex, c * abd, c * d)
        self.axes_np = axes
        self.axes = torch.as_tensor(axes, dtype=dtype)
        table = dict(JOINT_LIMITS_DEG) if limits_deg is None else {**JOINT_LIMITS_DEG, **limits_deg}
        lim = torch.deg2rad(torch.tensor([table[nm] for nm in JOINT_NAMES], dtype=torch.float64)).to(dtype)
        self.lower, self.upper = lim[..., 0].contiguous(), lim[..., 1].contiguous()
        # finger-palm limits from this skeleton: 19 mm (x scale), but never within 2 mm of the rest pose's
        # own distance (a short proximal phalanx puts the middle phalanx closer to the palm at rest)
        P, tips = self.forward_kinematics(torch.zeros(1, 15, 3, dtype=dtype))
        rest = self._palm_distances(P, self._bones(P, tips))[0]
        self.palm_limits = torch.clamp(rest - PALM_REST_CLEARANCE, max=FINGER_PALM_LIMIT * self.scale)  # (5,)

    # -------------------------------------------------------------------------------- construction

    @classmethod
    def from_model(cls, model, side: str | None = None, tip_vertex_ids: Sequence[int] | None = None,
                   **kwargs) -> "PoseSampler":
        """Sampler for a hand model's mean-shape rest skeleton.

        Args:
            model: an :class:`~im2hands.hands.layer.HandModel`, or a ``smplx`` MANO module.
            side: ``"left"``/``"right"``; default: read from the model.
            tip_vertex_ids: fingertip vertex ids (thumb..pinky); default: the model's own.
        """
        mano = getattr(model, "mano", model)
        if side is None:
            side = getattr(model, "side", None) or ("right" if getattr(mano, "is_rhand", True) else "left")
        v = _np(mano.v_template)
        if hasattr(model, "rest_joints"):
            joints = _np(model.rest_joints)
        else:
            joints = _np(mano.J_regressor) @ v
        if tip_vertex_ids is None:
            tip_vertex_ids = getattr(model, "fingertip_vertex_ids", None)
        if tip_vertex_ids is None:
            from im2hands.hands.constants import MANO_FINGERTIP_VERTEX_IDS
            tip_vertex_ids = MANO_FINGERTIP_VERTEX_IDS
        tips = v[list(tip_vertex_ids)]
        return cls(joints, tips, side, **kwargs)

    # -------------------------------------------------------------------------------- angles -> pose

    def clamp(self, angles: Float[Tensor, "B 15 3"]) -> Float[Tensor, "B 15 3"]:
        """Clip angles to the limits."""
        lo, hi = self.lower.to(angles), self.upper.to(angles)
        return torch.maximum(torch.minimum(angles, hi), lo)

    def local_rotations(self, angles: Float[Tensor, "B 15 3"]) -> Float[Tensor, "B 15 3 3"]:
        """Per-joint local rotation matrices ``R_abd @ R_flex @ R_twist`` (rest frame)."""
        axes = self.axes.to(angles)  # (15, 3, 3)
        rot = axis_angle_to_matrix(axes * angles[..., None])  # (B, 15, 3, 3, 3): one per angle
        return rot[..., 1, :, :] @ rot[..., 0, :, :] @ rot[..., 2, :, :]

    def angles_to_pose(self, angles: Float[Tensor, "B 15 3"]) -> Float[Tensor, "B 45"]:
        """Anatomical angles ``(B, 15, 3)`` = ``[flex, abd, twist]`` (radians) -> MANO finger pose ``(B, 45)``.

        Zero angles give a zero pose. No clamping is applied (see :meth:`clamp`).
        """
        if angles.shape[-2:] != (15, 3):
            raise ValueError(f"expected angles of shape (B, 15, 3), got {tuple(angles.shape)}")
        return matrix_to_axis_angle(self.local_rotations(angles)).flatten(-2)

    def pose_from_angles(self, angles: Float[Tensor, "B 15 3"],
                         global_orient: Float[Tensor, "B 3"] | None = None) -> Float[Tensor, "B 48"]:
        """Full 48-value pose: ``global_orient`` (default zero) then :meth:`angles_to_pose`."""
        fingers = self.angles_to_pose(angles)
        if global_orient is None:
            global_orient = fingers.new_zeros(fingers.shape[:-1] + (3,))
        return torch.cat([global_orient.to(fingers), fingers], -1)

    # -------------------------------------------------------------------------------- kinematics

    def forward_kinematics(self, angles: Float[Tensor, "B 15 3"]) -> tuple[Tensor, Tensor]:
        """Posed rest skeleton (mean shape, no global rotation): joints ``(B, 16, 3)``, tips ``(B, 5, 3)``."""
        R = self.local_rotations(angles)  # (B, 15, 3, 3)
        J = torch.as_tensor(self.rest_joints, dtype=angles.dtype)
        Tp = torch.as_tensor(self.rest_tips, dtype=angles.dtype)
        B = angles.shape[0]
        G = [torch.eye(3, dtype=angles.dtype).expand(B, 3, 3)]
        P = [J[0].expand(B, 3)]
        for j in range(1, 16):
            p = self.parents[j]
            P.append(P[p] + (G[p] @ (J[j] - J[p])[:, None])[..., 0])
            G.append(G[p] @ R[:, j - 1])
        tips = []
        for name in ("thumb", "index", "middle", "ring", "pinky"):
            last = _CHAINS[name][2] + 1
            tips.append(P[last] + (G[last] @ (Tp[_TIP_OF_CHAIN[name]] - J[last])[:, None])[..., 0])
        return torch.stack(P, 1), torch.stack(tips, 1)

    @staticmethod
    def _bones(P: Tensor, tips: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Per finger its three bone capsules' ends ``(B, 3, 3)`` each (the last stops at 0.7 of
        the distal bone: the tip is round)."""
        seg = {}
        for name, rows in _CHAINS.items():
            js = [r + 1 for r in rows]
            end_tip = P[:, js[2]] + 0.7 * (tips[:, _TIP_OF_CHAIN[name]] - P[:, js[2]])
            seg[name] = (torch.stack([P[:, js[0]], P[:, js[1]], P[:, js[2]]], 1),
                         torch.stack([P[:, js[1]], P[:, js[2]], end_tip], 1))  # (B, 3, 3) each
        return seg

    @staticmethod
    def _palm_distances(P: Tensor, seg: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
        """``(B, 5)`` distance of each finger's two distal bones (index, middle, ring, pinky, thumb;
        ``seg`` from :meth:`_bones`) to the palm's segments (wrist to the index, middle, ring and
        pinky MCPs, and across them)."""
        palm0, palm1 = P[:, [0, 0, 0, 0, 1, 4, 10]], P[:, [1, 4, 10, 7, 4, 10, 7]]
        return torch.stack([_segment_distance(seg[f][0][:, 1:, None], seg[f][1][:, 1:, None], palm0[:, None],
                                              palm1[:, None]).flatten(1).min(1).values for f in _FINGERS], 1)

    def collision_distances(self, angles: Float[Tensor, "B 15 3"]) -> Tensor:
        """Cheap self-collision margins ``(B,)`` in metres: the smallest (distance - allowed distance)
        between bone capsules of different fingers (12.5 mm, 14 mm with the thumb, x scale), and
        between finger/thumb distal bones and the palm (:attr:`palm_limits`). Negative = the
        fingers (most likely) interpenetrate."""
        P, tips = self.forward_kinematics(angles)
        s = self.scale
        seg = self._bones(P, tips)
        margins = [(self._palm_distances(P, seg) - self.palm_limits.to(P)).min(1).values]
        for a in range(5):
            for b in range(a + 1, 5):
                fa, fb = _FINGERS[a], _FINGERS[b]
                lim = (0.014 if "thumb" in (fa, fb) else 0.0125) * s
                d = _segment_distance(seg[fa][0][:, :, None], seg[fa][1][:, :, None],
                                      seg[fb][0][:, None], seg[fb][1][:, None])  # (B, 3, 3)
                if "thumb" in (fa, fb):  # the thumb metacarpal sits in the thenar, next to the palm
                    d = d[:, 1:, :] if fa == "thumb" else d[:, :, 1:]
                margins.append(d.flatten(1).min(1).values - lim)
        return torch.stack(margins, 1).min(1).values

    # -------------------------------------------------------------------------------- sampling

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str = "random",
               noise: float = 1.0, reject: bool = True, max_rounds: int = 4) -> Float[Tensor, "n 15 3"]:
        """Random plausible anatomical angles ``(n, 15, 3)`` (radians), within the limits.

        Args:
            n: number of poses.
            generator: torch RNG (CPU); the same seed gives the same poses.
            mode: one of :data:`MODES`: ``"random"`` mixes every mode with free per-finger curls
                (everything between open and fist); the others are families around one gesture.
            noise: scale of the per-joint noise (1 = default).
            reject: redraw poses that fail the cheap capsule self-collision check
                (:meth:`collision_distances`) up to ``max_rounds`` times; leftovers are kept.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        angles = self._draw(n, generator, mode, noise)
        if reject:
            for _ in range(max_rounds):
                bad = self.collision_distances(angles) < 0
                if not bool(bad.any()):
                    break
                redo = self._draw(int(bad.sum()), generator, mode, noise)
                angles = angles.clone()
                angles[bad] = redo
        return angles

    def _draw(self, n: int, g: torch.Generator | None, mode: str, noise: float) -> Tensor:
        f64 = torch.float64

        def U(lo, hi, *shape):
            return lo + (hi - lo) * torch.rand(n, *shape, generator=g, dtype=f64)

        def N(std, *shape):
            return std * torch.randn(n, *shape, generator=g, dtype=f64)

        if mode == "random":
            choice = torch.multinomial(torch.tensor([0.40, 0.08, 0.12, 0.08, 0.08, 0.10, 0.08, 0.06], dtype=f64),
                                       n, replacement=True, generator=g)
            out = torch.empty(n, 15, 3, dtype=f64)
            for i, m in enumerate(MODES):
                sel = choice == i
                k = int(sel.sum())
                if k:
                    out[sel] = (self._free(k, g, noise) if m == "random" else self._draw(k, g, m, noise)).to(f64)
            return out.to(self.dtype)

        # latents: long-finger curl / hook (index, middle, ring, pinky), spread, thumb
        # (across, palmar, opposition, mcp, ip) in degrees for the thumb.
        if mode == "open":
            curl = U(-0.15, 0.08, 4)
            hook = U(-0.5, 0.5, 4)
            spread = U(-0.4, 0.9)
            th = torch.stack([U(-15, 5), U(-5, 15), U(0, 15), U(0, 15), U(-10, 15)], -1)
        elif mode == "spread":
            curl = U(-0.15, 0.15, 4)
            hook = U(-0.5, 0.5, 4)
            spread = U(0.7, 1.0)
            th = torch.stack([U(-20, -5), U(-15, 10), U(0, 15), U(0, 15), U(-10, 15)], -1)
        elif mode == "relaxed":
            base = torch.tensor([0.18, 0.24, 0.30, 0.36], dtype=f64)
            curl = base + U(-0.12, 0.15, 1) + N(0.05, 4)
            hook = U(-0.3, 0.6, 4)
            spread = U(-0.1, 0.5)
            th = torch.stack([U(0, 15), U(10, 30), U(10, 30), U(5, 25), U(5, 30)], -1)
        elif mode == "fist":  # thumb wrapped over the middle phalanges of index/middle
            curl = U(0.84, 0.96, 1) + N(0.03, 4)
            hook = U(-0.3, 0.3, 4)
            spread = U(-0.4, 0.0)
            th = torch.stack([U(-18, -5), U(32, 50), U(35, 55), U(40, 60), U(55, 80)], -1)
        elif mode == "pointing":
            curl = torch.cat([U(-0.1, 0.15, 1), U(0.84, 0.96, 1) + N(0.03, 3)], -1)
            hook = U(-0.3, 0.3, 4)
            spread = U(-0.3, 0.2)
            th = torch.stack([U(-18, -5), U(32, 50), U(35, 55), U(40, 60), U(55, 80)], -1)
        elif mode == "pinch":  # thumb tip to index tip; others extended (OK sign) or curled
            ok = torch.rand(n, 1, generator=g, dtype=f64) < 0.5
            curl = torch.cat([U(0.5, 0.6, 1),
                              torch.where(ok, U(-0.1, 0.2, 3), U(0.2, 0.8, 3))], -1)
            hook = torch.cat([U(-0.2, 0.2, 1), U(-0.4, 0.4, 3)], -1)
            spread = U(-0.2, 0.5)
            th = torch.stack([U(-19, -10), U(15, 45), U(10, 55), U(22, 38), U(60, 75)], -1)
        elif mode == "grasp":  # cylindrical power grasp, aperture from large to small
            curl = U(0.45, 0.8, 1) + N(0.03, 4)
            hook = U(-0.6, 0.2, 4)
            spread = U(-0.3, 0.1)
            th = torch.stack([U(-15, 5), U(30, 50), U(30, 50), U(10, 30), U(10, 35)], -1)
        else:
            raise AssertionError(mode)
        return self.angles_from_latents(curl, hook, spread, th, g, noise).to(self.dtype)

    def _free(self, n: int, g: torch.Generator | None, noise: float) -> Tensor:
        """Free mixture: a global curl with correlated per-finger deviations and random extended/flexed fingers."""
        f64 = torch.float64
        r = lambda *s: torch.rand(n, *s, generator=g, dtype=f64)  # noqa: E731
        base = -0.15 + 1.2 * r(1)
        curl = base + 0.22 * torch.randn(n, 4, generator=g, dtype=f64) + torch.tensor([-0.05, 0.0, 0.03, 0.06], dtype=f64)
        flip = r(4) < 0.15
        curl = torch.where(flip, torch.where(r(4) < 0.5, -0.1 + 0.2 * r(4), 0.8 + 0.25 * r(4)), curl)
        hook = -0.8 + 1.6 * r(4)
        spread = -0.4 + 1.4 * r()
        opp = r()
        tcurl = r()
        th = torch.stack([-20 + 35 * r(), -10 + 60 * opp, 5 + 50 * opp * r(),
                          55 * tcurl, -10 + 85 * (0.7 * tcurl + 0.3 * r())], -1)
        return self.angles_from_latents(curl, hook, spread, th, g, noise)

    def angles_from_latents(self, curl: Tensor, hook: Tensor, spread: Tensor, th: Tensor,
                            g: torch.Generator | None = None, noise: float = 1.0) -> Tensor:
        """Low-dimensional hand description -> angles ``(n, 15, 3)`` (radians, float64), with
        per-joint noise, the limits, soft PIP-DIP coupling and ordered abduction (adjacent
        fingers do not cross).

        Args:
            curl: ``(n, 4)`` per long finger (index, middle, ring, pinky): 0 straight, 1 fist,
                negative = hyperextended. MCP ~ 88 curl (1 - 0.35 hook), PIP ~ 105 curl (1 + 0.3 hook)
                degrees, DIP ~ 0.68 PIP.
            hook: ``(n, 4)`` in [-1, 1]: > 0 shifts flexion from the MCP to the PIP (hook fist),
                < 0 the other way (flat "table-top" fingers).
            spread: ``(n,)`` in [-0.4, 1]: fraction of each finger's maximal spread (less when curled).
            th: ``(n, 5)`` thumb degrees: CMC across-palm flexion, CMC palmar abduction,
                CMC opposition, MCP flexion, IP flexion.
            g: torch RNG for the noise; ``noise=0`` for none.
        """
        f64 = torch.float64
        n = curl.shape[0]
        deg = math.pi / 180
        N = lambda std, *s: noise * std * torch.randn(n, *s, generator=g, dtype=f64)  # noqa: E731
        curl = curl.clamp(-0.22, 1.1)
        cpos = curl.clamp(min=0)
        a = torch.zeros(n, 15, 3, dtype=f64)
        lo, hi = self.lower.to(f64), self.upper.to(f64)
        max_spread = torch.tensor([20.0, 12.0, 18.0, 25.0], dtype=f64)  # index, middle, ring, pinky
        radial_pos = []
        for i, name in enumerate(_LONG):
            mcp, pip, dip = _CHAINS[name]
            f_mcp = 88 * curl[:, i] * (1 - 0.35 * hook[:, i]) + N(5)
            f_pip = 105 * cpos[:, i] * (1 + 0.3 * hook[:, i]) + N(6)
            f_pip = f_pip.clamp(0, 110)
            f_dip = (0.68 * f_pip + N(6)).clamp(0, 80)  # soft PIP-DIP coupling
            abd = spread * max_spread[i] * (1 - 0.8 * cpos[:, i].clamp(max=1)) + N(3)
            a[:, mcp, 0], a[:, pip, 0], a[:, dip, 0] = f_mcp * deg, f_pip * deg, f_dip * deg
            a[:, mcp, 1] = (abd * deg).clamp(lo[mcp, 1], hi[mcp, 1])
            a[:, mcp, 2] = N(3) * deg
            a[:, pip, 2], a[:, dip, 2] = N(1.5) * deg, N(1.5) * deg
            radial_pos.append(_SPREAD_SIDE[name] * a[:, mcp, 1])
        # adjacent fingers must not cross: radial position index >= middle >= ring >= pinky
        # (each rel. to its own rest direction), with a small tolerance.
        tol = 4 * deg
        rp = torch.stack(radial_pos, 1)  # (n, 4) radial-ward angle
        mid = rp[:, 1:2]
        rp0 = torch.maximum(rp[:, 0], rp[:, 1] - tol)
        rp2 = torch.minimum(rp[:, 2], rp[:, 1] + tol)
        rp3 = torch.minimum(rp[:, 3], rp2 + tol)
        rp = torch.stack([rp0, mid[:, 0], rp2, rp3], 1)
        for i, name in enumerate(_LONG):
            a[:, _CHAINS[name][0], 1] = _SPREAD_SIDE[name] * rp[:, i]
        cmc, tmcp, tip = _CHAINS["thumb"]
        a[:, cmc, 0] = (th[:, 0] + N(4)) * deg
        a[:, cmc, 1] = (th[:, 1] + N(4)) * deg
        a[:, cmc, 2] = (th[:, 2] + N(4)) * deg
        a[:, tmcp, 0] = (th[:, 3] + N(5)) * deg
        a[:, tmcp, 1], a[:, tmcp, 2] = N(3) * deg, N(3) * deg
        a[:, tip, 0] = (th[:, 4] + N(6)) * deg
        a[:, tip, 1], a[:, tip, 2] = N(1.5) * deg, N(1.5) * deg
        return torch.maximum(torch.minimum(a, hi), lo)


def pose_from_angles(sampler: PoseSampler, angles: Float[Tensor, "B 15 3"],
                     global_orient: Float[Tensor, "B 3"] | None = None) -> Float[Tensor, "B 48"]:
    """Functional form of :meth:`PoseSampler.pose_from_angles`."""
    return sampler.pose_from_angles(angles, global_orient)
