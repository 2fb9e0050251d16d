"""Volumetric IoU between a predicted and a ground-truth mesh on seeded uniform query points.

``IoU = |inside(pred) & inside(gt)| / |inside(pred) | inside(gt)|`` over a fixed set of query
points, the Occupancy Networks / HALO / Im2Hands estimator. Inside/outside comes from
:func:`im2hands.geometry.inside.inside_mesh` (exact winding-number semantics: where parts of
a closed mesh overlap, for instance a finger sunk into the palm, points count as inside).

Query boxes (both sampled uniformly, ``n`` points, a pure function of the seed):

- :func:`palm_box_points` (used when the hand's keypoints are known): HALO's cube of side
  0.44 m (1.1 x 0.4 m), centred at the wrist and axis-aligned in the hand's palm frame
  (:func:`im2hands.geometry.frames.palm_frame`), drawn by
  :func:`im2hands.data.sampling.fixed_iou_points`. Most of the cube is empty space, as in the
  published protocol; only points in the union of the two shapes affect the value.
- :func:`bbox_points` (no keypoints): the ground-truth mesh's axis-aligned bounding box,
  padded by 10 % of its extent on every side.

Open (non-watertight) predicted meshes: the default ``auto`` backend of ``inside_mesh`` would
fall back to the slow exact winding number (libigl is not a dependency). :func:`inside` uses
the Embree ray backend for them as well; points whose two opposite rays disagree (the rays
that pass through a hole) get the exact generalized winding number, so the labels are those
of the generalized winding number wherever the rays see a closed surface.
"""

from __future__ import annotations


import numpy as np
import torch

from im2hands.data.sampling import HALO_BOX_SIDE, fixed_iou_points
from im2hands.geometry.frames import palm_frame
from im2hands.geometry.inside import has_embree, inside_mesh

__all__ = ["BBOX_PAD", "iou_from_occupancy", "inside", "palm_box_points", "bbox_points", "mesh_iou"]

BBOX_PAD = 0.1
"""Padding of the ground-truth bounding box on each side, as a fraction of its extent."""


def iou_from_occupancy(pred_occ, gt_occ) -> float:
    """``|pred & gt| / |pred | gt|`` of two boolean occupancy vectors.

    Returns 1.0 when both are empty (two empty shapes agree everywhere).
    """
    p = np.asarray(pred_occ, dtype=bool)
    g = np.asarray(gt_occ, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"occupancy shapes differ: {p.shape} vs {g.shape}")
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


def inside(vertices, faces, points) -> np.ndarray:
    """Inside labels (N,) bool of ``points`` for a mesh, closed or not (see module docstring).

    Args:
        vertices: (V, 3) float, metres.
        faces: (F, 3) int.
        points: (N, 3) query points, same frame.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if len(f) == 0 or len(p) == 0:
        return np.zeros(len(p), dtype=bool)
    # embree for closed meshes is what "auto" picks; for open ones see the module docstring
    backend = "embree" if has_embree() else "auto"
    return np.asarray(inside_mesh(v, f, p, backend=backend), dtype=bool)


def palm_box_points(
    keypoints, is_left: bool, n: int = 100_000, seed: int = 0, side: float = HALO_BOX_SIDE
) -> np.ndarray:
    """``n`` seeded uniform points in the hand's palm-frame cube (HALO's IoU points).

    Args:
        keypoints: (21, 3) ``standard``-order keypoints of the hand, metres.
        is_left: whether it is a left hand (its palm frame is mirrored).
        n: number of points.
        seed: the points are a pure function of (keypoints, is_left, n, side, seed).
        side: cube side in metres (0.44).

    Returns:
        (n, 3) float64 points in the keypoints' frame.
    """
    kp = torch.as_tensor(np.asarray(keypoints, np.float64))[None]  # (1, 21, 3)
    T = palm_frame(kp, bool(is_left))[0]  # (4, 4) input frame -> palm frame
    axes = T[:3, :3].T  # palm axes as columns
    return fixed_iou_points(kp[0, 0], axes, n=int(n), side=float(side), seed=int(seed)).numpy()


def bbox_points(vertices, n: int = 100_000, seed: int = 0, pad: float = BBOX_PAD) -> np.ndarray:
    """``n`` seeded uniform points in the vertices' bounding box padded by ``pad`` x extent per side.

    Args:
        vertices: (V, 3) float, metres.
        n: number of points.
        seed: the points are a pure function of (vertices, n, pad, seed).
        pad: padding per side as a fraction of the box extent along that axis.

    Returns:
        (n, 3) float64 points.
    """
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    ext = hi - lo
    lo, hi = lo - pad * ext, hi + pad * ext
    u = torch.rand(int(n), 3, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).numpy()
    return lo + u * (hi - lo)


def mesh_iou(pred_vertices, pred_faces, gt_vertices, gt_faces, points, gt_occupancy=None) -> float:
    """Volumetric IoU of two meshes on the given query points.

    Args:
        pred_vertices, pred_faces: predicted mesh, (V, 3) metres and (F, 3) int.
        gt_vertices, gt_faces: ground-truth mesh, same frame.
        points: (N, 3) query points (:func:`palm_box_points` or :func:`bbox_points`).
        gt_occupancy: (N,) bool ground-truth labels if already known (skips that inside test).

    Returns:
        IoU in [0, 1].
    """
    occ_gt = inside(gt_vertices, gt_faces, points) if gt_occupancy is None else np.asarray(gt_occupancy, bool)
    occ_pred = inside(pred_vertices, pred_faces, points)
    return iou_from_occupancy(occ_pred, occ_gt)
