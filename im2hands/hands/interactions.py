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

Interpenetration along a direction is computed exactly for a set of parallel lines (a "line
grid"): both closed meshes are cut by lines parallel to the direction (spacing 2 mm, only
where the two silhouettes overlap); each line gives 1-D inside intervals of each mesh, and the
overlap volume as a function of the offset ``s`` is a sum of piecewise-linear trapezoids,
``V(s) = h^2 sum_k w_k max(0, s - c_k)`` (:class:`OverlapProfile`). One cut per mesh gives
``V`` for *every* offset, so no bisection with repeated inside tests is needed.
:func:`penetration_volume` is the independent Monte-Carlo estimate (points in the overlap of the
bounding boxes, inside both meshes) used to check it.

Frames: the "pair" frame is the right hand's model frame rotated by the template (metres),
re-centred so that the mean of the 42 keypoints is at the origin. Poses follow the hand layer
(:class:`~im2hands.hands.layer.HandModel`): ``pose (48)`` axis-angle with the global rotation
first, ``trans (3)`` added to the vertices. Use :func:`rotate_pair` to rotate a whole pair.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from im2hands.hands.constants import LEFT, RIGHT
from im2hands.hands.pose_sampler import PoseSampler, random_rotation
from im2hands.typing import Float, Tensor

__all__ = [
    "TEMPLATES",
    "TwoHandPose",
    "OverlapProfile",
    "overlap_profile",
    "penetration_volume",
    "penetration_volume_grid",
    "sample_interaction",
    "pose_pair",
    "rotate_pair",
    "render_pair",
    "render_gallery",
    "time_templates",
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

GRID_SPACING: float = 0.002
"""Line spacing (m) of the line-grid overlap estimator."""

_M = np.diag([-1.0, 1.0, 1.0])  # the x-mirror
M3_TO_CM3 = 1e6

# standard keypoint ids
_WRIST, _MCP, _PIP, _DIP, _TIP = 0, (5, 9, 13, 17), (6, 10, 14, 18), (7, 11, 15, 19), (4, 8, 12, 16, 20)


# ================================================================================================
# Overlap of two closed meshes along a direction


@dataclass
class OverlapProfile:
    """Interpenetration volume ``V(s)`` (m^3) of mesh B shifted by ``s * direction`` with mesh A.

    ``V(s) = sum_k w_k max(0, s - c_k)`` with sorted breakpoints ``c`` (m) and weights ``w`` (m^2).
    Exact for the sampled lines (midpoint rule over the silhouette overlap).
    """

    breaks: np.ndarray
    weights: np.ndarray
    direction: np.ndarray
    spacing: float
    num_lines: int
    _W: np.ndarray = field(init=False, repr=False)
    _C: np.ndarray = field(init=False, repr=False)
    _Vb: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.breaks, kind="stable")
        self.breaks, self.weights = self.breaks[order], self.weights[order]
        self._W = np.concatenate([[0.0], np.cumsum(self.weights)])  # sum of w_k, k < j
        self._C = np.concatenate([[0.0], np.cumsum(self.weights * self.breaks)])
        self._Vb = self.breaks * self._W[:-1] - self._C[:-1]  # V at each breakpoint

    @property
    def empty(self) -> bool:
        """No line crosses both meshes: no offset along the direction brings them into contact."""
        return len(self.breaks) == 0

    def __call__(self, s) -> np.ndarray:
        """``V(s)`` in m^3 (array-like ``s`` in metres)."""
        s = np.asarray(s, dtype=np.float64)
        j = np.searchsorted(self.breaks, s, side="left")
        return np.maximum(s * self._W[j] - self._C[j], 0.0)

    @property
    def max_volume(self) -> float:
        return float(self._Vb.max()) if len(self._Vb) else 0.0

    @property
    def first_touch(self) -> float:
        """Largest offset at which the meshes still overlap (coming from ``+inf``)."""
        return float(self.breaks[-1]) if len(self.breaks) else -math.inf

    def _solve(self, j: int, target: float) -> float:
        """``s`` in the linear piece just after breakpoint ``j`` where ``V(s) = target``."""
        W, C = self._W[j + 1], self._C[j + 1]
        if abs(W) < 1e-300:
            return float(self.breaks[j])
        return float((target + C) / W)

    def last_crossing(self, target: float) -> float | None:
        """``sup {s : V(s) >= target}``: the contact offset when coming from ``s = +inf``.
        ``None`` if ``V`` never reaches ``target``."""
        idx = np.nonzero(self._Vb >= target)[0]
        if len(idx) == 0:
            return None
        j = int(idx[-1])
        if j == len(self.breaks) - 1:
            return float(self.breaks[j])
        return min(max(self._solve(j, target), float(self.breaks[j])), float(self.breaks[j + 1]))

    def first_reach(self, s0: float, forward: bool, target: float) -> float | None:
        """Moving from ``s0`` (increasing ``s`` if ``forward``), the first ``s`` with ``V(s) >= target``."""
        if self(s0) >= target:
            return s0
        c, V = self.breaks, self._Vb
        if forward:
            idx = np.nonzero((c > s0) & (V >= target))[0]
            if len(idx) == 0:
                return None
            j = int(idx[0])  # V crosses target between max(s0, c[j-1]) and c[j], linearly
            return min(max(self._solve(j - 1, target) if j > 0 else float(c[j]), s0), float(c[j]))
        idx = np.nonzero((c < s0) & (V >= target))[0]
        if len(idx) == 0:
            return None
        j = int(idx[-1])
        hi = float(c[j + 1]) if j + 1 < len(c) else s0
        return max(min(self._solve(j, target), min(hi, s0)), float(c[j]))

    def first_exit(self, s0: float, forward: bool, target: float) -> float | None:
        """Moving from ``s0``, the first ``s`` with ``V(s) <= target`` (``s0`` itself if already)."""
        if self(s0) <= target:
            return s0
        c, V = self.breaks, self._Vb
        if forward:
            idx = np.nonzero((c > s0) & (V <= target))[0]
            if len(idx) == 0:
                return None
            j = int(idx[0])
            return min(max(self._solve(j - 1, target), s0), float(c[j]))
        idx = np.nonzero((c < s0) & (V <= target))[0]
        if len(idx) == 0:
            return None
        j = int(idx[-1])
        hi = float(c[j + 1]) if j + 1 < len(c) else s0
        return max(min(self._solve(j, target), min(hi, s0)), float(c[j]))


