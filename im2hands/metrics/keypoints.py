"""Keypoint metrics: MPJPE under two published protocols, and MRRPE.

All inputs are 21 keypoints per hand in the library's ``standard`` order (0 wrist, 9 middle
MCP; see :mod:`im2hands.hands.joint_orders`), in metres, in any common frame (the camera frame
here). Outputs are in millimetres (through :func:`im2hands.geometry.frames.m_to_mm`).

Protocols (``docs/metrics.md`` and ``/work/shared/reference/protocols.md`` section 5):

``wrist`` (InterNet, protocol A)
    Each hand is translated so that its wrist is at the origin, prediction and ground truth
    alike; no scale, no rotation. ``MPJPE = mean_j |(p_j - p_0) - (g_j - g_0)|``.
``mcp_scaled`` (IntagHand, protocol B; reused by Im2Hands)
    Each hand is translated so that its middle MCP (joint 9) is at the origin, and the
    prediction is scaled by ``|g_9 - g_0| / |p_9 - p_0|`` (the wrist-to-middle-MCP bone length
    ratio). ``MPJPE = mean_j |s (p_j - p_9) - (g_j - g_9)|``. Invariant to translating and to
    uniformly scaling the prediction.

MRRPE (mean relative-root position error): the error of the left wrist's position relative
to the right wrist, ``|(pL_0 - pR_0) - (gL_0 - gR_0)|``.

Example:
    >>> import numpy as np
    >>> g = np.random.default_rng(0).normal(size=(21, 3)) * 0.05
    >>> float(mpjpe_wrist(g + 0.3, g))       # a pure translation is no error
    0.0
    >>> round(float(mpjpe_mcp_scaled(2.0 * g + 0.1, g)), 9)  # nor is a uniform scale here
    0.0
"""

from __future__ import annotations

import numpy as np

from im2hands.geometry.frames import m_to_mm

__all__ = [
    "WRIST",
    "MIDDLE_MCP",
    "joint_errors",
    "mpjpe_wrist",
    "mpjpe_mcp_scaled",
    "mrrpe",
]

WRIST: int = 0
"""Standard index of the wrist (root of the wrist-aligned protocol)."""
MIDDLE_MCP: int = 9
"""Standard index of the middle-finger MCP (root of the IntagHand protocol)."""


def _as_keypoints(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2:] != (21, 3):
        raise ValueError(f"{name} must have shape (..., 21, 3), got {arr.shape}")
    return arr


def joint_errors(pred, gt, root: int = WRIST, scale: bool = False) -> np.ndarray:
    """Per-joint Euclidean errors after root alignment (and optional bone-length scaling).

    Args:
        pred: ``(..., 21, 3)`` predicted keypoints, metres, ``standard`` order.
        gt: ``(..., 21, 3)`` ground-truth keypoints, same frame.
        root: the joint both sets are translated to the origin by (0 wrist, 9 middle MCP).
        scale: multiply the root-aligned prediction by ``|g_9 - g_0| / |p_9 - p_0|``.

    Returns:
        ``(..., 21)`` errors in **metres** (the root joint's error is 0).
    """
    p_abs, g_abs = _as_keypoints(pred, "pred"), _as_keypoints(gt, "gt")
    p = p_abs - p_abs[..., root : root + 1, :]
    g = g_abs - g_abs[..., root : root + 1, :]
    if scale:
        bone_p = np.linalg.norm(p_abs[..., MIDDLE_MCP, :] - p_abs[..., WRIST, :], axis=-1)  # (...)
        bone_g = np.linalg.norm(g_abs[..., MIDDLE_MCP, :] - g_abs[..., WRIST, :], axis=-1)
        s = bone_g / np.where(bone_p > 0, bone_p, np.nan)  # (...) NaN for a degenerate prediction
        p = p * s[..., None, None]
    return np.linalg.norm(p - g, axis=-1)


def mpjpe_wrist(pred, gt) -> np.ndarray:
    """MPJPE in mm, wrist-aligned, no scale (InterNet protocol).

    Args:
        pred, gt: ``(..., 21, 3)`` keypoints in metres, ``standard`` order.

    Returns:
        ``(...)`` mean error over the 21 joints, millimetres (a 0-d array for one hand).
    """
    return m_to_mm(joint_errors(pred, gt, root=WRIST, scale=False).mean(-1))


def mpjpe_mcp_scaled(pred, gt) -> np.ndarray:
    """MPJPE in mm, middle-MCP-aligned and bone-length-scaled (IntagHand / Im2Hands protocol).

    Args:
        pred, gt: ``(..., 21, 3)`` keypoints in metres, ``standard`` order.

    Returns:
        ``(...)`` mean error over the 21 joints, millimetres; NaN where the predicted
        wrist and middle MCP coincide (the scale is undefined).
    """
    return m_to_mm(joint_errors(pred, gt, root=MIDDLE_MCP, scale=True).mean(-1))


def mrrpe(pred_left, pred_right, gt_left, gt_right) -> np.ndarray:
    """MRRPE in mm: the error of the left wrist's position relative to the right wrist.

    Args:
        pred_left, pred_right, gt_left, gt_right: ``(..., 21, 3)`` keypoints (metres,
            ``standard`` order), or ``(..., 3)`` wrist positions.

    Returns:
        ``(...)`` ``|(pL_0 - pR_0) - (gL_0 - gR_0)|`` in millimetres.
    """
    def wrist(x, name):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim >= 2 and a.shape[-2:] == (21, 3):
            return a[..., WRIST, :]
        if a.shape[-1:] != (3,):
            raise ValueError(f"{name} must have shape (..., 21, 3) or (..., 3), got {a.shape}")
        return a

    rel_p = wrist(pred_left, "pred_left") - wrist(pred_right, "pred_right")
    rel_g = wrist(gt_left, "gt_left") - wrist(gt_right, "gt_right")
    return m_to_mm(np.linalg.norm(rel_p - rel_g, axis=-1))
