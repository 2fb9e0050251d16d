"""Two interacting hands: named interaction templates, placed in contact without interpenetration.

A *template* (:data:`TEMPLATES`) gives both hands' anatomical finger angles
(:mod:`im2hands.hands.pose_sampler`), the left hand's rotation relative to the right one, an
anchor (which point of one hand goes next to which point of the other) and a contact
direction. :func:`sample_interaction` draws a random variant (angle jitter, a relative
rotation jitter of 5-20 degrees, anchor offsets, optionally the two hands' roles swapped by
mirroring the whole scene), poses both meshes with the hand model, and then moves the left
hand along the contact direction to the position where the two meshes just touch: the
outermost offset whose interpenetration volume reaches a small target
(``contact_fraction * max_penetration_cm3``). Because the meshes come from the actual shape
coefficients, the placement adapts to hand size.

Interpenetration along a direction is computed exactly on a line grid by
:mod:`im2hands.hands.overlap`; pictures of pairs: :mod:`im2hands.hands.interaction_pictures`;
timing of the templates: :func:`im2hands.benchmarks.templates.time_templates`.

Frames: the "pair" frame is the right hand's model frame rotated by the template (metres),
re-centred so that the mean of the 42 keypoints is at the origin. Poses follow the hand layer
(:class:`~im2hands.hands.layer.HandModel`): ``pose (48)`` axis-angle with the global rotation
first, ``trans (3)`` added to the vertices. Use :func:`rotate_pair` to rotate a whole pair.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from im2hands.geometry.frames import CM3_PER_M3
from im2hands.geometry.rotations import axis_angle_to_matrix_np
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.geometry.rotations import matrix_to_axis_angle_np
from im2hands.hands.interaction_templates import _BUILDERS, _M, _Draw, _shaped, _t_grasp_fingers
from im2hands.hands.overlap import GRID_SPACING, overlap_profile
from im2hands.hands.overlap import to_numpy as _to_np
from im2hands.hands.pose_sampler import PoseSampler
from im2hands.typing import Float, Tensor

__all__ = [
    "TEMPLATES",
    "TwoHandPose",
    "sample_interaction",
    "pose_pair",
    "rotate_pair",
]

TEMPLATES: tuple[str, ...] = (
    "interlocked_fingers",
    "palms_together",
    "grasp_fingers",
    "fists_touching",
    "crossed_index_fingers",
    "hand_covering",
    "random_pair",
)
"""Names accepted by :func:`sample_interaction`."""




# ================================================================================================
# Results


@dataclass
class TwoHandPose:
    """Two hands in contact, in the pair frame (metres). Hand axis: ``LEFT = 0``, ``RIGHT = 1``."""

    pose: Float[Tensor, "2 48"]
    """Axis-angle poses (global rotation first), as for :class:`~im2hands.hands.layer.HandModel`."""
    shape: Float[Tensor, "2 10"]
    trans: Float[Tensor, "2 3"]
    template: str
    penetration_cm3: float
    """Interpenetration volume at the placement (line-grid estimate, cm^3)."""
    contact_gap_m: float
    """Smallest distance between the hands (m): 0 when they touch/overlap, else the smallest
    vertex-to-vertex distance."""
    swapped: bool = False
    """Roles mirrored: the left hand plays the template's "right" role (e.g. it is the grasper)."""
    angles: Float[Tensor, "2 15 3"] | None = None
    """Anatomical finger angles (radians) of each hand."""

    def hand(self, side: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(pose (48,), shape (10,), trans (3,))`` of hand ``LEFT`` or ``RIGHT``."""
        return self.pose[side], self.shape[side], self.trans[side]


_SAMPLERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _sampler(model) -> PoseSampler:
    s = _SAMPLERS.get(model)
    if s is None:
        s = PoseSampler.from_model(model)
        _SAMPLERS[model] = s
    return s


def pose_pair(pair: TwoHandPose, right_model, left_model) -> dict[str, object]:
    """Forward both hands of a pair: ``{"left": HandOutput, "right": HandOutput}`` (batch 1)."""
    out = {}
    with torch.no_grad():
        for side, model in ((LEFT, left_model), (RIGHT, right_model)):
            dev, dt = model.rest_joints.device, model.rest_joints.dtype
            p, b, t = (x[side][None].to(dev, dt) for x in (pair.pose, pair.shape, pair.trans))
            out["left" if side == LEFT else "right"] = model(p, b, t)
    return out


def rotate_pair(pair: TwoHandPose, rotvec, right_model, left_model, translation=None) -> TwoHandPose:
    """Rotate (about the pair frame's origin) and translate a whole pair rigidly.

    A hand model rotates about its root joint ``J0`` (which depends on the shape), so the
    translation is corrected: ``trans' = R (J0 + trans) - J0 + translation``.
    """
    R = axis_angle_to_matrix_np(np.asarray(_to_np(rotvec), dtype=np.float64))
    t_extra = np.zeros(3) if translation is None else _to_np(translation)
    pose, trans = pair.pose.clone(), pair.trans.clone()
    for side, model in ((LEFT, left_model), (RIGHT, right_model)):
        with torch.no_grad():
            zero = torch.zeros(1, 48, dtype=model.rest_joints.dtype, device=model.rest_joints.device)
            j0 = _to_np(model(zero, pair.shape[side][None].to(zero), torch.zeros_like(zero[:, :3])).joints[0, 0])
        g = axis_angle_to_matrix_np(_to_np(pair.pose[side, :3]))
        pose[side, :3] = torch.as_tensor(matrix_to_axis_angle_np(R @ g), dtype=pose.dtype)
        trans[side] = torch.as_tensor(R @ (j0 + _to_np(pair.trans[side])) - j0 + t_extra, dtype=trans.dtype)
    return TwoHandPose(pose, pair.shape.clone(), trans, pair.template, pair.penetration_cm3,
                       pair.contact_gap_m, pair.swapped, pair.angles)


# ================================================================================================
# Placement


def _forward(model, angles: Tensor, R: np.ndarray, shape: Tensor):
    s = _sampler(model)
    dt = model.rest_joints.dtype
    go = torch.as_tensor(matrix_to_axis_angle_np(R), dtype=dt)[None]
    pose = s.pose_from_angles(angles[None].to(dt), go)
    with torch.no_grad():
        out = model(pose, shape[None].to(dt), torch.zeros(1, 3, dtype=dt))
    return pose[0], out


def sample_interaction(name: str, right_model, left_model, shapes=None, generator: torch.Generator | None = None,
                       max_penetration_cm3: float = 0.5, contact_fraction: float = 0.5,
                       swap: bool | None = None, spacing: float = GRID_SPACING, max_tries: int = 6) -> TwoHandPose:
    """Draw one two-hand interaction of template ``name``, the hands in contact.

    Args:
        name: one of :data:`TEMPLATES`.
        right_model, left_model: :class:`~im2hands.hands.layer.HandModel` of each side.
        shapes: ``(2, 10)`` shape coefficients (``LEFT = 0``, ``RIGHT = 1``); default zeros.
        generator: torch RNG (CPU); the same seed gives the same pair.
        max_penetration_cm3: the largest allowed interpenetration volume.
        contact_fraction: the hands are placed where the interpenetration volume reaches this
            fraction of ``max_penetration_cm3`` (a light contact that leaves a margin for
            estimator noise); 0 gives a touching contact with (near) zero overlap.
        swap: mirror the scene so that the left hand plays the right hand's role (e.g. the
            grasper); ``None``: at random for asymmetric templates.
        spacing: line spacing of the overlap estimator (m).
        max_tries: redraws when no contact position within the limit exists.

    Returns:
        :class:`TwoHandPose` in the pair frame.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown interaction template {name!r}; expected one of {TEMPLATES}")
    dt = right_model.rest_joints.dtype
    shapes = torch.zeros(2, 10, dtype=dt) if shapes is None else torch.as_tensor(shapes).to(dt).reshape(2, 10)
    r = _Draw(generator)
    target = contact_fraction * max_penetration_cm3 / CM3_PER_M3
    limit = max_penetration_cm3 / CM3_PER_M3
    s_right = _sampler(right_model)
    result = None
    for _ in range(max_tries):
        swapped = r.coin() if swap is None else bool(swap)
        if name == "grasp_fingers":  # needs the shaped skeletons: A's fingers close around B's
            models = (right_model, left_model) if not swapped else (left_model, right_model)
            sides = (RIGHT, LEFT) if not swapped else (LEFT, RIGHT)
            info_a = _shaped(models[0], shapes[sides[0]], mirror=swapped)
            info_b = _shaped(models[1], shapes[sides[1]], mirror=not swapped)
            spec = _t_grasp_fingers(info_a, r, info_b)
        else:
            spec = _BUILDERS[name](s_right, r, shapes)
        # actual hands: which role each plays, its rotation and the left hand's move direction
        if not swapped:
            ang_r, ang_l, rot_r, rot_l = spec.angles_a, spec.angles_b, np.eye(3), spec.rot_b
        else:
            ang_r, ang_l = spec.angles_b, spec.angles_a
            rot_r, rot_l = _M @ spec.rot_b @ _M, np.eye(3)
        pose_r, out_r = _forward(right_model, ang_r, rot_r, shapes[RIGHT])
        pose_l, out_l = _forward(left_model, ang_l, rot_l, shapes[LEFT])
        kr, kl = _to_np(out_r.keypoints[0]), _to_np(out_l.keypoints[0])
        ka, kb = (kr, kl) if not swapped else (kl @ _M, kr @ _M)  # role-frame keypoints
        offset = spec.offset + (spec.offset_fn(ka, kb) if spec.offset_fn is not None else 0.0)
        if not swapped:
            t0 = spec.anchor_a(kr) + offset - spec.anchor_b(kl)
            d = spec.direction
        else:  # mirrored scene: the right hand is role B, the left hand role A
            t0 = _M @ spec.anchor_b(kr @ _M) - _M @ offset - _M @ spec.anchor_a(kl @ _M)
            d = -(_M @ spec.direction)
        vr, fr = _to_np(out_r.vertices[0]), _to_np(out_r.faces)
        vl, fl = _to_np(out_l.vertices[0]) + t0, _to_np(out_l.faces)
        if spec.lateral is None:
            prof = overlap_profile(vr, fr, vl, fl, d, spacing, generator)
            shift_vec = np.zeros(3)
        else:  # deepest approach over a few sideways shifts (e.g. fingers into the gaps)
            lat = spec.lateral if not swapped else _M @ spec.lateral
            best = None
            for shift, pr in overlap_profile(vr, fr, vl, fl, d, spacing, generator, lat, spec.lateral_shifts):
                if pr.empty:
                    continue
                st = pr.last_crossing(target)
                st = pr.last_crossing(pr.max_volume) if st is None else st
                if best is None or st < best[0]:
                    best = (st, shift, pr)
            if best is None:
                continue
            _, shift, prof = best
            e1 = lat - np.dot(lat, d) * d
            shift_vec = shift * e1 / np.linalg.norm(e1)
            vl = vl + shift_vec
            t0 = t0 + shift_vec
        if prof.empty:
            continue
        if not spec.press:
            s_star = prof.last_crossing(target)
            if s_star is None:  # never reaches the target: deepest contact that stays below it
                s_star = prof.last_crossing(prof.max_volume)
        else:
            s_star = prof.first_reach(0.0, True, target)
            if s_star is None or s_star > 0.03:
                s_star = None
            elif s_star <= 0.0:  # overlapping at the anchor: back off against the direction
                s_star = prof.first_exit(0.0, False, target)
                if s_star is not None and s_star < -0.01:
                    s_star = None
            if s_star is None:
                continue
        vol = float(prof(s_star))
        if vol > limit:
            continue
        trans_l = t0 + s_star * d
        result = (pose_r, pose_l, trans_l, vol, ang_r, ang_l, swapped, vr, vl + s_star * d)
        break
    if result is None:
        raise RuntimeError(f"could not place template {name!r} in {max_tries} tries")
    pose_r, pose_l, trans_l, vol, ang_r, ang_l, swapped, vr, vl = result
    gap = 0.0
    if vol <= 0.0:
        from scipy.spatial import cKDTree

        gap = float(cKDTree(vr).query(vl, k=1)[0].min())
    centre = 0.5 * (kr.mean(0) + (kl + trans_l).mean(0))
    trans = torch.as_tensor(np.stack([trans_l - centre, -centre]), dtype=dt)
    pose = torch.stack([pose_l, pose_r]).to(dt)
    angles = torch.stack([ang_l, ang_r]).to(dt)
    return TwoHandPose(pose, shapes.clone(), trans, name, vol * CM3_PER_M3, gap, swapped, angles)
