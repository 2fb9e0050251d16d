"""Anatomical tables of the open hand model: skeleton, phalanx lengths, radii, palm outline.

Everything here describes the RIGHT hand at rest (the flat hand) in metres, in the model frame:
the wrist joint at the origin, fingers extended along +x, the palm (volar side) facing -y, the
thumb on the -z side. The left hand is the mirror image (x -> -x), made in
:mod:`im2hands.hands.builder`.

Joints follow MANO's order: 0 wrist; 1-3 index (MCP, PIP, DIP); 4-6 middle; 7-9 pinky;
10-12 ring; 13-15 thumb (CMC, MCP, IP). A *chain* is one finger's three joints; chains are
numbered in that same order (0 index, 1 middle, 2 pinky, 3 ring, 4 thumb).

The numbers are adult averages from the hand-anthropometry literature, rounded, and tuned so
that the mesh lands on MANO's proportions (wrist joint to middle fingertip about 175 mm, palm
about 84 mm wide across the knuckles).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from im2hands.hands.constants import MANO_KINTREE_PARENTS

CHAIN_NAMES: tuple[str, ...] = ("index", "middle", "pinky", "ring", "thumb")
"""Finger of each MANO chain; chain ``c`` holds joints ``1 + 3c .. 3 + 3c``."""

TIP_ORDER: tuple[int, ...] = (4, 0, 1, 3, 2)
"""Chain index of each fingertip in thumb, index, middle, ring, pinky order."""

# Per chain: base joint (m); per segment (base->2nd joint, 2nd->3rd, 3rd->tip end) the length (m)
# and the direction as (azimuth, elevation) in degrees: azimuth from +x towards +z, elevation
# from the xz-plane towards +y (dorsal). Radii (m) at base joint, 2nd joint, 3rd joint, tip.
_CHAINS: dict[str, dict[str, tuple]] = {
    "index": dict(base=(0.078, 0.000, -0.031), lengths=(0.040, 0.024, 0.021),
                  dirs=((-6.0, 0.0), (-6.0, 0.0), (-6.0, 0.0)),
                  radii=(0.0100, 0.0090, 0.0082, 0.0075)),
    "middle": dict(base=(0.081, 0.000, -0.010), lengths=(0.044, 0.028, 0.022),
                   dirs=((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
                   radii=(0.0103, 0.0093, 0.0083, 0.0076)),
    "pinky": dict(base=(0.067, -0.002, 0.030), lengths=(0.033, 0.020, 0.019),
                  dirs=((11.0, 0.0), (11.0, 0.0), (11.0, 0.0)),
                  radii=(0.0088, 0.0079, 0.0072, 0.0066)),
    "ring": dict(base=(0.076, -0.001, 0.011), lengths=(0.041, 0.027, 0.021),
                 dirs=((5.0, 0.0), (5.0, 0.0), (5.0, 0.0)),
                 radii=(0.0097, 0.0087, 0.0079, 0.0072)),
    # thumb: CMC -> MCP is the first metacarpal, then the proximal and distal phalanges.
    "thumb": dict(base=(0.022, -0.008, -0.019), lengths=(0.046, 0.032, 0.029),
                  dirs=((-38.0, -15.0), (-30.0, -10.0), (-22.0, -5.0)),
                  radii=(0.0125, 0.0105, 0.0095, 0.0086)),
}

PALM_OUTLINE_XZ: tuple[tuple[float, float], ...] = (
    (-0.004, -0.017), (0.030, -0.028), (0.077, -0.030), (0.080, -0.010), (0.075, 0.011),
    (0.066, 0.029), (0.030, 0.028), (-0.004, 0.017),
)
"""Convex outline (x, z) of the palm's flat core, counter-clockwise seen from +y; the palm
surface is this polygon extruded to ``PALM_HALF_CORE`` and rounded by ``PALM_ROUNDING``."""
PALM_CENTER_Y: float = -0.002
"""Height (y) of the palm's mid-plane (m)."""
PALM_HALF_CORE: tuple[float, float] = (0.0035, 0.0008)
"""Half-thickness of the palm's flat core before rounding at x = 0 and x = 0.08 m (linear in
x between, clamped outside): the palm thins from wrist to knuckles."""
PALM_ROUNDING: float = 0.011
"""Rounding radius of the palm slab (m); palm thickness = 2 * (core + rounding), 29 -> 24 mm."""
PALM_ARCH: float = 2.5
"""Transverse arch: the palm's mid-plane drops by ``PALM_ARCH * z**2`` (m) away from z = 0, so
the back of the hand is convex and the palm hollow."""

