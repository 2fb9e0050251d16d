"""Stand-ins for trained occupancy networks, with the :class:`~im2hands.models.base.HandsModel`
``encode`` / ``decode`` interface, for tests and benchmarks of the extraction pipeline.

- :class:`MeshOccupancy` ("the oracle"): the exact occupancy of the ground-truth meshes of a
  batch (``vertices (B, 2, V, 3)``, ``faces (2, F, 3)`` or ``(B, 2, F, 3)`` in the camera frame,
  as :class:`~im2hands.data.dataset.HandsDataset` gives them), by winding number
  (:func:`~im2hands.geometry.inside.winding_number`). Its values are 0 or 1, so marching
  cubes puts vertices on edge midpoints: at most half a cell from the true surface.
- :class:`SkeletonOccupancy`: a keypoint-only field, a soft union of capsules around the 20
  bones of the keypoint skeleton (:func:`capsule_occupancy`), for inputs without meshes
  (keypoint files).

Both decode on the CPU in numpy/torch whatever the device of the points, and return float32
probabilities on the points' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from im2hands.geometry.inside import winding_number
from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.models.base import HandsModel
from im2hands.typing import Float, Tensor

__all__ = ["MeshOccupancy", "SkeletonOccupancy", "capsule_occupancy", "skeleton_segments"]

_BONES = np.array([(p, j) for j, p in enumerate(STANDARD_PARENTS) if p >= 0], dtype=np.int64)  # (20, 2)


def skeleton_segments(keypoints: Float[Tensor, "... 21 3"] | np.ndarray) -> np.ndarray:
    """The 20 bones of a ``standard``-order skeleton as segments ``(..., 20, 2, 3)`` (parent, child)."""
    kp = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    return kp[..., _BONES, :]


def capsule_occupancy(points: np.ndarray, segments: np.ndarray, radius: float | np.ndarray, softness: float) -> np.ndarray:
    """Soft union of capsules: ``sigmoid((r - d) / softness)`` with ``d`` the distance to the nearest segment.

    Args:
        points: ``(N, 3)``.
        segments: ``(S, 2, 3)`` capsule axes, same frame and unit.
        radius: capsule radius, a number or ``(S,)``; the 0.5 level set is exactly the surface
            of the union of the capsules.
        softness: width of the transition; 0 gives a 0/1 field.

    Returns:
        ``(N,)`` float32 in [0, 1].
    """
    p = np.asarray(points, dtype=np.float64)
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 3)
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(seg),))
    best = np.full(len(p), -np.inf)  # max over capsules of r - d
    for (a, b), r in zip(seg, rad):
        ab = b - a
        t = np.clip((p - a) @ ab / max(float(ab @ ab), 1e-30), 0.0, 1.0)
        d = np.linalg.norm(p - (a + t[:, None] * ab), axis=1)
        np.maximum(best, r - d, out=best)
    if softness <= 0:
        return (best >= 0).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(best / softness, -60.0, 60.0)))).astype(np.float32)



def _points_np(points: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Query points ``(B, 2, N, 3)`` as float64 numpy, and a zero ``(B, 2, N)`` float32 output."""
    if points.dim() != 4 or points.shape[1] != 2 or points.shape[-1] != 3:
        raise ValueError(f"expected points of shape (B, 2, N, 3), got {tuple(points.shape)}")
    p = points.detach().cpu().double().numpy()
    return p, np.zeros(p.shape[:3], dtype=np.float32)

class MeshOccupancy(HandsModel):
    """The oracle: winding-number occupancy of the batch's ground-truth meshes.

    ``encode(batch)`` returns ``{"vertices": (B, 2, V, 3), "faces": (B, 2, F, 3)}`` (numpy,
    camera frame, metres); ``decode(points (B, 2, N, 3), features)`` returns ``(B, 2, N)``
    float32 in {0, 1}. Batches need ``vertices`` and ``faces``; ``needs_ground_truth`` tells the
    extraction job to load them.

    Args:
        threshold: the iso-level the extractor uses (0.5).
    """

    stage = "oracle"
    decodes_occupancy = True
    needs_ground_truth = True

    def __init__(self, *, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def encode(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        if "vertices" not in batch or "faces" not in batch:
            raise ValueError("MeshOccupancy needs ground-truth 'vertices' (B, 2, V, 3) and 'faces' in the batch")
        v = torch.as_tensor(batch["vertices"]).detach().cpu().double().numpy()
        f = torch.as_tensor(batch["faces"]).detach().cpu().long().numpy()
        if v.ndim != 4 or v.shape[1] != 2 or v.shape[-1] != 3:
            raise ValueError(f"expected vertices of shape (B, 2, V, 3), got {v.shape}")
        if f.ndim == 3:
            f = np.broadcast_to(f, (v.shape[0], *f.shape))
        return {"vertices": v, "faces": f}

    def decode(self, points: Float[Tensor, "B 2 N 3"], features: dict[str, np.ndarray]) -> Float[Tensor, "B 2 N"]:
        p, out = _points_np(points)
        for b in range(p.shape[0]):
            for h in range(2):
                w = winding_number(features["vertices"][b, h], features["faces"][b, h], p[b, h])
                out[b, h] = np.abs(w) >= 0.5
        return torch.from_numpy(out).to(points.device)


class SkeletonOccupancy(HandsModel):
    """A keypoint-only stand-in: soft capsules around the bones of each hand's keypoints.

    ``encode(batch)`` reads ``keypoints`` ``(B, 2, 21, 3)`` (camera frame, metres, standard
    order); ``decode`` returns ``sigmoid((radius - d) / softness)`` per hand.

    Args:
        radius: capsule radius, metres (9 mm: a finger).
        softness: transition width, metres.
        threshold: iso-level (0.5).
    """

    stage = "skeleton"
    decodes_occupancy = True

    def __init__(self, *, radius: float = 0.009, softness: float = 0.002, threshold: float = 0.5) -> None:
        super().__init__()
        self.radius, self.softness, self.threshold = float(radius), float(softness), float(threshold)

    def encode(self, batch: dict[str, Any]) -> np.ndarray:
        kp = batch["keypoints"]
        if kp.dim() != 4 or kp.shape[1:] != (2, 21, 3):
            raise ValueError(f"expected keypoints of shape (B, 2, 21, 3), got {tuple(kp.shape)}")
        return skeleton_segments(kp.double())  # (B, 2, 20, 2, 3)

    def decode(self, points: Float[Tensor, "B 2 N 3"], features: np.ndarray) -> Float[Tensor, "B 2 N"]:
        p, out = _points_np(points)
        for b in range(p.shape[0]):
            for h in range(2):
                out[b, h] = capsule_occupancy(p[b, h], features[b, h], self.radius, self.softness)
        return torch.from_numpy(out).to(points.device)
