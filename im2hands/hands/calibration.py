"""Compare a hand model with real hands: bone ratios, surface extents, and fitting it to a mesh.

Used by ``eval/real_hands.py`` to measure the open hand model against real MANO-topology hands
(docs/hand_model.md, "Calibration"). Everything works on 21 keypoints in the library's
``standard`` order (wrist, then thumb, index, middle, ring, pinky, base to tip) and on closed
triangle meshes, in metres; the reported numbers are in millimetres (cm³ for volumes).

Surface measurements are taken in the hand's palm frame
(:func:`im2hands.geometry.frames.palm_frame`: origin at the wrist joint, fingers along -x, back
of the hand +y, thumb side +z; left hands mirrored), so they do not depend on the camera or the
global pose.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from im2hands.geometry.frames import CM3_PER_M3, apply_transform, m_to_mm, palm_frame
from im2hands.geometry.rotations import matrix_to_axis_angle_np
from im2hands.hands.joint_orders import STANDARD_NAMES, STANDARD_PARENTS
from im2hands.typing import Float, Tensor

BONES: tuple[tuple[int, int], ...] = tuple((p, k) for k, p in enumerate(STANDARD_PARENTS) if p >= 0)
"""The 20 bones ``(parent, child)`` of the ``standard`` skeleton, in child order."""
BONE_NAMES: tuple[str, ...] = tuple(f"{STANDARD_NAMES[p]}->{STANDARD_NAMES[k]}" for p, k in BONES)
"""Name of each bone, e.g. ``"index_mcp->index_pip"``."""
REFERENCE_BONE: tuple[int, int] = (0, 9)
"""Lengths are relative to the wrist -> middle-MCP distance."""

_PROXIMAL = (5, 9, 13, 17)  # MCP -> PIP of index, middle, ring, pinky
_DISTAL = (7, 11, 15, 19)  # DIP -> tip


def bone_lengths(keypoints: np.ndarray) -> np.ndarray:
    """Lengths ``(..., 20)`` of the 20 bones of ``(..., 21, 3)`` standard-order keypoints."""
    kp = np.asarray(keypoints, np.float64)
    parents = np.array([p for p, _ in BONES])
    kids = np.array([k for _, k in BONES])
    return np.linalg.norm(kp[..., kids, :] - kp[..., parents, :], axis=-1)


def bone_ratios(keypoints: np.ndarray) -> np.ndarray:
    """Bone lengths ``(..., 20)`` divided by the wrist -> middle-MCP distance (unitless)."""
    kp = np.asarray(keypoints, np.float64)
    ref = np.linalg.norm(kp[..., REFERENCE_BONE[1], :] - kp[..., REFERENCE_BONE[0], :], axis=-1)
    return bone_lengths(kp) / ref[..., None]


def ratio_difference(ratios: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Relative difference ``|r - ref| / ref`` per bone, ``(..., 20)``; the reference bone
    (wrist -> middle MCP, ratio 1 by definition) is included and always 0."""
    return np.abs(np.asarray(ratios) - reference) / reference


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume (m³) enclosed by a closed, outward-oriented triangle mesh."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def surface_extents(vertices: np.ndarray, faces: np.ndarray, keypoints: np.ndarray,
                    is_left: bool = False) -> dict[str, float]:
    """Surface measurements of one closed hand mesh (any pose), in its palm frame.

    Widths are distances between the first surface hits of two opposite rays from a point on
    the skeleton (median of 9 parallel ray pairs, as ``render_docs`` measures the model).

    Args:
        vertices: ``(V, 3)`` metres; faces: ``(F, 3)`` closed and outward-oriented.
        keypoints: ``(21, 3)`` the hand's keypoints, standard order, same frame.
        is_left: whether the hand is a left hand.

    Returns:
        ``past_wrist_mm``: how far the surface reaches beyond the wrist joint, away from the
        fingers (largest palm-frame x). ``palm_width_mm``: across the palm (palm-frame z)
        through the point 80 % of the way from the wrist to the midpoint of the index and
        little-finger MCPs. ``palm_thickness_mm``: dorsal-volar (y) through the point 60 % of
        the way from the wrist to the middle MCP. ``proximal_width_mm`` / ``distal_width_mm``:
        finger widths across the finger (direction bone x palm normal) at 50 % of the four
        fingers' MCP -> PIP and 40 % of DIP -> tip, averaged over the four fingers.
        ``volume_cm3``: enclosed volume.
    """
    import trimesh

    from im2hands.hands.render_docs import _width_through

    kp_t = torch.as_tensor(np.asarray(keypoints, np.float64))[None]
    T = palm_frame(kp_t, bool(is_left))
    v = apply_transform(T, torch.as_tensor(np.asarray(vertices, np.float64))[None])[0].numpy()
    kp = apply_transform(T, kp_t)[0].numpy()
    f = np.asarray(faces, np.int64)
    mesh = trimesh.Trimesh(v, f[:, [0, 2, 1]] if is_left else f, process=False)
    y, z = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])

    def finger_width(bones: tuple[int, ...], frac: float) -> float:
        values = []
        for j in bones:
            a, b = kp[BONES[j][0]], kp[BONES[j][1]]
            axis = (b - a) / np.linalg.norm(b - a)
            lateral = np.cross(axis, y)
            lateral /= np.linalg.norm(lateral)
            values.append(_width_through(mesh, a + frac * (b - a), lateral))
        return m_to_mm(float(np.mean(values)))

    return {
        "past_wrist_mm": m_to_mm(float(v[:, 0].max())),
        "palm_width_mm": m_to_mm(_width_through(mesh, 0.8 * 0.5 * (kp[5] + kp[17]), z)),
        "palm_thickness_mm": m_to_mm(_width_through(mesh, 0.6 * kp[9], y)),
        "proximal_width_mm": finger_width(_PROXIMAL, 0.5),
        "distal_width_mm": finger_width(_DISTAL, 0.4),
        "volume_cm3": signed_volume(vertices, faces) * CM3_PER_M3,
    }