FOREARM_START_X: float = -0.024
"""x of the flat wrist cap closing the forearm stub (m)."""
FOREARM_END_X: float = 0.015
"""x where the wrist stub ends inside the palm (m)."""
FOREARM_HALF_AXES: tuple[float, float] = (0.016, 0.027)
"""Half-thickness (y) and half-width (z) of the wrist cross-section (m)."""
FOREARM_ROUNDING: float = 0.006
"""Rounding of the wrist cap's rim (m)."""

THENAR: tuple[tuple[float, float, float], tuple[float, float, float], float, float] = (
    (0.019, -0.011, -0.009), (0.049, -0.017, -0.029), 0.0125, 0.0100)
"""Thenar pad (moves with the thumb's CMC joint): round cone (start, end, r_start, r_end)."""
HYPOTHENAR: tuple[tuple[float, float, float], tuple[float, float, float], float, float] = (
    (0.012, -0.007, 0.019), (0.050, -0.007, 0.024), 0.0105, 0.0095)
"""Hypothenar pad on the ulnar volar palm: round cone (start, end, r_start, r_end), metres."""

BLEND_PALM_FOREARM: float = 0.012
"""Smooth-union width between palm and wrist stub (m)."""
BLEND_PALM_FINGERS: float = 0.007
"""Smooth-union width between palm and fingers; makes the webs between fingers (m)."""
BLEND_PALM_THUMB: float = 0.012
"""Smooth-union width between palm and thumb; makes the thenar eminence (m)."""


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Every table of one version of the open hand model (right hand, metres, model frame).

    The module-level constants are version 1 (:data:`V1`); :data:`V2` is the version
    calibrated against real MANO hands (docs/hand_model.md, "Version 2"). Field meanings are
    those of the module constants of the same name (``chains``: the per-finger table).
    """

    name: str
    chains: dict
    palm_outline_xz: tuple
    palm_center_y: float
    palm_half_core: tuple[float, float]
    palm_core_length: float
    """x (m) at which the palm's core reaches its knuckle half-thickness."""
    palm_rounding: float
    palm_arch: float
    palm_roll: float
    """Extra linear drop of the palm's mid-plane, ``palm_roll * z`` (0 in version 1)."""
    forearm_start_x: float
    forearm_end_x: float
    forearm_half_axes: tuple[float, float]
    forearm_rounding: float
    thenar: tuple
    hypothenar: tuple
    blend_palm_forearm: float
    blend_palm_fingers: float
    blend_palm_thumb: float
    shape_coefficients: tuple


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Rest skeleton of the right hand (metres, model frame).

    Attributes:
        joints: ``(16, 3)`` joint centres in MANO order.
        tips: ``(5, 3)`` fingertip ends per chain (index, middle, pinky, ring, thumb), on the
            surface.
        seg_start: ``(16, 3)``; row ``k >= 1`` is the start of bone ``k`` (= joint ``k``).
        seg_end: ``(16, 3)``; row ``k >= 1`` is the end of bone ``k``'s round cone (the child
            joint, or for the last bone of a chain the centre of the tip's sphere).
        seg_radii: ``(16, 2)`` radii of bone ``k``'s round cone at its start and end.
        seg_length: ``(16,)`` bone length from joint ``k`` to the child joint or fingertip.
        seg_axis: ``(16, 3)`` unit direction of bone ``k``.
        parents: the 16 MANO parents (``parents[0] = -1``).
        anatomy: the tables the skeleton and the surface come from.
    """

    joints: np.ndarray
    tips: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_radii: np.ndarray
    seg_length: np.ndarray
    seg_axis: np.ndarray
    parents: tuple[int, ...]
    anatomy: Anatomy


def _direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])


def rest_skeleton(anatomy: Anatomy | None = None) -> Skeleton:
    """Build the right hand's rest skeleton from the tables of one version.

    Args:
        anatomy: :data:`V1` (default) or :data:`V2`.

    Returns:
        The :class:`Skeleton` (metres, model frame; see the module docstring).
    """
    joints = np.zeros((16, 3))
    tips = np.zeros((5, 3))
    seg_start = np.zeros((16, 3))
    seg_end = np.zeros((16, 3))
    seg_radii = np.zeros((16, 2))
    seg_length = np.zeros(16)
    seg_axis = np.zeros((16, 3))
    anatomy = V1 if anatomy is None else anatomy
    for c, name in enumerate(CHAIN_NAMES):
        table = anatomy.chains[name]
        point = np.asarray(table["base"], dtype=np.float64)
        radii = table["radii"]
        for s in range(3):
            k = 1 + 3 * c + s
            axis = _direction(*table["dirs"][s])
            joints[k] = point
            seg_start[k] = point
            seg_axis[k] = axis
            seg_length[k] = table["lengths"][s]
            point = point + table["lengths"][s] * axis
            seg_radii[k] = (radii[s], radii[s + 1])
            seg_end[k] = point if s < 2 else point - radii[3] * axis
        tips[c] = point
    return Skeleton(joints=joints, tips=tips, seg_start=seg_start, seg_end=seg_end,
                    seg_radii=seg_radii, seg_length=seg_length, seg_axis=seg_axis,
                    parents=MANO_KINTREE_PARENTS, anatomy=anatomy)


def chain_of_joint(joint: int) -> int:
    """Chain index (0 index, 1 middle, 2 pinky, 3 ring, 4 thumb) of joint 1..15; -1 for 0."""
    return -1 if joint == 0 else (joint - 1) // 3


def children(parents: tuple[int, ...] = MANO_KINTREE_PARENTS) -> list[list[int]]:
    """Children of each of the 16 joints, from a parents tuple."""
    kids: list[list[int]] = [[] for _ in parents]
    for k, p in enumerate(parents):
        if p >= 0:
            kids[p].append(k)
    return kids


# ----------------------------------------------------------------------------------------------
# Implicit surface: signed distances (negative inside), metres.


def round_cone_sdf(points: np.ndarray, a: np.ndarray, b: np.ndarray, r_a: float,
                   r_b: float) -> np.ndarray:
    """Signed distance to the convex hull of two spheres (a "round cone").

    Args:
        points: ``(N, 3)`` query points.
        a, b: ``(3,)`` sphere centres.
        r_a, r_b: sphere radii (``|r_a - r_b| < |b - a|``).

    Returns:
        ``(N,)`` exact signed distances.
    """
    ab = b - a
    length = float(np.linalg.norm(ab))
    axis = ab / length
    rel = points - a
    u = rel @ axis
    rho = np.sqrt(np.maximum(np.einsum("ij,ij->i", rel, rel) - u * u, 0.0))
    sin_a = (r_a - r_b) / length
    cos_a = np.sqrt(1.0 - sin_a * sin_a)
    # Coordinate along the tangent line (cos a, -sin a) in the (u, rho) half-plane; the
    # tangent points on the two spheres sit at t = 0 and t = length * cos a.
    t = u * cos_a - rho * sin_a
    side = u * sin_a + rho * cos_a - r_a
    to_a = np.sqrt(u * u + rho * rho) - r_a
    to_b = np.sqrt((u - length) ** 2 + rho * rho) - r_b
    return np.where(t < 0.0, to_a, np.where(t > length * cos_a, to_b, side))


def _polygon_sdf_2d(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact signed distance of ``(N, 2)`` points to a convex counter-clockwise polygon."""
    nxt = np.roll(poly, -1, axis=0)
    best = np.full(len(pts), np.inf)
    inside = np.ones(len(pts), dtype=bool)
    for p0, p1 in zip(poly, nxt):
        edge = p1 - p0
        rel = pts - p0
        h = np.clip(rel @ edge / (edge @ edge), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(rel - h[:, None] * edge, axis=1))
        inside &= (edge[0] * rel[:, 1] - edge[1] * rel[:, 0]) >= 0.0
    return np.where(inside, -best, best)