def _basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``e1, e2`` with ``(e1, e2, u)`` right-handed orthonormal."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, u)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _line_intervals(p2: np.ndarray, depth: np.ndarray, faces: np.ndarray, origin: np.ndarray,
                    h: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inside intervals of a closed, outward-oriented mesh along the lines of a grid.

    Line ``(ix, iy)`` passes through ``origin + h * (ix, iy)`` in the projection plane and runs
    along the projection direction; ``depth`` is each vertex's coordinate along it.

    Returns:
        ``(line, z0, z1)``: line ids ``ix * ny + iy`` and the interval ends (``z0 < z1``).
    """
    tri = p2[faces]  # (F, 3, 2)
    lo, hi = tri.min(1), tri.max(1)
    ix0 = np.maximum(np.ceil((lo[:, 0] - origin[0]) / h), 0).astype(np.int64)
    ix1 = np.minimum(np.floor((hi[:, 0] - origin[0]) / h), nx - 1).astype(np.int64)
    iy0 = np.maximum(np.ceil((lo[:, 1] - origin[1]) / h), 0).astype(np.int64)
    iy1 = np.minimum(np.floor((hi[:, 1] - origin[1]) / h), ny - 1).astype(np.int64)
    wx, wy = np.maximum(ix1 - ix0 + 1, 0), np.maximum(iy1 - iy0 + 1, 0)
    cnt = wx * wy
    keep = np.nonzero(cnt)[0]
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if len(keep) == 0:
        return empty
    cnt = cnt[keep]
    t = np.repeat(keep, cnt)  # candidate (triangle, pixel) pairs
    local = np.arange(len(t)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ix = ix0[t] + local % wx[t]
    iy = iy0[t] + local // wx[t]
    px, py = origin[0] + h * ix, origin[1] + h * iy
    a, b, c = tri[t, 0], tri[t, 1], tri[t, 2]
    # edge functions: e_a is opposite vertex a (twice the signed area of (p, b, c)), etc.
    ea = (c[:, 0] - b[:, 0]) * (py - b[:, 1]) - (c[:, 1] - b[:, 1]) * (px - b[:, 0])
    eb = (a[:, 0] - c[:, 0]) * (py - c[:, 1]) - (a[:, 1] - c[:, 1]) * (px - c[:, 0])
    ec = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])
    inside = ((ea > 0) & (eb > 0) & (ec > 0)) | ((ea < 0) & (eb < 0) & (ec < 0))
    if not inside.any():
        return empty
    t, ea, eb, ec = t[inside], ea[inside], eb[inside], ec[inside]
    area = ea + eb + ec
    d = depth[faces[t]]  # (H, 3)
    z = (ea * d[:, 0] + eb * d[:, 1] + ec * d[:, 2]) / area
    sgn = np.where(area > 0, -1, 1)  # normal along +u: leaving the mesh when moving along +u
    line = ix[inside] * ny + iy[inside]
    order = np.lexsort((z, line))
    line, z, sgn = line[order], z[order], sgn[order]
    # drop lines whose crossings do not balance (a grazing hit lost to rounding)
    uniq, inv = np.unique(line, return_inverse=True)
    total = np.bincount(inv, weights=sgn)
    ok = total[inv] == 0
    if not ok.all():
        line, z, sgn = line[ok], z[ok], sgn[ok]
    wind = np.cumsum(sgn)  # every kept line sums to zero, so this is the per-line winding number
    k = np.nonzero((line[:-1] == line[1:]) & (wind[:-1] > 0))[0]
    return line[k], z[k], z[k + 1]


def _pair_profile(la, a0, a1, lb, b0, b1, nlines: int, spacing: float, u: np.ndarray) -> OverlapProfile:
    """Profile from the inside intervals of A and B on a common set of lines (ids sorted)."""
    empty = OverlapProfile(np.zeros(0), np.zeros(0), u, spacing, nlines)
    if len(la) == 0 or len(lb) == 0:
        return empty
    nb = np.bincount(lb, minlength=nlines)
    start_b = np.cumsum(nb) - nb
    rep = nb[la]
    ia = np.repeat(np.arange(len(la)), rep)
    if len(ia) == 0:
        return empty
    within = np.arange(len(ia)) - np.repeat(np.cumsum(rep) - rep, rep)
    ib = start_b[la[ia]] + within  # lb is sorted by line
    A0, A1, B0, B1 = a0[ia], a1[ia], b0[ib], b1[ib]
    breaks = np.concatenate([A0 - B1, A0 - B0, A1 - B1, A1 - B0])
    one = np.full(len(A0), spacing * spacing)
    return OverlapProfile(breaks, np.concatenate([one, -one, -one, one]), u, spacing, nlines)


def overlap_profile(verts_a, faces_a, verts_b, faces_b, direction, spacing: float = GRID_SPACING,
                    generator: torch.Generator | None = None, lateral=None,
                    shifts=(0.0,)) -> OverlapProfile | list[tuple[float, OverlapProfile]]:
    """Overlap volume of B moved by ``s * direction`` with A, for every ``s`` (see module doc).

    Args:
        verts_a, faces_a, verts_b, faces_b: two closed, outward-oriented triangle meshes
            (numpy or torch; metres).
        direction: ``(3,)`` the direction B moves along (normalised here).
        spacing: line spacing (m).
        generator: torch RNG for the grid's sub-cell offset (default: fixed offset 0.5).
        lateral, shifts: optionally, a direction ``lateral`` (its part perpendicular to
            ``direction`` is used) and sideways shifts of B along it (m, rounded to multiples of
            ``spacing``); then a list of ``(shift, profile)`` is returned, one per shift, for
            about the price of one (the lines are cut once).
    """
    va, vb = _to_np(verts_a), _to_np(verts_b)
    fa, fb = np.asarray(_to_np(faces_a), np.int64), np.asarray(_to_np(faces_b), np.int64)
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    if lateral is None:
        e1, e2 = _basis(u)
        ks = np.zeros(1, dtype=np.int64)
    else:
        e1 = np.asarray(lateral, dtype=np.float64) - np.dot(lateral, u) * u
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(u, e1)
        ks = np.unique(np.round(np.asarray(shifts, dtype=np.float64) / spacing).astype(np.int64))
    P = np.stack([e1, e2], 1)  # (3, 2)
    pa, pb = va @ P, vb @ P
    # lattice covering A and every shifted B's overlap with A
    lo = np.maximum(pa.min(0), pb.min(0) + np.array([ks.min() * spacing, 0.0]))
    hi = np.minimum(pa.max(0), pb.max(0) + np.array([ks.max() * spacing, 0.0]))
    if lateral is None:
        lo_b, hi_b = lo, hi
    else:  # B's lines are cut once, unshifted: the lattice must also cover B's silhouette
        lo_b, hi_b = np.minimum(lo, pb.min(0)), np.maximum(hi, pb.max(0))

    def finish(profiles):
        if lateral is None:
            return profiles[0][1]
        return profiles

    if np.any(hi <= lo):
        return finish([(float(k * spacing), OverlapProfile(np.zeros(0), np.zeros(0), u, spacing, 0)) for k in ks])
    jitter = 0.5 if generator is None else torch.rand(2, generator=generator, dtype=torch.float64).numpy()
    # lattice origin: aligned with the overlap's lower corner, extended by whole cells to B's box
    base = lo + spacing * np.broadcast_to(jitter, (2,))
    extra = np.ceil(np.maximum(base - lo_b, 0.0) / spacing)
    origin = base - extra * spacing
    nx = int(np.floor((hi_b[0] - origin[0]) / spacing)) + 1
    ny = int(np.floor((hi_b[1] - origin[1]) / spacing)) + 1
    la, a0, a1 = _line_intervals(pa, va @ u, fa, origin, spacing, nx, ny)
    lb, b0, b1 = _line_intervals(pb, vb @ u, fb, origin, spacing, nx, ny)
    out = []
    for k in ks:
        ix = lb // ny + k
        ok = (ix >= 0) & (ix < nx)
        out.append((float(k * spacing),
                    _pair_profile(la, a0, a1, lb[ok] + k * ny, b0[ok], b1[ok], nx * ny, spacing, u)))
    return finish(out)


def penetration_volume_grid(verts_a, faces_a, verts_b, faces_b, direction=(0.0, 0.0, 1.0),
                            spacing: float = GRID_SPACING, generator: torch.Generator | None = None) -> float:
    """Interpenetration volume (cm^3) of two closed meshes, by the line grid (see :func:`overlap_profile`)."""
    prof = overlap_profile(verts_a, faces_a, verts_b, faces_b, direction, spacing, generator)
    return float(prof(0.0)) * M3_TO_CM3


def penetration_volume(verts_a, faces_a, verts_b, faces_b, n: int = 20000,
                       generator: torch.Generator | None = None) -> float:
    """Monte-Carlo interpenetration volume (cm^3) of two closed meshes (metres).

    ``n`` points uniform in the intersection of the two bounding boxes; the volume is the box
    volume times the fraction inside both meshes (winding-number inside test,
    :func:`im2hands.geometry.inside.inside_mesh`). Standard error about
    ``sqrt(V * box_volume / n)``.
    """
    from im2hands.geometry.inside import inside_mesh

    va, vb = _to_np(verts_a), _to_np(verts_b)
    fa, fb = np.asarray(_to_np(faces_a), np.int64), np.asarray(_to_np(faces_b), np.int64)
    lo, hi = np.maximum(va.min(0), vb.min(0)), np.minimum(va.max(0), vb.max(0))
    if np.any(hi <= lo):
        return 0.0
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64).numpy()
    pts = lo + u * (hi - lo)
    ins = inside_mesh(va, fa, pts)
    if ins.any():
        ins[ins] = inside_mesh(vb, fb, pts[ins])
    return float(np.prod(hi - lo) * ins.mean() * M3_TO_CM3)


def _to_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy().astype(np.float64) if x.is_floating_point() else x.numpy()
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind == "f" else x


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
    R = _rotmat(np.asarray(_to_np(rotvec), dtype=np.float64))
    t_extra = np.zeros(3) if translation is None else _to_np(translation)
    pose, trans = pair.pose.clone(), pair.trans.clone()
    for side, model in ((LEFT, left_model), (RIGHT, right_model)):
        with torch.no_grad():
            zero = torch.zeros(1, 48, dtype=model.rest_joints.dtype, device=model.rest_joints.device)
            j0 = _to_np(model(zero, pair.shape[side][None].to(zero), torch.zeros_like(zero[:, :3])).joints[0, 0])
        g = _rotmat(_to_np(pair.pose[side, :3]))
        pose[side, :3] = torch.as_tensor(_rotvec(R @ g), dtype=pose.dtype)
        trans[side] = torch.as_tensor(R @ (j0 + _to_np(pair.trans[side])) - j0 + t_extra, dtype=trans.dtype)
    return TwoHandPose(pose, pair.shape.clone(), trans, pair.template, pair.penetration_cm3,
                       pair.contact_gap_m, pair.swapped, pair.angles)


# ================================================================================================
# Templates


def _rotmat(rotvec: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(rotvec))
    if th < 1e-12:
        return np.eye(3)
    k = rotvec / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * (K @ K)


def _rotvec(R: np.ndarray) -> np.ndarray:
    from im2hands.geometry.rotations import matrix_to_axis_angle

    return matrix_to_axis_angle(torch.as_tensor(R, dtype=torch.float64)).numpy()


def _rot(axis: str, deg: float) -> np.ndarray:
    v = {"x": (1.0, 0, 0), "y": (0, 1.0, 0), "z": (0, 0, 1.0)}[axis]
    return _rotmat(np.asarray(v) * math.radians(deg))


@dataclass
class _Spec:
    """One drawn template, in the role frame (role A = the right hand at rest orientation)."""

    angles_a: Tensor  # (15, 3) radians
    angles_b: Tensor
    rot_b: np.ndarray  # (3, 3) rotation of hand B (A is not rotated)
    anchor_a: Callable[[np.ndarray], np.ndarray]  # keypoints (21, 3) of A -> point
    anchor_b: Callable[[np.ndarray], np.ndarray]
    offset: np.ndarray  # B's anchor point = A's anchor point + offset (before the contact move)
    direction: np.ndarray  # B moves along this to make contact (away from A = +)
    press: bool = False  # False: come from +inf; True: from the anchor, move along +direction
    offset_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (kA, kB) -> extra offset
    lateral: np.ndarray | None = None  # also try sideways shifts of B along this; keep the deepest
    lateral_shifts: tuple[float, ...] = (-0.009, -0.006, -0.003, 0.0, 0.003, 0.006, 0.009)
    name: str = ""


class _Draw:
    """Random helpers bound to a generator."""

    def __init__(self, g: torch.Generator | None) -> None:
        self.g = g

    def u(self, lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(1, *shape, generator=self.g, dtype=torch.float64)

    def f(self, lo: float, hi: float) -> float:
        return float(self.u(lo, hi)[0])

    def coin(self, p: float = 0.5) -> bool:
        return bool(torch.rand(1, generator=self.g)[0] < p)

    def rot_jitter(self, max_deg: float) -> np.ndarray:
        return _rotmat(random_rotation(1, self.g, torch.float64, math.radians(max_deg))[0].numpy())


def _palm_centre(k: np.ndarray) -> np.ndarray:
    return (k[_WRIST] + k[list(_MCP)].sum(0)) / 5.0


def _mcp_centre(k: np.ndarray) -> np.ndarray:
    return k[list(_MCP)].mean(0)


def _hand(s: PoseSampler, r: _Draw, curl, hook, spread, thumb, noise: float = 1.0) -> Tensor:
    curl = torch.as_tensor(curl, dtype=torch.float64).reshape(1, 4)
    hook = torch.as_tensor(hook, dtype=torch.float64).reshape(1, 4)
    spread = torch.as_tensor(spread, dtype=torch.float64).reshape(1)
    thumb = torch.as_tensor(thumb, dtype=torch.float64).reshape(1, 5)
    return s.angles_from_latents(curl, hook, spread, thumb, r.g, noise)[0]


def _flat_thumb(r: _Draw) -> list[float]:
    return [r.f(-20, -8), r.f(-12, 0), r.f(0, 10), r.f(0, 12), r.f(-5, 10)]


def _t_palms_together(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    def hand():
        return _hand(s, r, r.u(-0.12, 0.06, 4) + r.u(-0.02, 0.05), r.u(-0.3, 0.3, 4), r.f(-0.3, 0.25), _flat_thumb(r))

    return _Spec(
        hand(), hand(), r.rot_jitter(8.0) @ _rot("z", 180.0), _palm_centre, _palm_centre,
        np.array([r.f(-0.012, 0.012), 0.0, r.f(-0.006, 0.006)]), np.array([0.0, -1.0, 0.0]))


def _t_interlocked(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    """Palms facing, MCPs flexed ~80 deg, fingers spread; B is shifted sideways so that its
    fingers fall into the gaps between A's fingers (computed from the posed keypoints)."""

    def hand():
        c = r.u(0.35, 0.55) + r.u(-0.03, 0.03, 4)
        a = _hand(s, r, c, r.u(-0.5, 0.0, 4), 0.0,
                  [r.f(-15, 0), r.f(0, 15), r.f(0, 20), r.f(0, 25), r.f(0, 30)], noise=0.5)
        for row, frac in ((0, r.f(0.8, 1.0)), (9, r.f(0.5, 0.8)), (6, r.f(0.9, 1.0)), (3, r.f(-0.2, 0.2))):
            a[row, 1] = frac * s.upper[row, 1].double()  # spread (index, ring, pinky; middle ~0)
        return a

    a, b = hand(), hand()
    first_slot = 0 if r.coin() else 1

    def offset_fn(ka, kb):
        za = np.sort(0.5 * (ka[list(_MCP), 2] + ka[list(_PIP), 2]))
        zb = np.sort(0.5 * (kb[list(_MCP), 2] + kb[list(_PIP), 2]))
        zb = zb + _mcp_centre(ka)[2] - _mcp_centre(kb)[2]  # where the anchor alone puts them
        step = float(np.diff(za).mean())
        slots = np.concatenate([[za[0] - 0.5 * step], 0.5 * (za[1:] + za[:-1]), [za[-1] + 0.5 * step]])
        return np.array([0.0, 0.0, float(np.mean(slots[first_slot:first_slot + 4] - zb))])

    return _Spec(a, b, r.rot_jitter(4.0) @ _rot("z", 180.0), _mcp_centre, _mcp_centre,
                 np.array([r.f(-0.004, 0.004), 0.0, 0.0]), np.array([0.0, -1.0, 0.0]), offset_fn=offset_fn,
                 lateral=np.array([0.0, 0.0, 1.0]))