# ----------------------------------------------------------------------------------------------
# Fitting the hand model to a mesh


@dataclasses.dataclass
class FitResult:
    """Parameters of a hand-model fit, per target (metres, radians)."""

    pose: Float[Tensor, "B 48"]
    shape: Float[Tensor, "B 10"]
    trans: Float[Tensor, "B 3"]
    vertices: Float[Tensor, "B V 3"]
    """The fitted, closed meshes (faces: the model's ``closed_faces``)."""
    keypoints: Float[Tensor, "B 21 3"]
    keypoint_error_mm: Float[Tensor, "B"]
    """Mean keypoint distance after the fit."""


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation ``(3, 3)`` minimising ``sum |R (src_i - mean src) - (dst_i - mean dst)|²``."""
    a = src - src.mean(0)
    b = dst - dst.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def _point_set(vertices: Tensor, faces: Tensor) -> Tensor:
    """Vertices plus face centroids ``(B, V + F, 3)``: a denser, differentiable surface sample."""
    return torch.cat([vertices, vertices[:, faces].mean(dim=2)], dim=1)


def _nearest(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour indices both ways, ``(B, N)`` into ``b`` and ``(B, M)`` into ``a``, from
    one distance matrix (no gradient)."""
    with torch.no_grad():
        d = torch.cdist(a, b)  # (B, N, M)
        return d.argmin(dim=2), d.argmin(dim=1)


