"""Every frame and unit change of the library, in one module (pure tensor functions).

Frames, all in metres unless a ``scale`` says otherwise:

``world``
    The dataset's world frame (InterHand2.6M: world-oriented, metres here).
``camera``
    OpenCV convention: +x right, +y down, +z forward (into the scene);
    ``x_cam = R x_world + t`` (:func:`world_to_camera`). Pixels follow the same axes
    (``u`` right, ``v`` down, origin at the top-left pixel's corner as in ``K``).
``mirrored``
    Left hands are mirrored ``x -> -x`` (:func:`mirror_x`) so that every hand looks like a
    right hand; right hands are left unchanged.
``palm``
    The palm-normalised frame of one hand (HALO's ``transform_to_canonical`` followed by
    ``change_axes``; reference sections 2.0 and 8), built by :func:`palm_frame` from its 21
    keypoints (``standard`` order): mirror if left, then

    - origin at the wrist;
    - ``-x`` along the wrist -> middle-MCP direction (fingers point to ``-x``);
    - ``+y`` along the palm normal ``n = (wrist->middle MCP) x (wrist->index MCP)``, which,
      for a right hand (and a mirrored left hand), points out of the **back of the hand**
      (dorsal side); the palm faces ``-y``;
    - ``+z = x cross y`` points towards the **thumb** side (radial side) of the hand.

    With ``scale = s`` the coordinates are divided by ``s`` (HALO stores data in units of
    :data:`HALO_SCALE` = 0.4 m, the "/0.4 normalised frame").

Millimetres appear only through :func:`m_to_mm` / :func:`mm_to_m`.
"""

from __future__ import annotations

import numpy as np
import torch

from im2hands.geometry.rotations import invert_transform, make_transform, normalize
from im2hands.typing import Bool, Float, Tensor

__all__ = [
    "HALO_SCALE",
    "CM3_PER_M3",
    "project_np",
    "orthonormal_basis",
    "WRIST",
    "INDEX_MCP",
    "MIDDLE_MCP",
    "mirror_x",
    "mirror_matrix",
    "to_homogeneous",
    "apply_transform",
    "project",
    "world_to_camera",
    "camera_to_world",
    "m_to_mm",
    "mm_to_m",
    "palm_rotation",
    "palm_frame",
    "palm_frame_inverse",
    "rescale_transform",
]

HALO_SCALE: float = 0.4
"""Length unit of HALO's normalised frame, in metres (1 unit = 0.4 m)."""

WRIST: int = 0
"""``standard``-order index of the wrist (see :mod:`im2hands.hands.joint_orders`)."""
INDEX_MCP: int = 5
"""``standard``-order index of the index-finger MCP."""
MIDDLE_MCP: int = 9
"""``standard``-order index of the middle-finger MCP (root of the IntagHand protocol)."""


