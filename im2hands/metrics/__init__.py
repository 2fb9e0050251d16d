"""Evaluation metrics for two-hand reconstructions (``im2hands eval``; ``docs/metrics.md``).

- :mod:`~im2hands.metrics.iou`: volumetric IoU on seeded uniform points (palm-frame cube or
  padded bounding box), exact winding-number inside tests
- :mod:`~im2hands.metrics.chamfer`: Chamfer-L1 (mm) and -L2 (mm²), normal consistency,
  F-scores, from area-weighted surface samples and cKDTree nearest neighbours
- :mod:`~im2hands.metrics.keypoints`: MPJPE wrist-aligned (InterNet) and middle-MCP-aligned,
  bone-length-scaled (IntagHand / Im2Hands), MRRPE (mm)
- :mod:`~im2hands.metrics.penetration`: volume inside both hands (cm³)
- :mod:`~im2hands.metrics.evaluator`: per-item evaluation of folders, CSV / JSON / plots

Inputs are in metres (camera frame); reported lengths are in millimetres.
"""

from im2hands.metrics.chamfer import (
    CURVE_THRESHOLDS_MM,
    DEFAULT_THRESHOLDS_MM,
    fscore,
    fscore_key,
    mesh_surface_metrics,
    nearest_neighbours,
    point_metrics,
)
from im2hands.metrics.evaluator import (
    SUMMARY_KEYS,
    HandMesh,
    evaluate_folder,
    evaluate_item,
    item_seed,
    read_keypoint_file,
    read_obj,
    summarize,
)
from im2hands.metrics.iou import bbox_points, inside, iou_from_occupancy, mesh_iou, palm_box_points
from im2hands.metrics.keypoints import joint_errors, mpjpe_mcp_scaled, mpjpe_wrist, mrrpe
from im2hands.metrics.penetration import intersection_volume, penetration_volume_cm3

__all__ = [
    "CURVE_THRESHOLDS_MM",
    "DEFAULT_THRESHOLDS_MM",
    "SUMMARY_KEYS",
    "HandMesh",
    "bbox_points",
    "evaluate_folder",
    "evaluate_item",
    "fscore",
    "fscore_key",
    "inside",
    "intersection_volume",
    "iou_from_occupancy",
    "item_seed",
    "joint_errors",
    "mesh_iou",
    "mesh_surface_metrics",
    "mpjpe_mcp_scaled",
    "mpjpe_wrist",
    "mrrpe",
    "nearest_neighbours",
    "palm_box_points",
    "penetration_volume_cm3",
    "point_metrics",
    "read_keypoint_file",
    "read_obj",
    "summarize",
]
