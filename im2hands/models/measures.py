"""Losses and measures shared by the models (one home for each), and the keypoint protocols.

Tensor helpers (torch, any device): :func:`mean_where`, :func:`masked_mean`,
:func:`occupancy_loss` (stages 1 and 2), :func:`hand_iou` (volumetric IoU per hand on query
points), :func:`aligned_joint_errors_mm` (stage 3).

Keypoint protocols (numpy; also what ``im2hands eval`` reports through
:mod:`im2hands.metrics.keypoints`):

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
import torch
import torch.nn.functional as F

from im2hands.geometry.frames import MIDDLE_MCP, WRIST, m_to_mm
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.typing import Bool, Float, Tensor

__all__ = [
    "WRIST",
    "MIDDLE_MCP",
    "OCC_LOSSES",
    "mean_where",
    "masked_mean",
    "occupancy_loss",
    "hand_iou",
    "aligned_joint_errors_mm",
    "joint_errors",
    "mpjpe_wrist",
    "mpjpe_mcp_scaled",
    "mrrpe",
]


# --------------------------------------------------------------------------- tensor helpers


def mean_where(x: Tensor, valid: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over entries where ``valid`` (0 where none); NaN-safe for invalid entries."""
    w = valid.to(x.dtype)
    total = torch.where(valid, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / w.sum().clamp(min=1.0)
    return total.sum(dim) / w.sum(dim).clamp(min=1.0)


OCC_LOSSES = ("mse", "bce")
"""Occupancy losses of stages 1 and 2: ``mse`` (the original's, on probabilities), ``bce`` (on logits)."""


def occupancy_loss(
    occupancy: Float[Tensor, "B 2 N"], logits: Float[Tensor, "B 2 N"], target: Tensor, valid: Bool[Tensor, "B 2"],
    loss: str,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-hand occupancy loss, mean over each hand's valid samples, summed over hands.

    Returns ``(loss, terms)``: ``terms`` holds the detached ``mse_left``/``mse_right`` (always)
    and ``bce_left``/``bce_right`` (with ``loss="bce"``); ``loss`` is the MSE sum, or the BCE sum
    of the logits with ``loss="bce"``.
    """
    gt = target.to(occupancy.dtype)
    mse = mean_where(((occupancy - gt) ** 2).mean(-1), valid, 0)  # (2,)
    terms = {"mse_left": mse[LEFT].detach(), "mse_right": mse[RIGHT].detach()}
    if loss != "bce":
        return mse.sum(), terms
    bce = F.binary_cross_entropy_with_logits(logits.float(), gt.float(), reduction="none").mean(-1)
    bce = mean_where(bce, valid, 0)  # (2,)
    terms.update(bce_left=bce[LEFT].detach(), bce_right=bce[RIGHT].detach())
    return bce.sum(), terms


def masked_mean(values: Float[Tensor, "B 2"], valid: Bool[Tensor, "B 2"], empty: float = 0.0) -> Float[Tensor, ""]:
    """Mean over the valid entries; ``empty`` when there are none (0 for losses, NaN for metrics)."""
    w = valid.to(values.dtype)
    n = w.sum()
    mean = (values * w).sum() / n.clamp(min=1.0)
    return torch.where(n > 0, mean, mean.new_tensor(empty))


def aligned_joint_errors_mm(
    pred: Float[Tensor, "B 2 21 3"], gt: Float[Tensor, "B 2 21 3"], align: bool = True
) -> Float[Tensor, "B 2 21"]:
    """Per-joint Euclidean errors in mm, each hand re-centred at its own middle MCP.

    Args:
        pred, gt: ``(B, 2, 21, 3)`` keypoints, camera frame, metres, ``standard`` order.
        align: subtract each hand's own middle MCP (index 9) from prediction and ground truth
            first; False: absolute errors.

    Returns:
        ``(B, 2, 21)`` errors, mm.
    """
    if align:
        pred = pred - pred[:, :, MIDDLE_MCP : MIDDLE_MCP + 1]
        gt = gt - gt[:, :, MIDDLE_MCP : MIDDLE_MCP + 1]
    return m_to_mm(pred - gt).norm(dim=-1)


def hand_iou(pred: Bool[Tensor, "B 2 N"], gt: Bool[Tensor, "B 2 N"]) -> Float[Tensor, "B 2"]:
    """Volumetric IoU per hand over the query points (1 where prediction and ground truth are
    both empty)."""
    inter, union = (pred & gt).sum(-1).float(), (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


# --------------------------------------------------------------------------- keypoint protocols


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
