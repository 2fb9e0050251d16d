"""Surface metrics between two meshes: Chamfer-L1/L2, normal consistency, F-score.

Definitions (Occupancy Networks' ``MeshEvaluator``, as used by HALO and Im2Hands, plus the
F-score of Tatarchenko et al. 2019); ``P`` are samples on the prediction, ``G`` on the ground
truth, ``d(x, S)`` the distance from ``x`` to its nearest neighbour in the sample set ``S``:

- accuracy ``acc = mean_{p in P} d(p, G)``; completeness ``comp = mean_{g in G} d(g, P)``
- ``chamfer_l1 = 0.5 (acc + comp)`` (Euclidean distances, **mm**)
- ``chamfer_l2 = 0.5 (mean d(p, G)^2 + mean d(g, P)^2)`` (**mm²**)
- ``normal_consistency = 0.5 (mean |n_p . n_nn(p)| + mean |n_g . n_nn(g)|)`` (face normals of
  the sampled triangles; absolute value as in OccNet, so it ignores orientation)
- F-score at ``tau``: precision = fraction of ``P`` with ``d(p, G) < tau``, recall = fraction
  of ``G`` with ``d(g, P) < tau``, ``F = 2 P R / (P + R)`` (0 when both are 0).

Nearest neighbours come from ``scipy.spatial.cKDTree`` queried with ``workers=-1`` (all
cores); ``torch.cdist`` is about 250 times slower on the CPU at 100k points
(``docs/dependencies.md``). Inputs are in metres; distances are converted with
:func:`im2hands.geometry.frames.m_to_mm`.

Sampling (:func:`mesh_surface_metrics`): ``n`` area-weighted samples on each mesh with
:func:`im2hands.data.sampling.sample_surface`, both drawn from generators seeded with the
**same** seed (common random numbers). The two sample sets are each uniform on their own
surface, so nothing is biased, and identical meshes get identical samples: their Chamfer
distance is exactly 0 and their F-score and normal consistency exactly 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree

from im2hands.data.sampling import sample_surface
from im2hands.geometry.frames import m_to_mm

__all__ = [
    "DEFAULT_THRESHOLDS_MM",
    "CURVE_THRESHOLDS_MM",
    "nearest_neighbours",
    "fscore",
    "fscore_key",
    "point_metrics",
    "mesh_surface_metrics",
]

DEFAULT_THRESHOLDS_MM: tuple[float, ...] = (1.0, 2.0, 5.0)
"""F-score thresholds reported as ``fscore_1mm``, ``fscore_2mm``, ``fscore_5mm``."""
CURVE_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.5, 10.01, 0.5), 2))
"""Thresholds of the F-score curve (0.5 to 10 mm in steps of 0.5 mm)."""


def nearest_neighbours(src: np.ndarray, dst: np.ndarray, workers: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Distance from every ``src`` point to its nearest ``dst`` point, and that point's index.

    Args:
        src: (N, 3) query points.
        dst: (M, 3) points the tree is built on (M >= 1).
        workers: threads of the query (-1: all cores).

    Returns:
        distances (N,) in the input unit and indices (N,) into ``dst``.
    """
    tree = cKDTree(np.asarray(dst, np.float64), balanced_tree=False, compact_nodes=False)
    dist, idx = tree.query(np.asarray(src, np.float64), k=1, workers=workers)
    return dist, idx


def fscore(
    dist_pred_to_gt_mm: np.ndarray, dist_gt_to_pred_mm: np.ndarray, thresholds_mm: Sequence[float]
) -> np.ndarray:
    """F-scores at several thresholds from the two one-way nearest-neighbour distances.

    Args:
        dist_pred_to_gt_mm: (N,) distances from prediction samples to the ground truth, mm.
        dist_gt_to_pred_mm: (M,) distances from ground-truth samples to the prediction, mm.
        thresholds_mm: thresholds ``tau`` in mm.

    Returns:
        (T,) F-scores in [0, 1].
    """
    tau = np.asarray(thresholds_mm, np.float64)
    a = np.sort(np.asarray(dist_pred_to_gt_mm, np.float64))
    b = np.sort(np.asarray(dist_gt_to_pred_mm, np.float64))
    precision = np.searchsorted(a, tau, side="left") / max(len(a), 1)  # fraction strictly below tau
    recall = np.searchsorted(b, tau, side="left") / max(len(b), 1)
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)