def mirror_x(points: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3"]:
    """Mirror ``x -> -x`` (left hand <-> right-like hand). Applying it twice is the identity.

    Example:
        >>> mirror_x(torch.tensor([1.0, 2.0, 3.0]))
        tensor([-1.,  2.,  3.])
    """
    return points * points.new_tensor([-1.0, 1.0, 1.0])


def mirror_matrix(is_left: Bool[Tensor, "B"]) -> Float[Tensor, "B 3 3"]:
    """``diag(-1, 1, 1)`` where ``is_left`` else the identity (float32; cast as needed)."""
    sign = 1.0 - 2.0 * is_left.float()
    ones = torch.ones_like(sign)
    return torch.diag_embed(torch.stack([sign, ones, ones], -1))  # (B, 3, 3)


def to_homogeneous(points: Float[Tensor, "... N 3"]) -> Float[Tensor, "... N 4"]:
    """Append a 1 to every point."""
    return torch.cat([points, torch.ones_like(points[..., :1])], -1)


def apply_transform(T: Float[Tensor, "... 4 4"], points: Float[Tensor, "... N 3"]) -> Float[Tensor, "... N 3"]:
    """Apply homogeneous transforms to point sets: ``T[:3, :3] @ p + T[:3, 3]``.

    Args:
        T: ``(..., 4, 4)`` transforms (affine; the last row is ignored).
        points: ``(..., N, 3)`` points; leading dimensions broadcast against ``T``'s.

    Returns:
        ``(..., N, 3)`` transformed points.
    """
    if T.shape[-2:] != (4, 4) or points.shape[-1] != 3:
        raise ValueError(f"expected T (..., 4, 4) and points (..., N, 3), got {tuple(T.shape)}, {tuple(points.shape)}")
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def project(p_cam: Float[Tensor, "B N 3"], K: Float[Tensor, "B 3 3"], eps: float = 1e-6) -> Float[Tensor, "B N 2"]:
    """Pinhole projection of camera-frame points to pixels (OpenCV axes).

    ``uv = (K p)[:2] / (K p)[2]``; depths with ``|z| < eps`` are replaced by ``+-eps``.

    Args:
        p_cam: ``(B, N, 3)`` points in the camera frame, metres (+z forward).
        K: ``(B, 3, 3)`` intrinsics (pixels).

    Returns:
        ``(B, N, 2)`` pixel coordinates ``(u, v)`` (+u right, +v down).

    Example:
        >>> K = torch.tensor([[[100.0, 0.0, 64.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]]])
        >>> project(torch.tensor([[[0.1, -0.2, 2.0]]]), K)
        tensor([[[69., 22.]]])
    """
    if p_cam.shape[-1] != 3 or K.shape[-2:] != (3, 3):
        raise ValueError(f"expected p_cam (B, N, 3) and K (B, 3, 3), got {tuple(p_cam.shape)}, {tuple(K.shape)}")
    q = p_cam @ K.transpose(-1, -2)  # (B, N, 3)
    z = q[..., 2:]
    z = torch.where(z.abs() < eps, torch.full_like(z, eps).copysign(z), z)
    return q[..., :2] / z


def world_to_camera(
    p_world: Float[Tensor, "B N 3"], R: Float[Tensor, "B 3 3"], t: Float[Tensor, "B 3"]
) -> Float[Tensor, "B N 3"]:
    """``x_cam = R x_world + t`` (metres).

    Args:
        p_world: ``(B, N, 3)`` world points, metres.
        R: ``(B, 3, 3)`` world-to-camera rotation.
        t: ``(B, 3)`` world-to-camera translation, metres.

    Returns:
        ``(B, N, 3)`` camera-frame points, metres.
    """
    return p_world @ R.transpose(-1, -2) + t[..., None, :]


def camera_to_world(
    p_cam: Float[Tensor, "B N 3"], R: Float[Tensor, "B 3 3"], t: Float[Tensor, "B 3"]
) -> Float[Tensor, "B N 3"]:
    """Inverse of :func:`world_to_camera`: ``x_world = R^T (x_cam - t)``."""
    return (p_cam - t[..., None, :]) @ R


def orbit_view(
    points: Float[Tensor, "N 3"], center: Float[Tensor, "3"], angle_deg: float
) -> Float[Tensor, "N 3"]:
    """Camera-frame points as seen by the camera orbited by ``angle_deg`` about the vertical
    (camera y) axis through ``center`` (for side views in pictures; metres in, metres out).

    The camera keeps its distance to ``center`` and looks at it; positive angles move it to
    the right (+x): at 90 degrees a point at ``center + (d, 0, 0)`` is ``d`` nearer to it.
    """
    a = torch.deg2rad(torch.tensor(float(angle_deg), dtype=points.dtype))
    c, s = torch.cos(a), torch.sin(a)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    R = torch.stack([torch.stack([c, zero, s]), torch.stack([zero, one, zero]), torch.stack([-s, zero, c])])
    return (points - center) @ R.T + center


def m_to_mm(x: Tensor) -> Tensor:
    """Metres to millimetres (the only ``* 1000`` in the library)."""
    return x * 1000.0


def mm_to_m(x: Tensor) -> Tensor:
    """Millimetres to metres."""
    return x / 1000.0


def project_np(points: np.ndarray, K: np.ndarray, min_depth: float | None = None) -> np.ndarray:
    """numpy twin of :func:`project`: pixels ``(K p)[:2] / z`` of ``(N, 3)`` camera-frame points
    (any unit) for ``(3, 3)`` intrinsics; with ``min_depth`` the depth is clipped from below
    (points behind the camera then project far away instead of dividing by ~0).

    Returns:
        ``(N, 2)`` pixels.
    """
    uvw = points @ K.T
    z = uvw[:, 2:] if min_depth is None else np.clip(uvw[:, 2:], min_depth, None)
    return uvw[:, :2] / z


CM3_PER_M3: float = 1e6
"""Cubic centimetres per cubic metre (volumes are reported in cm³)."""


def orthonormal_basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``e1, e2`` with ``(e1, e2, u)`` right-handed orthonormal, for a unit
    ``(3,)`` numpy vector ``u`` (``e1`` is perpendicular to ``u`` and to x, or to y when ``u``
    is close to x)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, u)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _check_keypoints(keypoints: Tensor) -> None:
    if keypoints.dim() != 3 or keypoints.shape[-2:] != (21, 3):
        raise ValueError(f"expected keypoints of shape (B, 21, 3), got {tuple(keypoints.shape)}")