def _rounded_extrusion(d2: np.ndarray, height: np.ndarray, rounding: float) -> np.ndarray:
    """SDF of a 2-D shape (signed distance ``d2``) extruded to ``|height| <= 0`` and rounded."""
    qx, qy = d2, height
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - rounding


def palm_sdf(points: np.ndarray, anatomy: Anatomy | None = None) -> np.ndarray:
    """Signed distance to the palm slab (rounded extruded polygon), ``(N, 3) -> (N,)``."""
    a = V1 if anatomy is None else anatomy
    # The outline is counter-clockwise in the (x, z) plane as drawn; our 2-D coords are (x, z).
    poly = np.asarray(a.palm_outline_xz)
    d2 = _polygon_sdf_2d(points[:, [0, 2]], poly[::-1] if _signed_area(poly) < 0 else poly)
    core0, core1 = a.palm_half_core
    core = core0 + (core1 - core0) * np.clip(points[:, 0] / a.palm_core_length, 0.0, 1.0)
    mid = a.palm_center_y - a.palm_arch * points[:, 2] ** 2
    if a.palm_roll:
        mid = mid - a.palm_roll * points[:, 2]
    height = np.abs(points[:, 1] - mid) - core
    return _rounded_extrusion(d2, height, a.palm_rounding)


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def forearm_sdf(points: np.ndarray, anatomy: Anatomy | None = None) -> np.ndarray:
    """Signed distance (approximate off the surface) to the wrist stub: an elliptic cylinder
    along +x from ``FOREARM_START_X`` to ``FOREARM_END_X`` (inside the palm), with flat rounded
    caps, ``(N,)``."""
    a = V1 if anatomy is None else anatomy
    ay, az = a.forearm_half_axes
    r = a.forearm_rounding
    ell = np.sqrt(((points[:, 1] - a.palm_center_y) / (ay - r)) ** 2
                  + (points[:, 2] / (az - r)) ** 2)
    radial = (ell - 1.0) * min(ay, az) * 0.9
    center = 0.5 * (a.forearm_start_x + a.forearm_end_x)
    half = 0.5 * (a.forearm_end_x - a.forearm_start_x)
    axial = np.abs(points[:, 0] - center) - (half - r)
    return _rounded_extrusion(radial, axial, r)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union) of two distance fields with blend width ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def part_distances(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Signed distance to each of the 16 parts: 0 palm (palm, wrist, hypothenar), k = bone k.

    Args:
        points: ``(N, 3)`` points (m, model frame).
        skeleton: the rest skeleton.

    Returns:
        ``(N, 16)`` signed distances; the hard union of part 0 is already smoothed.
    """
    out = np.empty((len(points), 16))
    a = skeleton.anatomy
    hyp = a.hypothenar
    palm = smooth_min(palm_sdf(points, a), round_cone_sdf(points, np.asarray(hyp[0]),
                                                          np.asarray(hyp[1]), hyp[2], hyp[3]),
                      0.006)
    out[:, 0] = smooth_min(palm, forearm_sdf(points, a), a.blend_palm_forearm)
    for k in range(1, 16):
        out[:, k] = round_cone_sdf(points, skeleton.seg_start[k], skeleton.seg_end[k],
                                   *skeleton.seg_radii[k])
    pad = a.thenar
    out[:, 13] = smooth_min(out[:, 13], round_cone_sdf(points, np.asarray(pad[0]),
                                                       np.asarray(pad[1]), pad[2], pad[3]), 0.006)
    return out


def hand_sdf(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Signed distance-like field of the whole hand (negative inside), ``(N, 3) -> (N,)``.

    Fingers are hard unions of their round cones (so neighbouring fingers never merge); the
    palm is smoothly united with the fingers (webs) and with the thumb (thenar eminence).
    """
    parts = part_distances(points, skeleton)
    fingers = parts[:, 1:13].min(axis=1)
    thumb = parts[:, 13:16].min(axis=1)
    field = smooth_min(parts[:, 0], fingers, skeleton.anatomy.blend_palm_fingers)
    return smooth_min(field, thumb, skeleton.anatomy.blend_palm_thumb)


# ----------------------------------------------------------------------------------------------
# Shape coefficients (betas): what one unit of each changes. Every effect is linear in beta.

SHAPE_COEFFICIENTS: tuple[tuple[str, float, str], ...] = (
    ("size", 0.045, "uniform scale about the wrist joint (+4.5% per unit)"),
    ("palm_width", 0.040, "palm width and knuckle spread, along z (+4% per unit)"),
    ("palm_length", 0.040, "palm length, wrist to knuckles, along x (+4% per unit)"),
    ("finger_length", 0.045, "length of every phalanx of the four fingers (+4.5% per unit)"),
    ("thickness", 0.060, "radial thickness of the fingers and thumb (+6% per unit)"),
    ("thumb_length", 0.050, "length of the thumb's metacarpal and phalanges (+5% per unit)"),
    ("index_length", 0.040, "length of the index finger's phalanges (+4% per unit)"),
    ("ring_length", 0.040, "length of the ring finger's phalanges (+4% per unit)"),
    ("pinky_length", 0.050, "length of the little finger's phalanges (+5% per unit)"),
    ("palm_thickness", 0.070, "palm thickness, dorsal to volar, along y (+7% per unit)"),
)
"""Per beta: name, relative change per unit of beta, meaning. Plausible range: [-3, 3]."""


V1 = Anatomy(
    name="im2hands-open-hand-v1", chains=_CHAINS, palm_outline_xz=PALM_OUTLINE_XZ,
    palm_center_y=PALM_CENTER_Y, palm_half_core=PALM_HALF_CORE, palm_core_length=0.08,
    palm_rounding=PALM_ROUNDING, palm_arch=PALM_ARCH, palm_roll=0.0,
    forearm_start_x=FOREARM_START_X, forearm_end_x=FOREARM_END_X,
    forearm_half_axes=FOREARM_HALF_AXES, forearm_rounding=FOREARM_ROUNDING, thenar=THENAR,
    hypothenar=HYPOTHENAR, blend_palm_forearm=BLEND_PALM_FOREARM,
    blend_palm_fingers=BLEND_PALM_FINGERS, blend_palm_thumb=BLEND_PALM_THUMB,
    shape_coefficients=SHAPE_COEFFICIENTS,
)
"""Version 1 (``im2hands-open-hand-v1``): the tables above; the shipped files and networks."""


# ----------------------------------------------------------------------------------------------
# Version 2: calibrated against real MANO-topology hands (docs/hand_model.md, "Version 2").
# Measured with eval/real_hands.py on the 22 calibration hands (20 FreiHAND, 2 InterWild):
# chain bases are the mean joint positions in the palm frame (wrist at the origin, wrist ->
# middle MCP along +x, index MCP at y = 0), segment lengths the mean bone lengths of MANO's
# regressed joints (fingertip vertices for the last segment), all in metres, rounded to 0.1 mm.

_FINGER_RADIUS_SCALE_V2 = 0.96  # x version 1 radii; set from the fits (thickness beta)
_CHAINS_V2: dict[str, dict[str, tuple]] = {
    "index": dict(base=(0.0849, 0.000, -0.0222), lengths=(0.0291, 0.0206, 0.0233),
                  dirs=((-6.0, 0.0), (-6.0, 0.0), (-6.0, 0.0)),
                  radii=tuple(_FINGER_RADIUS_SCALE_V2 * r for r in (0.0100, 0.0090, 0.0082, 0.0075))),
    "middle": dict(base=(0.0912, 0.000, 0.000), lengths=(0.0281, 0.0209, 0.0242),
                   dirs=((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
                   radii=tuple(_FINGER_RADIUS_SCALE_V2 * r for r in (0.0103, 0.0093, 0.0083, 0.0076))),
    "pinky": dict(base=(0.0688, -0.0124, 0.0363), lengths=(0.0190, 0.0163, 0.0181),
                  dirs=((11.0, 0.0), (11.0, 0.0), (11.0, 0.0)),
                  radii=tuple(_FINGER_RADIUS_SCALE_V2 * r for r in (0.0088, 0.0079, 0.0072, 0.0066))),
    "ring": dict(base=(0.0803, -0.0048, 0.0218), lengths=(0.0253, 0.0217, 0.0232),
                 dirs=((5.0, 0.0), (5.0, 0.0), (5.0, 0.0)),
                 radii=tuple(_FINGER_RADIUS_SCALE_V2 * r for r in (0.0097, 0.0087, 0.0079, 0.0072))),
    "thumb": dict(base=(0.0258, -0.0144, -0.0237), lengths=(0.0296, 0.0255, 0.0321),
                  dirs=((-38.0, -15.0), (-30.0, -10.0), (-22.0, -5.0)),
                  radii=(0.0125, 0.0105, 0.0095, 0.0086)),
}

SHAPE_COEFFICIENTS_V2: tuple[tuple[str, float, str], ...] = (
    ("size", 0.041, "uniform scale about the wrist joint (+4.1% per unit)"),
    ("palm_width", 0.050, "palm width and knuckle spread, along z (+5% per unit)"),
    ("palm_length", 0.030, "palm length, wrist to knuckles, along x (+3% per unit)"),
    ("finger_length", 0.052, "length of every phalanx of the four fingers (+5.2% per unit)"),
    ("thickness", 0.055, "radial thickness of the fingers and thumb (+5.5% per unit)"),
    ("thumb_length", 0.066, "length of the thumb's metacarpal and phalanges (+6.6% per unit)"),
    ("index_length", 0.076, "length of the index finger's phalanges (+7.6% per unit)"),
    ("ring_length", 0.052, "length of the ring finger's phalanges (+5.2% per unit)"),
    ("pinky_length", 0.047, "length of the little finger's phalanges (+4.7% per unit)"),
    ("palm_thickness", 0.049, "palm thickness, dorsal to volar, along y (+4.9% per unit)"),
)
"""Version 2's betas: version 1's directions, one unit = one standard deviation of the matching
measurement over the calibration hands (wrist -> middle-MCP length; finger, thumb and single-
finger lengths, finger width and palm thickness relative to it; palm width and length are
set from the joints' spread), so [-3, 3] spans them."""

V2 = Anatomy(
    name="im2hands-open-hand-v2", chains=_CHAINS_V2,
    palm_outline_xz=((-0.004, -0.016), (0.033, -0.027), (0.076, -0.023), (0.082, 0.000),
                     (0.071, 0.0215), (0.060, 0.0345), (0.030, 0.031), (-0.004, 0.018)),
    palm_center_y=-0.002, palm_half_core=(0.0055, 0.0025), palm_core_length=0.080,
    palm_rounding=PALM_ROUNDING, palm_arch=5.8, palm_roll=0.13,
    forearm_start_x=-0.0175, forearm_end_x=0.015, forearm_half_axes=(0.017, 0.027),
    forearm_rounding=FOREARM_ROUNDING,
    thenar=((0.022, -0.015, -0.012), (0.046, -0.022, -0.029), 0.0125, 0.0100),
    hypothenar=((0.013, -0.009, 0.022), (0.055, -0.012, 0.029), 0.0105, 0.0095),
    blend_palm_forearm=BLEND_PALM_FOREARM, blend_palm_fingers=BLEND_PALM_FINGERS,
    blend_palm_thumb=BLEND_PALM_THUMB, shape_coefficients=SHAPE_COEFFICIENTS_V2,
)
"""Version 2 (``im2hands-open-hand-v2``), calibrated against real MANO hands."""

VERSIONS: dict[int, Anatomy] = {1: V1, 2: V2}
"""The hand-model versions by number (``im2hands handmodel build --version N``)."""
