"""The interaction templates of :mod:`im2hands.hands.interactions`: for each name in
:data:`~im2hands.hands.interactions.TEMPLATES`, a builder that draws both hands' finger angles,
the left hand's rotation relative to the right one, the anchors and the contact direction
(a ``_Spec``), in the right hand's model frame (metres)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from im2hands.geometry.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle_np, random_rotation
from im2hands.hands.overlap import to_numpy as _to_np
from im2hands.hands.pose_sampler import PoseSampler
from im2hands.typing import Tensor

_M = np.diag([-1.0, 1.0, 1.0])  # the x-mirror

# standard keypoint ids
_WRIST, _MCP, _PIP, _DIP, _TIP = 0, (5, 9, 13, 17), (6, 10, 14, 18), (7, 11, 15, 19), (4, 8, 12, 16, 20)


def _rot(axis: str, deg: float) -> np.ndarray:
    v = {"x": (1.0, 0, 0), "y": (0, 1.0, 0), "z": (0, 0, 1.0)}[axis]
    return axis_angle_to_matrix_np(np.asarray(v) * math.radians(deg))


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
        return axis_angle_to_matrix_np(random_rotation(1, self.g, torch.float64, math.radians(max_deg))[0].numpy())


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
    return _Spec(a, b, axis_angle_to_matrix_np(random_rotation(1, r.g, torch.float64)[0].numpy()), _palm_centre, _palm_centre,
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