def _left_mask(is_left: bool | Tensor, batch: int, device: torch.device) -> Tensor:
    mask = torch.as_tensor(is_left, dtype=torch.bool, device=device)
    if mask.dim() == 0:
        mask = mask.expand(batch)
    if mask.shape != (batch,):
        raise ValueError(f"expected is_left to be a bool or of shape ({batch},), got {tuple(mask.shape)}")
    return mask


def palm_rotation(keypoints: Float[Tensor, "B 21 3"]) -> Float[Tensor, "B 3 3"]:
    """Proper rotation (det +1) taking a right(-like) hand's directions to the palm frame.

    Rows are ``(-u, n, (-u) x n)`` with ``u`` the unit wrist -> middle-MCP direction and ``n``
    the unit ``(wrist->middle MCP) x (wrist->index MCP)``. This is exactly HALO's
    ``change_axes . R2 . R1``: R1 = minimal rotation of ``u`` to ``-y``, R2 = minimal rotation of
    ``R1 n`` to ``+z``, then new (x, y, z) = old (y, z, x); built here by Gram-Schmidt instead,
    which has no half-turn ambiguity.

    Args:
        keypoints: ``(B, 21, 3)`` keypoints, ``standard`` order, already mirrored if left.

    Returns:
        ``(B, 3, 3)`` rotation ``R``; ``R (p - wrist)`` are palm-frame coordinates.
    """
    _check_keypoints(keypoints)
    wrist = keypoints[:, WRIST]
    u = normalize(keypoints[:, MIDDLE_MCP] - wrist)
    n = normalize(torch.cross(u, keypoints[:, INDEX_MCP] - wrist, dim=-1))
    return torch.stack([-u, n, torch.cross(-u, n, dim=-1)], -2)  # (B, 3, 3) rows = new axes


def palm_frame(
    keypoints: Float[Tensor, "B 21 3"], is_left: bool | Bool[Tensor, "B"], scale: float = 1.0
) -> Float[Tensor, "B 4 4"]:
    """Transform from a hand's input frame (world or camera) to its palm frame.

    ``p_palm = R M (p - wrist) / scale`` with ``M = diag(-1, 1, 1)`` for left hands (identity
    for right hands) and ``R = palm_rotation(M keypoints)``; see the module docstring for the
    axes. ``R`` is proper; the linear part has det ``-1 / scale^3`` for left hands because of
    the mirror.

    Args:
        keypoints: ``(B, 21, 3)`` keypoints of one hand, ``standard`` order, metres, any
            right-handed frame (world or camera).
        is_left: bool or ``(B,)`` bool, which hands are left hands.
        scale: length unit of the palm frame in metres (1.0: metres; :data:`HALO_SCALE`: HALO's
            /0.4 normalised frame).

    Returns:
        ``(B, 4, 4)`` transforms; use with :func:`apply_transform`.

    Example:
        >>> kp = torch.zeros(1, 21, 3)
        >>> kp[0, 9] = torch.tensor([0.0, 0.1, 0.0]); kp[0, 5] = torch.tensor([-0.02, 0.1, 0.0])
        >>> apply_transform(palm_frame(kp, False), kp[:, [9]])
        tensor([[[-0.1000,  0.0000,  0.0000]]])
    """
    _check_keypoints(keypoints)
    left = _left_mask(is_left, keypoints.shape[0], keypoints.device)
    M = mirror_matrix(left).to(keypoints.dtype)  # (B, 3, 3)
    R = palm_rotation(keypoints @ M)  # M is diagonal, so p @ M == (M p)^T
    linear = (R @ M) / scale
    wrist = keypoints[:, WRIST]
    return make_transform(linear, -(linear @ wrist[..., None]).squeeze(-1))


def palm_frame_inverse(
    keypoints: Float[Tensor, "B 21 3"], is_left: bool | Bool[Tensor, "B"], scale: float = 1.0
) -> Float[Tensor, "B 4 4"]:
    """Transform from the palm frame back to the keypoints' input frame (inverse of :func:`palm_frame`).

    Args:
        keypoints: ``(B, 21, 3)`` as for :func:`palm_frame`.
        is_left: bool or ``(B,)`` bool.
        scale: palm-frame unit in metres, as for :func:`palm_frame`.

    Returns:
        ``(B, 4, 4)`` transforms: ``p = wrist + M R^T (scale p_palm)``.
    """
    return invert_transform(palm_frame(keypoints, is_left, scale))


def rescale_transform(T: Float[Tensor, "... 4 4"], scale: float) -> Float[Tensor, "... 4 4"]:
    """Express a metric transform in units of ``scale`` metres: ``S(1/scale) T S(scale)``.

    HALO's ``scale_halo_trans_mat`` is ``rescale_transform(T, HALO_SCALE)``: it maps points in
    0.4 m units to the transformed points in 0.4 m units.
    """
    out = T.clone()
    out[..., :3, 3] = T[..., :3, 3] / scale
    return out