def fit_hand_model(model, target_vertices: np.ndarray, target_faces: np.ndarray, target_keypoints: np.ndarray, *,
                   joint_steps: int = 300, surface_steps: int = 300, samples: int = 3000,
                   shape_bound: float = 3.0, seed: int = 0, resample: bool = True) -> FitResult:
    """Fit pose, shape and translation of a hand model to target meshes of one side.

    Stage 1 fits the 21 keypoints (global rotation started from a Kabsch alignment of the
    wrist, the thumb CMC and the four MCPs); stage 2 minimises the two-way point-to-point
    Chamfer-L1 between points of the model's surface and ``samples`` area-weighted points of
    each target surface, with the keypoint term kept at a lower weight. With ``resample``
    (default) both point sets are drawn afresh at every step (the model's: as many as its
    vertices plus faces), so the fit sees the whole surfaces rather than one sparse draw;
    without it, the targets are drawn once and the model's points are its vertices and face
    centroids (the fits measured before 2026-12-08: freihand_138 2.05 against 1.90 mm,
    docs/hand_model.md). Betas are kept in ``[-shape_bound, shape_bound]`` (projected after
    every step).

    Args:
        model: a :class:`~im2hands.hands.layer.HandModel` of the targets' side (not changed: the
            fit runs on a float64 copy).
        target_vertices: ``(B, Vt, 3)`` closed target meshes, metres, any frame.
        target_faces: ``(Ft, 3)`` their shared faces.
        target_keypoints: ``(B, 21, 3)`` their keypoints, standard order, same frame.
        joint_steps, surface_steps: Adam steps of the two stages.
        samples: surface samples per target for the Chamfer term.
        shape_bound: bound on every beta.
        seed: seed of the surface samples.
        resample: draw new surface points at every surface step.

    Returns:
        The :class:`FitResult` (float64 tensors).
    """
    from im2hands.data.sampling import sample_surface

    dtype = torch.float64
    tv = torch.as_tensor(np.asarray(target_vertices), dtype=dtype)
    tf = torch.as_tensor(np.asarray(target_faces, np.int64))
    tk = torch.as_tensor(np.asarray(target_keypoints), dtype=dtype)
    batch = tv.shape[0]
    model = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    gen = torch.Generator().manual_seed(int(seed))
    faces = model.closed_faces

    def target_points() -> Tensor:
        return torch.stack([sample_surface(tv[b], tf, samples, generator=gen)[0] for b in range(batch)])

    def model_points(vertices: Tensor) -> Tensor:
        if not resample:
            return _point_set(vertices, faces)
        n = vertices.shape[1] + faces.shape[0]
        return torch.stack([sample_surface(vertices[b], faces, n, generator=gen)[0] for b in range(batch)])

    targets = target_points()

    zero = torch.zeros(1, 48, dtype=dtype)
    rest = model(zero, torch.zeros(1, 10, dtype=dtype), torch.zeros(1, 3, dtype=dtype)).keypoints[0].numpy()
    anchors = [0, 1, 5, 9, 13, 17]
    pose = torch.zeros(batch, 48, dtype=dtype)
    trans = torch.zeros(batch, 3, dtype=dtype)
    for b in range(batch):
        R = kabsch(rest[anchors], tk[b, anchors].numpy())
        pose[b, :3] = torch.as_tensor(matrix_to_axis_angle_np(R))
        trans[b] = tk[b, 0] - torch.as_tensor(rest[0])
    shape = torch.zeros(batch, 10, dtype=dtype)
    for p in (pose, shape, trans):
        p.requires_grad_(True)

    def run(steps: int, surface: bool) -> None:
        opt = torch.optim.Adam([{"params": [pose], "lr": 0.02}, {"params": [shape], "lr": 0.05},
                                {"params": [trans], "lr": 0.002}])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            out = model(pose, shape, trans)
            kp_err = (out.keypoints - tk).norm(dim=-1).mean(dim=1)  # (B,) metres
            loss = kp_err.sum()
            if surface:
                tgt = target_points() if resample else targets
                pts = model_points(out.vertices)
                i_m, i_t = _nearest(pts, tgt)
                d_m = (pts - torch.gather(tgt, 1, i_m[..., None].expand(-1, -1, 3))).norm(dim=-1).mean(1)
                d_t = (tgt - torch.gather(pts, 1, i_t[..., None].expand(-1, -1, 3))).norm(dim=-1).mean(1)
                loss = 0.2 * loss + (0.5 * (d_m + d_t)).sum()
            loss = loss + 1e-5 * (pose[:, 3:] ** 2).sum() + 1e-6 * (shape ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                shape.clamp_(-shape_bound, shape_bound)

    run(joint_steps, surface=False)
    run(surface_steps, surface=True)
    with torch.no_grad():
        out = model(pose, shape, trans)
        err = m_to_mm((out.keypoints - tk).norm(dim=-1).mean(dim=1))
    return FitResult(pose=pose.detach(), shape=shape.detach(), trans=trans.detach(), vertices=out.vertices,
                     keypoints=out.keypoints, keypoint_error_mm=err)
