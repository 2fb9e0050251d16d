"""Evaluate a folder of predicted two-hand meshes against ground truth (``im2hands eval``).

Inputs (camera frame, metres):

- ``pred_dir``: per item ``NAME_left.obj`` and ``NAME_right.obj``, and optionally
  ``NAME_keypoints.json`` (the keypoint-file format, ``docs/keypoints_format.md``:
  ``{"order": ..., "left": {"joints": [[x, y, z] x 21]}, "right": ...}``); ``im2hands extract``
  writes all three (its keypoints are the ones the meshes were made from).
- ``gt_dir``: either a dataset folder in the toolkit's format (meshes rebuilt from the stored
  hand-model parameters, keypoints from the annotations, items = the ids of ``split``, by
  default ``test`` as for ``im2hands extract``), or a folder of mesh files named like the
  predictions (optional ``NAME_keypoints.json``; items = every NAME with a mesh, or
  ``splits/<split>.txt`` when a split other than ``all`` is named).

Per item and hand: IoU, Chamfer-L1/L2, normal consistency, F-scores, MPJPE under two protocols
(when both keypoint sets are known); per item: MRRPE and the penetration volume between the
two predicted hands (and between the two ground-truth hands, for reference). Definitions and
units: ``docs/metrics.md``.

An item fails (skipped, reported, exit code non-zero) when it has no predicted hand, a file
is unreadable (keypoints, annotation) or anything else goes wrong (its ``error``); one predicted
hand of two is scored, the other counted missing. Random draws depend only on ``(seed, NAME,
hand)``: results do not depend on item order and repeat exactly.

Outputs in ``out_dir`` (written atomically): ``per_item.csv``, ``summary.json``, ``iou_hist.png``,
``chamfer_hist.png``, ``fscore_curve.png`` (tables and plots: :mod:`im2hands.metrics.report`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from im2hands.data.files import read_keypoints, read_obj  # noqa: F401 - read_obj is part of this module's API
from im2hands.geometry.frames import m_to_mm
from im2hands.geometry.inside import is_closed
from im2hands.hands.constants import SIDES
from im2hands.metrics.chamfer import CURVE_THRESHOLDS_MM, DEFAULT_THRESHOLDS_MM, mesh_surface_metrics
from im2hands.metrics.iou import bbox_points, inside, iou_from_occupancy, palm_box_points
from im2hands.metrics.keypoints import MIDDLE_MCP, mpjpe_mcp_scaled, mpjpe_wrist, mrrpe
from im2hands.metrics.penetration import LINE_SPACING, penetration_volume_cm3
from im2hands.metrics.report import _ITEM_KEYS, _hand_keys, csv_text, write_plots
from im2hands.utils.errors import DataError
from im2hands.utils.io import check_output_path, output_dir, write_json, write_text

ALIGN_MODES = ("none", "root")
"""``--align``: ``none`` (camera frame as given) or ``root`` (each predicted hand moved onto the
ground truth's root joint before the shape metrics; :func:`evaluate_item`)."""
ALIGN_JOINT = MIDDLE_MCP
"""The root joint of ``--align root``: the middle-finger MCP (standard order), as in the
bone-length-scaled keypoint protocol (docs/metrics.md)."""

__all__ = [
    "SUMMARY_KEYS",
    "HandMesh",
    "read_obj",
    "read_keypoint_file",
    "item_seed",
    "evaluate_item",
    "summarize",
    "evaluate_folder",
]

log = logging.getLogger(__name__)

SUMMARY_KEYS: tuple[str, ...] = (
    "iou", "chamfer_l1_mm", "chamfer_l2_mm2", "normal_consistency", "fscore_1mm", "fscore_2mm", "fscore_5mm",
    "mpjpe_wrist_mm", "mpjpe_mcp_scaled_mm", "mrrpe_mm", "penetration_cm3",
)  # fmt: skip
"""The headline keys of ``summary.json`` (with the default F-score thresholds)."""



# ----------------------------------------------------------------------------- reading


@dataclass
class HandMesh:
    """One hand of one item: a triangle mesh and, when known, its keypoints (camera frame, metres)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    keypoints: np.ndarray | None = None  # (21, 3) float64, standard order


def read_keypoint_file(path: str | Path) -> dict[str, np.ndarray]:
    """The hands' keypoints from a keypoint JSON file, converted to ``standard`` order
    (:func:`~im2hands.data.files.read_keypoints` without the camera-frame checks: ``camera``
    is ignored, any depth is accepted, a file may hold no hand).

    Returns:
        ``{side: (21, 3) float64}`` for the hands present.
    """
    return read_keypoints(path, camera_frame=False, require_hand=False).joints


def _mesh_names(folder: Path) -> list[str]:
    names = set()
    for side in SIDES:
        suffix = f"_{side}.obj"
        names.update(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    return sorted(names)


class _DatasetGT:
    """Ground truth from a dataset folder: meshes from the hand-model parameters."""

    kind = "dataset"

    def __init__(self, root: Path, split: str, mano_dir: str | None):
        from im2hands.data import format as fmt
        from im2hands.hands.layer import load_hand_models

        self.root, self._fmt = root, fmt
        meta = fmt.read_meta(root)
        self.names = fmt.list_samples(root, split)
        log.info("dataset %s, split '%s': %d items", root, split, len(self.names))
        self.models = load_hand_models(mano_dir, source="--mano-dir")
        want = meta.get("hand_model", {}).get("name")
        have = self.models["right"].model_name
        if want is not None and want != have:
            raise DataError(
                f"{root}: the dataset was made with hand model '{want}' but '{have}' is loaded; "
                "pass --mano-dir (or set IM2HANDS_MANO_DIR) to the matching files"
            )

    def load(self, name: str) -> dict[str, HandMesh]:
        from im2hands.data.dataset import mesh_in_camera

        ann = self._fmt.read_annotation(self.root, name)
        hands = {}
        for side in SIDES:
            h = ann.hands.get(side)
            if h is None or not h.valid:
                continue
            v = mesh_in_camera(self.models[side], h, ann.R, ann.t).double().cpu().numpy()
            f = self.models[side].closed_faces.cpu().numpy().astype(np.int64)
            hands[side] = HandMesh(v, f, np.asarray(h.keypoints, np.float64))
        if not hands:
            raise DataError(f"{self.root}/annotations/{name}.json: no valid hand")
        return hands


class _MeshFolderGT:
    """Ground truth from ``NAME_left.obj`` / ``NAME_right.obj`` (+ ``NAME_keypoints.json``) files."""

    kind = "meshes"

    def __init__(self, root: Path, split: str):
        self.root = root
        if split == "all":
            self.names = _mesh_names(root)
        else:
            path = root / "splits" / f"{split}.txt"
            if not path.is_file():
                raise DataError(f"{root}: a mesh folder has no split '{split}' (no {path.name}); use --split all")
            self.names = [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def load(self, name: str) -> dict[str, HandMesh]:
        kp_path = self.root / f"{name}_keypoints.json"
        kps = read_keypoint_file(kp_path) if kp_path.is_file() else {}
        hands = {}
        for side in SIDES:
            path = self.root / f"{name}_{side}.obj"
            if path.is_file():
                v, f = read_obj(path)
                hands[side] = HandMesh(v, f, kps.get(side))
        if not hands:
            raise DataError(f"{self.root}: no ground-truth mesh for item '{name}'")
        return hands


def _load_prediction(pred_dir: Path, name: str, sides: Sequence[str]) -> dict[str, HandMesh]:
    """The predicted hands of ``sides`` that exist (a missing one is left out); none fails the item."""
    kp_path = pred_dir / f"{name}_keypoints.json"
    kps = read_keypoint_file(kp_path) if kp_path.is_file() else {}
    hands = {}
    for side in sides:
        path = pred_dir / f"{name}_{side}.obj"
        if path.is_file():
            v, f = read_obj(path)
            hands[side] = HandMesh(v, f, kps.get(side))
    if not hands:
        raise DataError(f"missing prediction: {pred_dir / f'{name}_{sides[0]}.obj'}" if sides else f"{name}: no hand")
    return hands


# ----------------------------------------------------------------------------- one item


def item_seed(seed: int, name: str) -> int:
    """The seed of item ``name``: a pure function of (seed, name), independent of item order."""
    seq = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])
    return int(seq.generate_state(1, np.uint64)[0] >> 1)


def _sub_seed(base: int, *keys: int) -> int:
    seq = np.random.SeedSequence([base & 0xFFFFFFFF, base >> 32, *keys])
    return int(seq.generate_state(1, np.uint64)[0] >> 1)


def evaluate_item(
    pred: dict[str, HandMesh],
    gt: dict[str, HandMesh],
    n_points: int = 100_000,
    seed: int = 0,
    thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    curve_mm: Sequence[float] | None = CURVE_THRESHOLDS_MM,
    workers: int = -1,
    torch_threads: int | None = 1,
    align: str = "none",
) -> dict[str, Any]:
    """Every metric of one item (two hands); hands absent from ``gt`` are not evaluated, a ``gt``
    hand absent from ``pred`` is **missing**: listed in ``missing``, not scored (never zero-filled).

    Args:
        pred: ``{side: HandMesh}`` predicted meshes (and keypoints, optional), one per
            ground-truth hand that was predicted.
        gt: ``{side: HandMesh}`` ground-truth meshes and keypoints (keypoints optional).
        n_points: IoU query points, surface samples per mesh, and penetration points.
        seed: the item's seed (:func:`item_seed`).
        thresholds_mm: F-score thresholds; curve_mm: thresholds of the F-score curve.
        workers: cKDTree query threads (-1: all cores).
        torch_threads: torch intra-op threads while evaluating (restored afterwards; None:
            leave as is). The torch work here is small element-wise maths, for which one
            thread is as fast on an idle machine and several times faster on a busy one.
        align: ``none`` (the meshes as given, camera frame) or ``root``: before the shape
            metrics (IoU, Chamfer, normals, F-scores), each predicted hand is translated so that
            its predicted root joint (:data:`ALIGN_JOINT`, the middle-finger MCP) lands on the
            ground truth's, as image-only methods that predict root-relative hands are compared.
            Keypoint metrics align by their own definitions; MRRPE and penetration use the
            meshes as given. Needs both keypoint sets (else the item fails).

    Returns:
        ``{"hands": {side: {metric: value}}, "missing": [side, ...], "mrrpe_mm",
        "penetration_cm3", "penetration_gt_cm3"}``; NaN where a metric cannot be computed (no
        keypoints, one hand only).
    """
    with _torch_threads(torch_threads):
        return _evaluate_item(pred, gt, n_points, seed, thresholds_mm, curve_mm, workers, align)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate_item(pred, gt, n_points, seed, thresholds_mm, curve_mm, workers, align="none") -> dict[str, Any]:
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    hands: dict[str, dict[str, Any]] = {}
    missing = [side for side in SIDES if side in gt and side not in pred]
    if len(missing) == len(gt):
        raise DataError(f"no predicted {' or '.join(missing)} hand")
    for h, side in enumerate(SIDES):
        if side not in gt or side not in pred:
            continue
        p, g = pred[side], gt[side]
        shift = np.zeros(3)
        if align == "root":
            if p.keypoints is None or g.keypoints is None:
                raise DataError(f"--align root needs predicted and ground-truth keypoints ({side} hand)")
            shift = g.keypoints[ALIGN_JOINT] - p.keypoints[ALIGN_JOINT]
            p = HandMesh(p.vertices + shift, p.faces, p.keypoints + shift)
        if g.keypoints is not None:
            points = palm_box_points(g.keypoints, side == "left", n_points, _sub_seed(seed, 0, h))
            box = "palm"
        else:
            points = bbox_points(g.vertices, n_points, _sub_seed(seed, 0, h))
            box = "bbox"
        res: dict[str, Any] = {"iou": iou_from_occupancy(inside(p.vertices, p.faces, points),
                                                         inside(g.vertices, g.faces, points))}
        res.update(mesh_surface_metrics(p.vertices, p.faces, g.vertices, g.faces, n_points, _sub_seed(seed, 1, h),
                                        thresholds_mm=thresholds_mm, curve_mm=curve_mm, workers=workers))
        known = p.keypoints is not None and g.keypoints is not None
        res["mpjpe_wrist_mm"] = float(mpjpe_wrist(p.keypoints, g.keypoints)) if known else math.nan
        res["mpjpe_mcp_scaled_mm"] = float(mpjpe_mcp_scaled(p.keypoints, g.keypoints)) if known else math.nan
        res["iou_box"] = box
        res["align_shift_mm"] = float(m_to_mm(np.linalg.norm(shift)))
        res["pred_vertices"], res["pred_faces"] = int(len(p.vertices)), int(len(p.faces))
        res["pred_closed"] = bool(is_closed(p.faces))
        hands[side] = res
    out: dict[str, Any] = {"hands": hands, "missing": missing, "mrrpe_mm": math.nan, "penetration_cm3": math.nan,
                           "penetration_gt_cm3": math.nan}
    if all(s in gt and s in pred for s in SIDES):
        kp = [pred[s].keypoints for s in SIDES] + [gt[s].keypoints for s in SIDES]
        if all(k is not None for k in kp):
            out["mrrpe_mm"] = float(mrrpe(*kp))
        pen_seed = _sub_seed(seed, 2)
        out["penetration_cm3"] = penetration_volume_cm3(pred["left"].vertices, pred["left"].faces,
                                                        pred["right"].vertices, pred["right"].faces, n_points, pen_seed)
        out["penetration_gt_cm3"] = penetration_volume_cm3(gt["left"].vertices, gt["left"].faces,
                                                           gt["right"].vertices, gt["right"].faces, n_points, pen_seed)
    return out


# ----------------------------------------------------------------------------- aggregation


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def summarize(results: list[dict[str, Any]], thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
              curve_mm: Sequence[float] | None = CURVE_THRESHOLDS_MM) -> dict[str, Any]:
    """``summary.json``'s content from per-item results (see :func:`evaluate_folder`).

    Per-hand metrics are averaged over every evaluated (item, hand) pair that has them (the
    headline keys) and over each hand separately (``left``, ``right``); ``mrrpe_mm`` and the
    penetration volumes over items with both hands. ``None``: nothing measured. A missing hand
    (not predicted) is in no mean: ``counts.missing_hands`` and ``missing`` list it.
    """
    ok = [r for r in results if r["status"] == "ok"]
    keys = _hand_keys(thresholds_mm)
    per_side = {s: {k: [r["hands"][s][k] for r in ok if s in r["hands"]] for k in keys} for s in SIDES}
    summary: dict[str, Any] = {k: _mean(per_side["left"][k] + per_side["right"][k]) for k in keys}
    for k in _ITEM_KEYS:
        summary[k] = _mean([r[k] for r in ok])
    for s in SIDES:
        summary[s] = {k: _mean(per_side[s][k]) for k in keys}
    if curve_mm is not None:
        curves = {s: [r["hands"][s]["fscore_curve"] for r in ok if s in r["hands"]] for s in SIDES}
        both = curves["left"] + curves["right"]
        summary["fscore_curve"] = {
            "thresholds_mm": [float(t) for t in curve_mm],
            "all": np.mean(both, 0).tolist() if both else None,
            **{s: (np.mean(c, 0).tolist() if c else None) for s, c in curves.items()},
        }

    def finite(vals):
        return sum(1 for v in vals if v is not None and math.isfinite(v))

    summary["counts"] = {
        "items": len(results),
        "evaluated": len(ok),
        "failed": len(results) - len(ok),
        "hands": {s: len(per_side[s]["iou"]) for s in SIDES},
        "missing_hands": {s: sum(1 for r in ok if s in r.get("missing", ())) for s in SIDES},
        "mpjpe_hands": {s: finite(per_side[s]["mpjpe_wrist_mm"]) for s in SIDES},
        "mrrpe_items": finite([r["mrrpe_mm"] for r in ok]),
        "penetration_items": finite([r["penetration_cm3"] for r in ok]),
        "pred_open_hands": sum(1 for r in ok for h in r["hands"].values() if not h.get("pred_closed", True)),
    }
    summary["failed"] = {r["name"]: r["error"] for r in results if r["status"] != "ok"}
    summary["missing"] = {r["name"]: list(r["missing"]) for r in ok if r.get("missing")}
    secs = [r["seconds"] for r in ok]
    summary["timing"] = {"seconds_per_item": _mean(secs), "seconds_items_total": float(sum(secs))}
    return _jsonable(summary)


def evaluate_folder(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    split: str | None = None,
    n_points: int = 100_000,
    seed: int = 0,
    thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    curve_mm: Sequence[float] | None = CURVE_THRESHOLDS_MM,
    mano_dir: str | None = None,
    plots: bool = True,
    progress: bool | None = None,
    workers: int = -1,
    align: str = "none",
) -> dict[str, Any]:
    """Evaluate every ground-truth item; write ``per_item.csv``, ``summary.json`` and plots.

    Args:
        pred_dir: folder of ``NAME_left.obj``, ``NAME_right.obj`` [, ``NAME_keypoints.json``].
        gt_dir: a dataset folder (has ``meta.json``) or a folder of mesh files named alike.
        out_dir: output folder (created).
        split: dataset split whose ids are the items (``all``: every complete sample); for a
            mesh folder, ``all`` (every NAME) or a ``splits/<split>.txt`` in it. None: ``test``
            for a dataset (the default split of ``im2hands extract``), ``all`` for a mesh folder.
        n_points: IoU points, surface samples per mesh and penetration points (100k).
        seed: base seed; item ``NAME`` uses :func:`item_seed` ``(seed, NAME)``.
        thresholds_mm: F-score thresholds (keys ``fscore_<t>mm``).
        curve_mm: thresholds of the F-score curve plot (None: no curve).
        mano_dir: hand-model folder for dataset ground truth (None: ``IM2HANDS_MANO_DIR`` or
            the open model).
        plots: write the PNG plots.
        progress: show a progress bar (None: when stderr is a terminal).
        workers: cKDTree query threads (-1: all cores).
        align: ``none`` or ``root`` (:func:`evaluate_item`; recorded in the summary's settings).

    Returns:
        The summary dict (also written to ``summary.json``); ``summary["counts"]["failed"]``
        is the number of failed items.
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    pred_dir, gt_dir, out = Path(pred_dir), Path(gt_dir), check_output_path(out_dir)
    if n_points < 1:
        raise DataError(f"--points must be at least 1, got {n_points}")
    if align not in ALIGN_MODES:
        raise DataError(f"--align must be one of {', '.join(ALIGN_MODES)}, got {align!r}")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder not found: {pred_dir}")
    if not gt_dir.is_dir():
        raise DataError(f"ground-truth folder not found: {gt_dir}")
    if (gt_dir / "meta.json").is_file():
        split = "test" if split is None else split
        gt: _DatasetGT | _MeshFolderGT = _DatasetGT(gt_dir, split, mano_dir)
    else:
        split = "all" if split is None else split
        gt = _MeshFolderGT(gt_dir, split)
    if not gt.names:
        raise DataError(f"{gt_dir}: no ground-truth items (split '{split}')")
    unmatched = sorted(set(_mesh_names(pred_dir)) - set(gt.names))
    if unmatched:
        log.warning("%d predictions have no ground truth and are ignored (e.g. %s)", len(unmatched), unmatched[0])

    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    with logging_redirect_tqdm() if show else contextlib.nullcontext():
        for name in tqdm(gt.names, desc="eval", unit="item", disable=not show):
            results.append(_run_item(name, gt, pred_dir, n_points, seed, thresholds_mm, curve_mm, workers, align))

    summary = summarize(results, thresholds_mm, curve_mm)
    summary["counts"]["unmatched_predictions"] = len(unmatched)
    summary["timing"]["seconds_total"] = time.perf_counter() - t_start
    summary["settings"] = {
        "pred": str(pred_dir), "gt": str(gt_dir), "gt_kind": gt.kind, "split": split, "points": int(n_points),
        "seed": int(seed), "align": align, "fscore_thresholds_mm": [float(t) for t in thresholds_mm],
        "penetration": {"method": "lines", "spacing_mm": float(m_to_mm(LINE_SPACING))},
    }
    output_dir(out)
    write_text(out / "per_item.csv", csv_text(results, thresholds_mm))
    write_json(out / "summary.json", summary)
    if plots:
        write_plots(results, summary, out)
    c = summary["counts"]
    log.info("evaluated %d of %d items (%d failed; %d missing and %d open predicted hands) in %.1f s; IoU %s, "
             "Chamfer-L1 %s mm", c["evaluated"], len(results), c["failed"], sum(c["missing_hands"].values()),
             c["pred_open_hands"], summary["timing"]["seconds_total"], _fmt(summary["iou"]), _fmt(summary["chamfer_l1_mm"]))
    return summary


def _run_item(name, gt, pred_dir, n_points, seed, thresholds_mm, curve_mm, workers, align="none") -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        gt_hands = gt.load(name)
        pred_hands = _load_prediction(pred_dir, name, list(gt_hands))
        res = evaluate_item(pred_hands, gt_hands, n_points=n_points, seed=item_seed(seed, name),
                            thresholds_mm=thresholds_mm, curve_mm=curve_mm, workers=workers, align=align)
        res.update(name=name, status="ok", error="; ".join(f"no predicted {s} hand" for s in res["missing"]))
        notes = [res["error"]] * bool(res["missing"]) + [f"predicted {s} hand open (scored by winding number)"
                                                         for s, h in res["hands"].items() if not h["pred_closed"]]
        if notes:
            log.warning("item %s: %s", name, "; ".join(notes))
    except (DataError, ValueError) as exc:  # bad input files, degenerate (zero-area) meshes
        log.warning("item %s failed: %s", name, exc)
        res = _failed(name, str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken item must not stop the run; the row says what broke
        log.warning("item %s failed: %s: %s", name, type(exc).__name__, exc)
        log.debug("item %s failed", name, exc_info=True)
        res = _failed(name, f"{type(exc).__name__}: {exc}")
    res["seconds"] = time.perf_counter() - t0
    return res


def _failed(name: str, error: str) -> dict[str, Any]:
    """The result row of an item that could not be evaluated."""
    return {"name": name, "status": "failed", "error": error, "hands": {}, **{k: math.nan for k in _ITEM_KEYS}}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"
