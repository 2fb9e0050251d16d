"""Build the open hand model (``im2hands-open-hand-v1``, or ``-v2``) in MANO's pickle format.

The licensed MANO files cannot be shipped, so the package builds its own hand model that loads
through the same code path (smplx ``MANO`` / :mod:`im2hands.hands.mano_io`). Pipeline:

1. skeleton and implicit surface from :mod:`im2hands.hands.anatomy` (round cones per bone,
   a rounded palm slab, wrist stub, thenar/hypothenar pads, smooth unions);
2. marching cubes, then adaptive remeshing (edge collapses with a size field that is finer on
   the fingers, valence-improving flips, tangential relaxation with projection back onto the
   implicit surface) to about 1.4k vertices; the mesh is closed at the wrist (watertight)
   (:mod:`im2hands.hands.remesh`);
3. skinning weights from per-bone distances, smoothed by diffusion on the mesh;
4. a joint regressor: per joint, non-negative weights on a ring of vertices around the joint
   that reproduce the designed joint exactly;
5. shape directions (10 betas): per-bone affine displacement fields (size, palm width/length/
   thickness, finger lengths and thickness) blended by the skinning weights; linear in beta;
6. the left hand as the mirror image (x -> -x), faces reversed.

Everything is deterministic: no random numbers, arrays rounded to float32 precision.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize

from im2hands.geometry.rotations import axis_angle_to_matrix_np as rotvec_to_matrix  # Rodrigues' one home
from im2hands.hands import anatomy
from im2hands.hands.anatomy import Skeleton
# surface extraction lives in remesh.py; its constants stay importable from here
from im2hands.hands.remesh import (  # noqa: F401
    EDGE_FACTOR,
    MC_VOXEL,
    PALM_SIZE_RADIUS,
    _neighbors,
    extract_surface,
    vertex_normals,
)
from im2hands.utils.errors import HandModelError
from im2hands.utils.io import write_pickle

logger = logging.getLogger(__name__)

DEFAULT_VERSION: int = 2
"""The version of the committed files (``im2hands/assets/handmodel``) and of a plain build."""
MODEL_NAME: str = "im2hands-open-hand-v1"
"""Value of the ``model_name`` key of version-1 files (version 2: ``im2hands-open-hand-v2``)."""


# ----------------------------------------------------------------------------------------------
# Rigging: skinning weights, joint regressor


def skinning_weights(vertices: np.ndarray, faces: np.ndarray, skeleton: Skeleton, *,
                     sigma: float = 0.0025, diffusion_steps: int = 4,
                     floor: float = 1e-3) -> np.ndarray:
    """Linear-blend-skinning weights from per-bone distances, smoothed on the mesh.

    Args:
        vertices: ``(V, 3)`` rest vertices (m).
        faces: ``(F, 3)`` faces.
        skeleton: the rest skeleton.
        sigma: softness (m) of the distance-based blend between parts.
        diffusion_steps: Laplacian diffusion steps (each mixes half of the neighbours' mean).
        floor: weights below this are dropped (then rows are renormalised).

    Returns:
        ``(V, 16)`` non-negative weights, rows summing to 1 (part 0 = palm/wrist).
    """
    dist = anatomy.part_distances(vertices, skeleton)
    w = np.exp(-(dist - dist.min(1, keepdims=True)) / sigma)
    w[w < floor] = 0.0
    w /= w.sum(1, keepdims=True)
    adj = _neighbors(faces, len(vertices))
    deg = np.asarray(adj.sum(1)).ravel()[:, None]
    for _ in range(diffusion_steps):
        w = 0.5 * w + 0.5 * (adj @ w) / deg
    w[w < floor] = 0.0
    return w / w.sum(1, keepdims=True)


def _ring_weights(points: np.ndarray, joint: np.ndarray) -> np.ndarray | None:
    """Non-negative weights on ``points`` (summing to 1) whose combination is ``joint``.

    Minimises the distance to uniform weights under the exact constraints; None if the joint
    is not inside the points' convex hull.
    """
    n = len(points)
    scale = 1000.0  # work in millimetres
    big = 1e4
    a = np.vstack([np.eye(n), big * scale * points.T, big * np.ones((1, n))])
    b = np.concatenate([np.full(n, 1.0 / n), big * scale * joint, [big]])
    res = scipy.optimize.lsq_linear(a, b, bounds=(0.0, 1.0), method="bvls", tol=1e-12)
    w = res.x / res.x.sum()
    if np.linalg.norm(points.T @ w - joint) > 1e-7:
        return None
    return w


def joint_regressor(vertices: np.ndarray, weights: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Joint regressor: each joint a convex combination of a ring of vertices around it.

    For joint ``k`` the ring is the vertices within a slab around the plane through the joint
    perpendicular to the bone (to +x for the wrist), within 1.6 bone radii of the joint
    (40 mm for the wrist), whose dominant skinning bone is ``k``, its parent or a child (so
    a neighbouring finger never takes part). The slab widens until the joint lies in the
    ring's convex hull; if no slab works, the reach grows by 1.5x, then 2x.

    Args:
        vertices: ``(V, 3)`` rest vertices (m).
        weights: ``(V, 16)`` skinning weights.
        skeleton: the rest skeleton; its joints are reproduced exactly (to 1e-7 m).

    Returns:
        ``(16, V)`` dense float64, rows non-negative and summing to 1.
    """
    reg = np.zeros((16, len(vertices)))
    dominant = weights.argmax(1)
    kids = anatomy.children(skeleton.parents)
    for k in range(16):
        joint = skeleton.joints[k]
        if k == 0:
            normal, reach = np.array([1.0, 0.0, 0.0]), 0.040
        else:
            normal, reach = skeleton.seg_axis[k], 1.6 * skeleton.seg_radii[k][0]
        own = np.isin(dominant, [skeleton.parents[k], k, *kids[k]])
        rel = vertices - joint
        axial = rel @ normal
        radial = np.linalg.norm(rel - axial[:, None] * normal, axis=1)
        w = None
        # a joint deep in the palm (version 2's thumb CMC) needs a wider reach
        for grow in (1.0, 1.5, 2.0):
            for band in (0.002, 0.003, 0.0045, 0.006, 0.008, 0.011):
                idx = np.flatnonzero((np.abs(axial) < band) & (radial < grow * reach) & own)
                w = _ring_weights(vertices[idx], joint) if len(idx) >= 6 else None
                if w is not None:
                    reg[k, idx] = w
                    break
            if w is not None:
                break
        else:
            raise HandModelError(f"hand-model builder: no vertex ring encloses joint {k}")
    return reg


# ----------------------------------------------------------------------------------------------
# Shape directions


def _beta_fields(name: str, rate: float, points: np.ndarray, skeleton: Skeleton
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What one unit of beta ``name`` does: the palm's displacement at ``points`` and at the
    joints, and the per-bone relative axial and radial growth ``(16,)``."""
    axial, radial = np.zeros(16), np.zeros(16)
    palm, palm_joints = np.zeros_like(points), np.zeros_like(skeleton.joints)
    if name in ("palm_width", "palm_length", "palm_thickness"):
        axis, center = {"palm_width": (2, 0.0), "palm_length": (0, 0.0),
                        "palm_thickness": (1, skeleton.anatomy.palm_center_y)}[name]
        coord, joint_coord = points[:, axis] - center, skeleton.joints[:, axis] - center
        if name == "palm_length":  # the wrist stub (x < 0) does not lengthen
            coord, joint_coord = np.maximum(coord, 0.0), np.maximum(joint_coord, 0.0)
        palm[:, axis], palm_joints[:, axis] = rate * coord, rate * joint_coord
    elif name == "thickness":
        radial[1:] = rate
    elif name != "size":
        chains = {"finger_length": (0, 1, 2, 3), "thumb_length": (4,), "index_length": (0,),
                  "ring_length": (3,), "pinky_length": (2,)}[name]
        for c in chains:
            axial[1 + 3 * c: 4 + 3 * c] = rate
    return palm, palm_joints, axial, radial


def _joint_shifts(skeleton: Skeleton, palm_joints: np.ndarray, axial: np.ndarray) -> np.ndarray:
    """Displacement ``(16, 3)`` of each joint: the palm's at a chain base, plus the growth of
    the bones above it."""
    shift = np.zeros((16, 3))
    for k in range(1, 16):
        parent = skeleton.parents[k]
        shift[k] = palm_joints[k] if parent == 0 else (
            shift[parent] + axial[parent] * skeleton.seg_length[parent] * skeleton.seg_axis[parent])
    return shift


def designed_joint_directions(skeleton: Skeleton) -> np.ndarray:
    """Designed joint displacement per unit beta, ``(16, 3, 10)`` (m); the regressed joints
    of the shaped mesh follow it to within about 0.5 mm per unit beta."""
    coefficients = skeleton.anatomy.shape_coefficients
    out = np.zeros((16, 3, len(coefficients)))
    for i, (name, rate, _) in enumerate(coefficients):
        if name == "size":
            out[:, :, i] = rate * skeleton.joints
            continue
        _, palm_joints, axial, _ = _beta_fields(name, rate, skeleton.joints, skeleton)
        out[:, :, i] = _joint_shifts(skeleton, palm_joints, axial)
    return out


def shape_directions(vertices: np.ndarray, weights: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Shape blend shapes: displacement per unit of each of the 10 betas.

    Each beta (see :data:`im2hands.hands.anatomy.SHAPE_COEFFICIENTS`, and ``shape_coefficients``
    of the skeleton's :class:`~im2hands.hands.anatomy.Anatomy`) is a set of per-bone
    displacement fields blended by the skinning weights: bone 0 (palm) moves by the palm
    field; bone k >= 1 translates with its joint and scales its own axial and radial extent
    about the joint. "size" is a uniform scale about the wrist joint.

    Args:
        vertices: ``(V, 3)`` rest vertices (m), right hand.
        weights: ``(V, 16)`` skinning weights.
        skeleton: the rest skeleton.

    Returns:
        ``(V, 3, 10)`` float64 (m per unit beta).
    """
    coefficients = skeleton.anatomy.shape_coefficients
    dirs = np.zeros((len(vertices), 3, len(coefficients)))
    for i, (name, rate, _) in enumerate(coefficients):
        if name == "size":
            dirs[:, :, i] = rate * vertices
            continue
        palm, palm_joints, axial, radial = _beta_fields(name, rate, vertices, skeleton)
        shift = _joint_shifts(skeleton, palm_joints, axial)
        field = weights[:, :1] * palm
        for k in range(1, 16):
            e = skeleton.seg_axis[k]
            rel = vertices - skeleton.joints[k]
            along = (rel @ e)[:, None]
            field += weights[:, k:k + 1] * (shift[k] + axial[k] * along * e
                                            + radial[k] * (rel - along * e))
        dirs[:, :, i] = field
    return dirs


# ----------------------------------------------------------------------------------------------
# Pose correctives


def linear_blend_skinning(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray,
                          parents: tuple[int, ...], rotations: np.ndarray,
                          posedirs: np.ndarray | None = None) -> np.ndarray:
    """MANO's forward kinematics in numpy (same maths as smplx ``lbs``, no shape, no root move).

    Args:
        vertices: ``(V, 3)`` rest vertices; weights ``(V, 16)``; joints ``(16, 3)`` rest joints.
        parents: the 16 parents; rotations ``(16, 3, 3)`` local rotations (rest-pose frame).
        posedirs: optional ``(V, 3, 135)`` pose correctives.

    Returns:
        ``(V, 3)`` posed vertices.
    """
    if posedirs is not None:
        feature = (rotations[1:] - np.eye(3)).reshape(-1)
        vertices = vertices + posedirs @ feature
    world = np.zeros((16, 4, 4))
    for k in range(16):
        local = np.eye(4)
        local[:3, :3] = rotations[k]
        local[:3, 3] = joints[k] - rotations[k] @ joints[k]
        world[k] = local if parents[k] < 0 else world[parents[k]] @ local
    blended = np.einsum("vk,kij->vij", weights, world)
    return np.einsum("vij,vj->vi", blended[:, :3, :3], vertices) + blended[:, :3, 3]


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def flexion_axes(skeleton: Skeleton) -> np.ndarray:
    """Unit axis (rest frame, right hand) about which +angle flexes each joint; row 0 unused.

    Fingers curl towards the palm (-y); the thumb curls towards the palm and the little
    finger (towards -y and +z).
    """
    axes = np.zeros((16, 3))
    for k in range(1, 16):
        e = skeleton.seg_axis[k]
        toward = np.array([0.0, -1.0, 0.0]) if k < 13 else np.array([0.0, -0.6, 0.8])
        toward = toward - (toward @ e) * e
        axes[k] = np.cross(e, toward / np.linalg.norm(toward))
    return axes


def pose_correctives(vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray,
                     skeleton: Skeleton, *, angle: float = np.pi / 2,
                     max_gain: float = 0.004) -> np.ndarray:
    """Pose blend shapes that keep the volume when a joint bends.

    For joint ``k`` the corrective pushes the skin of the joint's blend zone (bump
    ``4 w_parent w_k``) out along the vertex normal by ``c_k (1 - cos theta)``, written on
    the three diagonal entries of ``R_k - I`` (their sum is ``-2 (1 - cos theta)`` for any
    axis, so flexion, extension and twist all inflate alike). ``c_k`` is solved so that a
    ``angle`` flexion of joint ``k`` alone keeps the hand's volume.

    Returns:
        ``(V, 3, 135)`` float64 posedirs.
    """
    normals = vertex_normals(vertices, faces)
    axes = flexion_axes(skeleton)
    rest = _signed_volume(vertices, faces)
    posedirs = np.zeros((len(vertices), 3, 135))
    for k in range(1, 16):
        bump = 4.0 * weights[:, k] * weights[:, skeleton.parents[k]]
        unit = np.zeros_like(posedirs)
        for d in (0, 4, 8):
            unit[:, :, 9 * (k - 1) + d] = -0.5 * bump[:, None] * normals
        rot = np.tile(np.eye(3), (16, 1, 1))
        rot[k] = rotvec_to_matrix(angle * axes[k])

        def volume(gain: float) -> float:
            posed = linear_blend_skinning(vertices, weights, skeleton.joints, skeleton.parents,
                                          rot, gain * unit)
            return _signed_volume(posed, faces)

        v0, v1 = volume(0.0), volume(0.001)
        gain = float(np.clip((rest - v0) / ((v1 - v0) / 0.001), 0.0, max_gain))
        posedirs += gain * unit
        logger.debug("joint %d: volume %.4f -> corrective %.2f mm", k, v0 / rest, gain * 1e3)
    return posedirs


# ----------------------------------------------------------------------------------------------
# Assembly


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 precision and back (stable bytes across platforms)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _fingertips(vertices: np.ndarray, weights: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Vertex furthest along each finger's distal direction (thumb, index, middle, ring, pinky)."""
    ids = []
    for c in anatomy.TIP_ORDER:
        k = 3 + 3 * c
        mine = np.flatnonzero(weights.argmax(1) == k)
        ids.append(int(mine[np.argmax((vertices[mine] - skeleton.joints[k]) @ skeleton.seg_axis[k])]))
    return np.array(ids, dtype=np.int64)


def mirror_posedirs(posedirs: np.ndarray) -> np.ndarray:
    """Mirror pose correctives by x -> -x: ``(V, 3, 135)`` right -> left.

    A joint rotation ``R`` mirrors to ``M R M`` (``M = diag(-1, 1, 1)``), so the entries
    (0,1), (0,2), (1,0), (2,0) of each flattened ``R - I`` flip sign, and the x component of
    every corrective flips too.
    """
    entry = np.ones((3, 3))
    entry[0, 1:] = entry[1:, 0] = -1.0
    out = posedirs * np.tile(entry.ravel(), 15)[None, None, :]
    out[:, 0, :] *= -1.0
    return out


def _anatomy(version: int) -> anatomy.Anatomy:
    if version not in anatomy.VERSIONS:
        raise HandModelError(f"hand-model version must be one of {sorted(anatomy.VERSIONS)}, got {version!r}")
    return anatomy.VERSIONS[version]


def _right_hand(version: int = 1) -> dict[str, Any]:
    skeleton = anatomy.rest_skeleton(_anatomy(version))
    coefficients = skeleton.anatomy.shape_coefficients
    vertices, faces = extract_surface(skeleton)
    vertices = _f32(vertices)
    weights = skinning_weights(vertices, faces, skeleton)
    regressor = _f32(joint_regressor(vertices, weights, skeleton))
    regressor /= regressor.sum(1, keepdims=True)
    shapedirs = shape_directions(vertices, weights, skeleton)
    kintree = np.array([[-1, *skeleton.parents[1:]], list(range(16))], dtype=np.int64)
    return {
        "v_template": vertices,
        "f": faces.astype(np.int32),
        "J_regressor": regressor,
        "weights": weights.astype(np.float32),
        "kintree_table": kintree,
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": pose_correctives(vertices, faces, weights, skeleton).astype(np.float32),
        "hands_components": np.eye(45),
        "hands_mean": np.zeros(45),
        "fingertip_vertex_ids": _fingertips(vertices, weights, skeleton),
        "model_name": skeleton.anatomy.name,
        "shape_names": [name for name, _, _ in coefficients],
        "shape_ranges": np.array([[-3.0, 3.0]] * len(coefficients)),
        "rest_joints": _f32(skeleton.joints),
        "units": "metres",
    }


def _mirror(right: dict[str, Any]) -> dict[str, Any]:
    flip = np.array([-1.0, 1.0, 1.0])
    left = dict(right)
    left["v_template"] = right["v_template"] * flip
    left["f"] = right["f"][:, [0, 2, 1]].copy()
    left["shapedirs"] = (right["shapedirs"] * flip[None, :, None]).astype(right["shapedirs"].dtype)
    left["posedirs"] = mirror_posedirs(right["posedirs"]).astype(right["posedirs"].dtype)
    left["rest_joints"] = right["rest_joints"] * flip
    return left


def build_hand_model(side: str, version: int = DEFAULT_VERSION) -> dict[str, Any]:
    """Build the open hand model for one side as a MANO-schema dict of numpy arrays.

    Args:
        side: ``"right"`` or ``"left"``.
        version: 2 (the committed files, calibrated against real MANO hands,
            ``im2hands-open-hand-v2``) or 1 (the first design, :data:`MODEL_NAME`; see
            :data:`im2hands.hands.anatomy.VERSIONS`).

    Returns:
        Dict with MANO's keys ``v_template (V,3)``, ``f (F,3)``, ``J_regressor (16,V)``,
        ``weights (V,16)``, ``kintree_table (2,16)``, ``shapedirs (V,3,10)``,
        ``posedirs (V,3,135)``, ``hands_components (45,45)``, ``hands_mean (45,)``, plus
        ``fingertip_vertex_ids`` (thumb, index, middle, ring, pinky), ``model_name``,
        ``shape_names``, ``shape_ranges (10,2)``, ``rest_joints (16,3)``, ``units``.
        Metres; right hand: wrist at the origin, fingers +x, palm -y, thumb -z; the left hand
        is its mirror image x -> -x.

    Raises:
        HandModelError: unknown ``side`` or ``version``.
    """
    if side not in ("right", "left"):
        raise HandModelError(f"hand-model side must be 'right' or 'left', got {side!r}")
    right = _right_hand(version)
    return right if side == "right" else _mirror(right)


def write_hand_model(out_dir: str | os.PathLike, version: int = DEFAULT_VERSION) -> list[Path]:
    """Write ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (deterministic bytes) into ``out_dir``.

    Args:
        out_dir: destination folder (created if missing); files are written atomically.
        version: hand-model version (see :func:`build_hand_model`); :data:`DEFAULT_VERSION`
            is the committed one.

    Returns:
        The two paths written (right, left).

    Raises:
        HandModelError: ``out_dir`` is an existing file, or an unknown ``version``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HandModelError(f"hand-model output folder {out_dir} exists and is not a folder")
    right = _right_hand(version)
    paths = []
    for name, model in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", _mirror(right))):
        write_pickle(out_dir / name, model)
        paths.append(out_dir / name)
        logger.info("wrote %s (%d vertices)", out_dir / name, len(model["v_template"]))
    return paths