def _fist(s: PoseSampler, r: _Draw, curl=(0.84, 0.94)) -> Tensor:
    return _hand(s, r, r.u(*curl) + r.u(-0.03, 0.03, 4), r.u(-0.3, 0.3, 4), r.f(-0.4, 0.0),
                 [r.f(-18, -5), r.f(32, 50), r.f(35, 55), r.f(40, 60), r.f(55, 80)])


def _frame_rotation(f: np.ndarray, p: np.ndarray, f_to: np.ndarray, p_to: np.ndarray) -> np.ndarray:
    """Rotation taking direction ``f`` to ``f_to`` and ``p`` (made perpendicular to ``f``) into the
    plane of ``f_to`` and ``p_to``."""

    def frame(a, b):
        a = a / np.linalg.norm(a)
        b = b - np.dot(a, b) * a
        b = b / np.linalg.norm(b)
        return np.stack([a, b, np.cross(a, b)], 1)

    return frame(f_to, p_to) @ frame(f, p).T


def _seg_point_dist2d(p0: Tensor, p1: Tensor, q: Tensor) -> Tensor:
    """Distance in the x-y plane from segments ``[p0, p1]`` (..., 3) to points ``q`` (..., 2)."""
    a, b = p0[..., :2], p1[..., :2]
    d = b - a
    t = (((q - a) * d).sum(-1) / (d * d).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    return (a + t[..., None] * d - q).norm(dim=-1)


def _shaped(model, shape: Tensor, mirror: bool) -> tuple[PoseSampler, float, float]:
    """A right-like sampler for ``model``'s skeleton with shape ``shape`` (x-mirrored if
    ``mirror``, for a left hand), the hand's finger radius (m; middle phalanx of the middle
    finger) and the depth of the palm's volar surface below the middle MCP (m)."""
    dt = model.rest_joints.dtype
    with torch.no_grad():
        out = model(torch.zeros(1, 48, dtype=dt), shape[None].to(dt), torch.zeros(1, 3, dtype=dt))
    J, k, v = _to_np(out.joints[0]), _to_np(out.keypoints[0]), _to_np(out.vertices[0])
    tips = k[list(_TIP)]
    part = _to_np(model.skinning_weights).argmax(1)
    a, b = J[5], J[6]
    d = (b - a) / np.linalg.norm(b - a)
    w = v[part == 5] - a
    radius = float(np.median(np.linalg.norm(w - np.outer(w @ d, d), axis=1))) if (part == 5).any() else 0.0085
    if mirror:
        J, tips, v = J @ _M, tips @ _M, v @ _M
    near = (part == 0) & (v[:, 0] > J[4, 0] - 0.025) & (v[:, 0] < J[4, 0]) & (np.abs(v[:, 2] - J[4, 2]) < 0.03)
    sampler = PoseSampler(J, tips, "right", dtype=torch.float64)
    palm = float(((v[near] - J[4]) @ sampler.palm_normal).max()) if near.any() else 0.013
    return sampler, radius, palm


def _t_grasp_fingers(info_a, r: _Draw, info_b) -> _Spec:
    """A (right role) closes its fingers around B's extended index (and middle) finger(s), which
    run across A's palm along -z (from A's pinky side toward its thumb side)."""
    s, r_a, palm_a = info_a
    s_b, r_b, _ = info_b
    two = r.coin(0.4)
    curls = [r.f(-0.02, 0.02), r.f(-0.02, 0.02) if two else r.f(0.85, 0.95), r.f(0.85, 0.95), r.f(0.85, 0.95)]
    b = _hand(s, r, curls, r.u(-0.1, 0.1, 4), -0.4,
              [r.f(-18, -5), r.f(32, 50), r.f(35, 55), r.f(40, 60), r.f(55, 80)], noise=0.2)
    # B's finger direction from its posed skeleton (B is a left hand: the x-mirror of the right
    # one). One finger: B's palm faces down (rolled +-30 deg); two fingers: B's palm faces up, so
    # that its middle finger lies beside the index toward A's fingers, not on A's thenar.
    P, T = s_b.forward_kinematics(b[None])
    P, T = P[0].numpy() @ _M, T[0].numpy() @ _M
    f = (T[1] - P[1]) if not two else (T[1] + T[2] - P[1] - P[4])
    roll = r.f(-30, 30) + (180.0 if two else 0.0)
    rot_b = (r.rot_jitter(3.0) @ _rot("z", roll)
             @ _frame_rotation(f, s_b.palm_normal @ _M, np.array([0.0, 0, -1]), np.array([0.0, -1, 0])))
    # where B's finger axes run (x-y plane of A's frame): under A's palm, near the MCP row
    sc = s.scale
    J = s.rest_joints
    axis0 = np.array([J[4, 0] - r.f(0.0, 0.012) * sc, J[4, 1] - (palm_a + r_b) - 0.001])
    axes = [axis0]
    if two:
        lateral = (rot_b @ (P[4] - P[1]))[:2]
        axis0[1] -= max(lateral[1], 0.0)  # the upper finger just below the palm
        axes.append(axis0 + lateral)
    q = torch.as_tensor(np.stack(axes), dtype=torch.float64)  # (L, 2)
    # close each of A's fingers (and the thumb) until it touches B's finger(s)
    K = 48
    c = torch.linspace(0.0, 1.0, K, dtype=torch.float64)
    hook = r.u(-0.4, 0.2, 4).expand(K, 4)
    th_open = torch.tensor([-10.0, 35.0, 35.0, 0.0, 0.0], dtype=torch.float64)
    th_close = torch.tensor([r.f(-10, 10), r.f(40, 55), r.f(40, 55), 55.0, 75.0], dtype=torch.float64)
    th = th_open + c[:, None] * (th_close - th_open)
    grid = s.angles_from_latents(c[:, None].expand(K, 4), hook, torch.full((K,), -0.2, dtype=torch.float64),
                                 th, None, noise=0.0)
    Pj, Tj = s.forward_kinematics(grid)
    from im2hands.hands.pose_sampler import _CHAINS, _TIP_OF_CHAIN

    best = {}
    for name, rows in _CHAINS.items():
        js = [rr + 1 for rr in rows]
        ends = torch.stack([Pj[:, js[1]], Pj[:, js[2]], Tj[:, _TIP_OF_CHAIN[name]]], 1)  # (K, 3, 3)
        starts = Pj[:, js]  # (K, 3, 3)
        dist = _seg_point_dist2d(starts[:, :, None], ends[:, :, None], q[None, None])  # (K, 3, L)
        r_f = r_a * (1.25 if name == "thumb" else 1.0)
        touch = (dist.flatten(1).min(1).values < r_f + r_b - 0.0015).numpy()
        k = int(np.argmax(touch)) if touch.any() else K - 1
        best[name] = float(c[max(k - 1, 0)])
    curl_a = [best[n] for n in ("index", "middle", "ring", "pinky")]
    t_th = best["thumb"]
    a = _hand(s, r, curl_a, hook[0], -0.2, (th_open + t_th * (th_close - th_open)).tolist(), noise=0.25)
    depth = (r.f(0.025, 0.035) if two else r.f(0.012, 0.022)) * sc

    def anchor_a(k):
        # A is not rotated: the axis position relative to A's middle MCP, just beyond A's pinky side
        return np.array([k[9, 0] + axis0[0] - J[4, 0], k[9, 1] + axis0[1] - J[4, 1], k[17, 2] + depth])

    return _Spec(a, b, rot_b, anchor_a, lambda k: k[5], np.zeros(3),
                 np.array([0.0, 1.0, 0.0]), press=True)


def _t_fists_touching(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    roll = r.f(-20, 20) if r.coin(0.6) else r.f(60, 100) * (1 if r.coin() else -1)
    return _Spec(_fist(s, r), _fist(s, r), r.rot_jitter(12.0) @ _rot("x", roll),
                 lambda k: k[list(_PIP)].mean(0), lambda k: k[list(_PIP)].mean(0),
                 np.array([0.0, r.f(-0.008, 0.008), r.f(-0.008, 0.008)]), np.array([1.0, 0.0, 0.0]))


def _pointing(s: PoseSampler, r: _Draw) -> Tensor:
    return _hand(s, r, [r.f(-0.08, 0.08)] + [r.f(0.84, 0.94) for _ in range(3)], r.u(-0.3, 0.3, 4),
                 r.f(-0.3, 0.1), [r.f(-18, -5), r.f(32, 50), r.f(35, 55), r.f(40, 60), r.f(55, 80)])


def _t_crossed_index(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    # the index fingers cross like an X near their distal halves; the hands on opposite sides
    phi = r.f(105, 155) * (1 if r.coin() else -1)
    ta, tb = r.f(0.45, 0.8), r.f(0.45, 0.8)

    def on_index(t):
        return lambda k: k[5] + t * (k[8] - k[5])

    return _Spec(_pointing(s, r), _pointing(s, r), r.rot_jitter(8.0) @ _rot("y", phi) @ _rot("y", 180.0),
                 on_index(ta), on_index(tb), np.zeros(3), np.array([0.0, 1.0, 0.0]))


def _t_hand_covering(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    if r.coin(0.3):
        a = _fist(s, r)
    else:
        a = _hand(s, r, r.u(-0.05, 0.25, 4), r.u(-0.3, 0.3, 4), r.f(-0.3, 0.4), _flat_thumb(r))
    b = _hand(s, r, r.u(0.1, 0.3) + r.u(-0.05, 0.05, 4), r.u(-0.6, 0.2, 4), r.f(-0.3, 0.2),
              [r.f(-15, 0), r.f(0, 20), r.f(0, 20), r.f(0, 25), r.f(0, 30)])
    return _Spec(a, b, r.rot_jitter(8.0) @ _rot("y", r.f(-30, 30)) @ _rot("y", 180.0),
                 _palm_centre, _palm_centre, np.array([r.f(-0.02, 0.012), 0.0, r.f(-0.01, 0.01)]),
                 np.array([0.0, 1.0, 0.0]))


def _t_random_pair(s: PoseSampler, r: _Draw, shapes) -> _Spec:
    a = s.sample(1, r.g)[0].double()
    b = s.sample(1, r.g)[0].double()
    d = torch.randn(3, generator=r.g, dtype=torch.float64).numpy()
    return _Spec(a, b, _rotmat(random_rotation(1, r.g, torch.float64)[0].numpy()), _palm_centre, _palm_centre,
                 np.zeros(3), d / np.linalg.norm(d))


_BUILDERS = {
    "interlocked_fingers": _t_interlocked,
    "palms_together": _t_palms_together,
    "grasp_fingers": _t_grasp_fingers,
    "fists_touching": _t_fists_touching,
    "crossed_index_fingers": _t_crossed_index,
    "hand_covering": _t_hand_covering,
    "random_pair": _t_random_pair,
}


# ================================================================================================
# Placement


def _forward(model, angles: Tensor, R: np.ndarray, shape: Tensor):
    s = _sampler(model)
    dt = model.rest_joints.dtype
    go = torch.as_tensor(_rotvec(R), dtype=dt)[None]
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
    target = contact_fraction * max_penetration_cm3 / M3_TO_CM3
    limit = max_penetration_cm3 / M3_TO_CM3
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
    return TwoHandPose(pose, shapes.clone(), trans, name, vol * M3_TO_CM3, gap, swapped, angles)


# ================================================================================================
# Pictures


def _draw_meshes(ax, meshes, colors, elev: float, azim: float) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    allv = np.concatenate([m[0] for m in meshes])
    e, a = math.radians(elev), math.radians(azim)
    cam = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    light = 0.7 * cam + 0.3 * np.array([0.3, 0.5, 0.8])
    light /= np.linalg.norm(light)
    tris, cols = [], []
    for (v, f), c in zip(meshes, colors):
        tri = v[f]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        shade = 0.3 + 0.7 * np.clip(n @ light, 0, 1)
        front = (n @ cam) > -0.2
        tris.append(tri[front])
        cols.append(np.clip(np.asarray(c)[None] * shade[front, None], 0, 1))
    # one collection, so that the painter's sort runs over both meshes
    ax.add_collection3d(Poly3DCollection(np.concatenate(tris), facecolors=np.concatenate(cols), edgecolors="none"))
    c = (allv.max(0) + allv.min(0)) / 2
    rad = (allv.max(0) - allv.min(0)).max() / 2
    ax.set_xlim(c[0] - rad, c[0] + rad)
    ax.set_ylim(c[1] - rad, c[1] + rad)
    ax.set_zlim(c[2] - rad, c[2] + rad)
    ax.view_init(elev=elev, azim=azim)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()


_SKIN = {"right": (0.93, 0.74, 0.58), "left": (0.55, 0.70, 0.92)}
_VIEW = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # model (x, y, z) -> display (x, -z, y): y up


def render_pair(pair: TwoHandPose, right_model, left_model, path, views=((25, -60), (-35, 120)), title: str = ""):
    """Save a picture of a pair (right hand orange, left hand blue) from two viewpoints."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pose_pair(pair, right_model, left_model)
    meshes = [(_to_np(out[s].vertices[0]) @ _VIEW.T, _to_np(out[s].faces)) for s in ("right", "left")]
    fig = plt.figure(figsize=(4 * len(views), 4))
    for i, (e, a) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection="3d")
        _draw_meshes(ax, meshes, [_SKIN["right"], _SKIN["left"]], e, a)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render_gallery(out_dir, right_model=None, left_model=None, seed: int = 0, per_template: int = 3,
                   names=TEMPLATES) -> list[str]:
    """Write ``interaction_<template>.png`` (``per_template`` random draws each, two views) and
    ``poses_<mode>.png`` (random single right hands) into ``out_dir``."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    if right_model is None or left_model is None:
        from im2hands.hands.layer import load_hand_models

        models = load_hand_models()
        right_model, left_model = models["right"], models["left"]
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    written = []
    views = ((25, -60), (-40, 110))
    for name in names:
        fig = plt.figure(figsize=(3.6 * len(views), 3.4 * per_template))
        for i in range(per_template):
            shapes = 0.8 * torch.randn(2, 10, generator=g)
            pair = sample_interaction(name, right_model, left_model, shapes, g)
            out = pose_pair(pair, right_model, left_model)
            meshes = [(_to_np(out[s].vertices[0]) @ _VIEW.T, _to_np(out[s].faces)) for s in ("right", "left")]
            for k, (e, a) in enumerate(views):
                ax = fig.add_subplot(per_template, len(views), i * len(views) + k + 1, projection="3d")
                _draw_meshes(ax, meshes, [_SKIN["right"], _SKIN["left"]], e, a)
                if k == 0:
                    ax.set_title(f"{name} #{i}  pen={pair.penetration_cm3:.2f} cm3"
                                 f"{'  (swapped)' if pair.swapped else ''}", fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"interaction_{name}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    sampler = _sampler(right_model)
    for mode_group in (("random",), ("open", "relaxed", "spread"), ("fist", "pointing", "pinch", "grasp")):
        rows, cols = (3, 4) if mode_group == ("random",) else (len(mode_group), 4)
        fig = plt.figure(figsize=(2.6 * cols, 2.6 * rows))
        for i in range(rows):
            mode = mode_group[0] if len(mode_group) == 1 else mode_group[i]
            ang = sampler.sample(cols, g, mode)
            pose = sampler.pose_from_angles(ang)
            with torch.no_grad():
                out = right_model(pose, torch.zeros(cols, 10), torch.zeros(cols, 3))
            for k in range(cols):
                ax = fig.add_subplot(rows, cols, i * cols + k + 1, projection="3d")
                v = _to_np(out.vertices[k]) @ _VIEW.T
                _draw_meshes(ax, [(v, _to_np(out.faces))], [_SKIN["right"]], -50 if k % 2 else 30, -70)
                ax.set_title(mode, fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"poses_{'_'.join(mode_group)}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def time_templates(n: int = 30, seed: int = 0, threads: int | None = 1, shape_std: float = 0.8,
                   right_model=None, left_model=None) -> dict[str, dict[str, float]]:
    """Time :func:`sample_interaction` per template: ``{name: {wall_ms, wall_p90_ms, cpu_ms}}``
    (medians over ``n`` draws with random shapes). ``threads``: torch intra-op threads during
    the run (restored afterwards); ``None`` leaves the setting alone."""
    import time

    if right_model is None or left_model is None:
        from im2hands.hands.layer import load_hand_models

        models = load_hand_models()
        right_model, left_model = models["right"], models["left"]
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    table = {}
    try:
        for name in TEMPLATES:
            sample_interaction(name, right_model, left_model, None, g)  # warm-up
            wall, cpu = [], []
            for _ in range(n):
                shapes = shape_std * torch.randn(2, 10, generator=g)
                t, c = time.perf_counter(), time.process_time()
                sample_interaction(name, right_model, left_model, shapes, g)
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            table[name] = {"wall_ms": 1e3 * float(np.median(wall)), "wall_p90_ms": 1e3 * float(np.percentile(wall, 90)),
                           "cpu_ms": 1e3 * float(np.median(cpu))}
    finally:
        torch.set_num_threads(before)
    return table