def fscore_key(tau: float) -> str:
    """The result key of the F-score at ``tau`` mm: ``fscore_1mm``, ``fscore_1p5mm``."""
    return f"fscore_{tau:g}mm".replace(".", "p")


def point_metrics(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    pred_normals: np.ndarray | None = None,
    gt_normals: np.ndarray | None = None,
    thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    curve_mm: Sequence[float] | None = None,
    workers: int = -1,
) -> dict:
    """Chamfer, normal consistency and F-scores between two point sets (metres in).

    Args:
        pred_points: (N, 3) samples on the prediction, metres.
        gt_points: (M, 3) samples on the ground truth, metres.
        pred_normals, gt_normals: (N, 3), (M, 3) unit normals, or None (no normal consistency).
        thresholds_mm: F-score thresholds reported as ``fscore_<t>mm`` keys (``1.5`` -> ``fscore_1p5mm``).
        curve_mm: optional thresholds for an F-score curve (``fscore_curve`` key).
        workers: cKDTree query threads.

    Returns:
        dict with ``accuracy_mm``, ``completeness_mm``, ``chamfer_l1_mm``, ``chamfer_l2_mm2``,
        ``normal_consistency`` (NaN without normals), one ``fscore_<t>mm`` per threshold, and
        ``fscore_curve`` (list, one value per ``curve_mm`` threshold) when ``curve_mm`` is given.
    """
    d_pg, i_pg = nearest_neighbours(pred_points, gt_points, workers)  # pred -> gt
    d_gp, i_gp = nearest_neighbours(gt_points, pred_points, workers)  # gt -> pred
    d_pg_mm, d_gp_mm = m_to_mm(d_pg), m_to_mm(d_gp)
    acc, comp = float(d_pg_mm.mean()), float(d_gp_mm.mean())
    out = {
        "accuracy_mm": acc,
        "completeness_mm": comp,
        "chamfer_l1_mm": 0.5 * (acc + comp),
        "chamfer_l2_mm2": 0.5 * (float(np.mean(d_pg_mm**2)) + float(np.mean(d_gp_mm**2))),
        "normal_consistency": float("nan"),
    }
    if pred_normals is not None and gt_normals is not None:
        pn, gn = np.asarray(pred_normals, np.float64), np.asarray(gt_normals, np.float64)
        nc_p = np.abs(np.einsum("ij,ij->i", pn, gn[i_pg])).mean()
        nc_g = np.abs(np.einsum("ij,ij->i", gn, pn[i_gp])).mean()
        out["normal_consistency"] = float(0.5 * (nc_p + nc_g))
    taus = list(thresholds_mm) + (list(curve_mm) if curve_mm is not None else [])
    fs = fscore(d_pg_mm, d_gp_mm, taus)
    for tau, f in zip(thresholds_mm, fs[: len(thresholds_mm)]):
        out[fscore_key(float(tau))] = float(f)
    if curve_mm is not None:
        out["fscore_curve"] = [float(f) for f in fs[len(thresholds_mm) :]]
    return out


def mesh_surface_metrics(
    pred_vertices: np.ndarray,
    pred_faces: np.ndarray,
    gt_vertices: np.ndarray,
    gt_faces: np.ndarray,
    n_points: int = 100_000,
    seed: int = 0,
    thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    curve_mm: Sequence[float] | None = None,
    workers: int = -1,
) -> dict:
    """:func:`point_metrics` on ``n_points`` area-weighted samples of each mesh.

    Args:
        pred_vertices, pred_faces: predicted mesh, (V, 3) metres and (F, 3) int.
        gt_vertices, gt_faces: ground-truth mesh, same frame.
        n_points: samples per mesh (100k in the published protocol).
        seed: both meshes are sampled from generators with this seed (see module docstring).
        thresholds_mm, curve_mm, workers: see :func:`point_metrics`.

    Returns:
        The dict of :func:`point_metrics`.
    """
    samples = []
    for v, f in ((pred_vertices, pred_faces), (gt_vertices, gt_faces)):
        gen = torch.Generator().manual_seed(int(seed))
        pts, nrm = sample_surface(torch.as_tensor(np.asarray(v, np.float64)), torch.as_tensor(np.asarray(f, np.int64)),
                                  int(n_points), generator=gen)
        samples.append((pts.numpy(), nrm.numpy()))
    (pp, pn), (gp, gn) = samples
    return point_metrics(pp, gp, pn, gn, thresholds_mm=thresholds_mm, curve_mm=curve_mm, workers=workers)
