"""Real-photo evaluation: ``im2hands extract --images`` on photos with ground truth, scored per hand.

    python eval/real_photos.py [--data eval/real_photos] --out OUT [--pred DIR] [-- EXTRACT_ARGS...]

``--data`` holds ``images/NAME.jpg|png`` (each with its camera file ``images/NAME.json``,
``{"camera": {"K": ...}}``) and ``gt/NAME.json``, the ground truth as a keypoint file
(``docs/keypoints_format.md``: camera frame, metres; a hand the photo does not show is absent).
Unless ``--pred`` names an existing output of ``im2hands extract``, the script runs the real
command, ``python -m im2hands extract --images DATA/images --out OUT/extract EXTRACT_ARGS``
(the shipped models unless the extra arguments say otherwise), and scores its
``NAME_keypoints.json`` files. Only keypoints are scored (the meshes are not read), so
``-- --resolution 16 --upsampling-steps 1`` gives the same scores faster.

Scoring, per photo (``score_item``):

- predicted and ground-truth hands are paired by their 2D keypoints: the pairing with the
  smallest total mean 2D distance, where a pair counts only when that distance is at most
  :data:`MATCH_FACTOR` x the ground-truth hand's 2D size (the longer side of its keypoints'
  bounding box, px). A paired ground-truth hand is *found*; it has the *right side* when the
  predicted label (left / right) equals the true one. An unpaired ground-truth hand is
  *missed*; an unpaired predicted hand is a *false hand*.
- for a found hand: the 2D error (px, mean over the 21 joints of the distance between the
  projections through each file's ``K``), the hand's 2D size (px), the 2D error scaled to a
  150 px hand (``2D px * 150 / size``, the issue's target scale), MPJPE in mm, wrist-aligned
  and MCP-aligned-scaled (:mod:`im2hands.metrics.keypoints`), and the wrist's absolute
  position error in the camera frame (mm; where the camera and depth matter);
- MRRPE (mm) for photos with two ground-truth hands when both were found.

Outputs in ``OUT``: ``real_photos.md`` (the table), ``per_item.csv``, ``summary.json`` and
``overview.png`` (each photo with the ground-truth skeleton in white and the predicted ones in
the side colours, left orange, right blue); ``OUT/extract`` holds the meshes and the overlays
of ``im2hands extract``. Exit code: 0 when scored (also when extract failed items: they
count as missed hands), 2 for bad arguments or data.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import io
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.data.show import HAND_COLORS
from im2hands.extraction.inputs import IMAGE_SUFFIXES, KeypointFile, read_keypoints
from im2hands.hands.constants import SIDES
from im2hands.hands.conventions import to_convention
from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.geometry.frames import m_to_mm
from im2hands.metrics.keypoints import WRIST, mpjpe_mcp_scaled, mpjpe_wrist, mrrpe
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import atomic_path, write_json, write_text

MATCH_FACTOR = 1.0
"""A predicted hand pairs with a ground-truth hand when their mean 2D keypoint distance is at
most this many times the ground-truth hand's 2D size."""
TARGET_HAND_PX = 150.0
"""The hand size the issue's 2D target refers to (``2D error <= 15 px for hands about 150 px wide``)."""
TARGETS = {"error_2d_px_at_150": 15.0, "mpjpe_wrist_mm": 35.0}
KEYPOINTS_SUFFIX = "_keypoints.json"
TILE_HEIGHT = 320


def project(joints: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``(21, 3)`` camera-frame metres -> ``(21, 2)`` pixels through ``K``."""
    uvw = np.asarray(joints, dtype=np.float64) @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:]


def hand_size_px(uv: np.ndarray) -> float:
    """The longer side of the bounding box of a hand's 2D keypoints, pixels."""
    return float((uv.max(0) - uv.min(0)).max())


def match_hands(pred_uv: dict[str, np.ndarray], gt_uv: dict[str, np.ndarray]) -> dict[str, str]:
    """Pair predicted with ground-truth hands by their 2D keypoints.

    Args:
        pred_uv, gt_uv: side -> ``(21, 2)`` pixels of the hands present.

    Returns:
        ground-truth side -> predicted side, for the pairing with the most pairs and, among
        those, the smallest total mean 2D distance; a pair is allowed only when that distance
        is at most :data:`MATCH_FACTOR` x the ground-truth hand's size.
    """
    allowed = {}
    for g, p in itertools.product(gt_uv, pred_uv):
        d = float(np.linalg.norm(pred_uv[p] - gt_uv[g], axis=-1).mean())
        if d <= MATCH_FACTOR * hand_size_px(gt_uv[g]):
            allowed[g, p] = d
    best: tuple[int, float, dict[str, str]] = (0, 0.0, {})
    gts, preds = list(gt_uv), list(pred_uv)
    for k in range(1, min(len(gts), len(preds)) + 1):
        for gsel in itertools.combinations(gts, k):
            for psel in itertools.permutations(preds, k):
                pairs = list(zip(gsel, psel))
                if all(pair in allowed for pair in pairs):
                    cost = sum(allowed[pair] for pair in pairs)
                    if k > best[0] or (k == best[0] and cost < best[1]):
                        best = (k, cost, dict(pairs))
    return best[2]


def score_item(gt: KeypointFile, pred: KeypointFile | None) -> dict[str, Any]:
    """Score one photo's predicted keypoints against its ground truth.

    Args:
        gt: the ground-truth keypoint file (``K`` required).
        pred: the predicted keypoint file (``NAME_keypoints.json`` of extract; its own ``K``, else
            the ground truth's, projects it), or None when extract produced nothing.

    Returns:
        ``{"hands": {gt side: {...}}, "false_hands": [predicted sides], "mrrpe_mm": float | None}``;
        per ground-truth hand ``found``, ``pred_side``, ``right_side``, ``size_px`` and, when
        found, ``error_2d_px``, ``error_2d_px_at_150``, ``mpjpe_wrist_mm``, ``mpjpe_mcp_scaled_mm``,
        ``wrist_position_mm``.
    """
    if gt.K is None:
        raise Im2HandsError("the ground truth needs 'camera.K' (to project it)")
    gt_uv = {s: project(j, gt.K) for s, j in gt.joints.items()}
    pred_joints = {} if pred is None else pred.joints
    pred_K = gt.K if pred is None or pred.K is None else pred.K
    pred_uv = {s: project(j, pred_K) for s, j in pred_joints.items()}
    pairs = match_hands(pred_uv, gt_uv)
    hands: dict[str, dict[str, Any]] = {}
    for side in gt.joints:
        size = hand_size_px(gt_uv[side])
        rec: dict[str, Any] = {"found": side in pairs, "pred_side": pairs.get(side), "right_side": pairs.get(side) == side,
                               "size_px": size}  # fmt: skip
        if side in pairs:
            p = pairs[side]
            err = float(np.linalg.norm(pred_uv[p] - gt_uv[side], axis=-1).mean())
            rec.update(error_2d_px=err, error_2d_px_at_150=err * TARGET_HAND_PX / size,
                       mpjpe_wrist_mm=float(mpjpe_wrist(pred_joints[p], gt.joints[side])),
                       mpjpe_mcp_scaled_mm=float(mpjpe_mcp_scaled(pred_joints[p], gt.joints[side])),
                       wrist_position_mm=float(m_to_mm(np.linalg.norm(pred_joints[p][WRIST] - gt.joints[side][WRIST]))))  # fmt: skip
        hands[side] = rec
    false_hands = [p for p in pred_joints if p not in pairs.values()]
    mrrpe_mm = None
    if len(gt.joints) == 2 and len(pairs) == 2:
        mrrpe_mm = float(mrrpe(pred_joints[pairs["left"]], pred_joints[pairs["right"]], gt.joints["left"], gt.joints["right"]))
    return {"hands": hands, "false_hands": false_hands, "mrrpe_mm": mrrpe_mm}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over photos (``{name: score_item(...)}``): counts, and means over found hands."""
    hands = [h for s in scores.values() for h in s["hands"].values()]
    found = [h for h in hands if h["found"]]
    out: dict[str, Any] = {
        "items": len(scores),
        "gt_hands": len(hands),
        "found": len(found),
        "found_right_side": sum(h["right_side"] for h in hands),
        "missed": len(hands) - len(found),
        "false_hands": sum(len(s["false_hands"]) for s in scores.values()),
        "items_with_false_hands": sum(bool(s["false_hands"]) for s in scores.values()),
    }
    for key in ("error_2d_px", "size_px", "error_2d_px_at_150", "mpjpe_wrist_mm", "mpjpe_mcp_scaled_mm", "wrist_position_mm"):
        out[f"mean_{key}"] = _mean([h[key] for h in found])
    out["mean_mrrpe_mm"] = _mean([s["mrrpe_mm"] for s in scores.values() if s["mrrpe_mm"] is not None])
    out["two_hand_items_scored"] = sum(s["mrrpe_mm"] is not None for s in scores.values())
    out["targets"] = {
        "every_hand_found_right_side": out["found_right_side"] == out["gt_hands"],
        "no_false_hands": out["false_hands"] == 0,
        **{f"{k}<={v:g}": (out[f"mean_{k}"] is not None and out[f"mean_{k}"] <= v) for k, v in TARGETS.items()},
    }
    return out


# --------------------------------------------------------------------------- outputs


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


CSV_HAND_KEYS = ("found", "pred_side", "right_side", "size_px", "error_2d_px", "error_2d_px_at_150", "mpjpe_wrist_mm",
                 "mpjpe_mcp_scaled_mm", "wrist_position_mm")  # fmt: skip


def per_item_csv(scores: dict[str, dict[str, Any]], extract_records: dict[str, dict]) -> str:
    """One row per photo: extract's status and camera, then per side the hand's scores."""
    header = ["name", "extract_status", "camera", "gt_hands", "false_hands"]
    header += [f"{s}_{k}" for s in SIDES for k in CSV_HAND_KEYS] + ["mrrpe_mm"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for name, s in scores.items():
        rec = extract_records.get(name, {})
        row = [name, rec.get("status", "missing"), rec.get("camera") or "", "+".join(s["hands"]), "+".join(s["false_hands"])]
        for side in SIDES:
            h = s["hands"].get(side, {})
            row += [("" if h.get(k) is None else round(h[k], 3) if isinstance(h[k], float) else h[k]) for k in CSV_HAND_KEYS]
        row.append("" if s["mrrpe_mm"] is None else round(s["mrrpe_mm"], 3))
        w.writerow(row)
    return buf.getvalue()


def markdown_table(scores: dict[str, dict[str, Any]], total: dict[str, Any]) -> str:
    """The per-photo table and the overall line."""
    lines = ["| photo | GT hands | found (right side) | false hands | 2D px (hand px) | MPJPE wrist mm | MRRPE mm "
             "| wrist position mm |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in scores.items():
        hs = s["hands"]
        found = ", ".join(f"{g}: " + ("no" if not h["found"] else "yes" if h["right_side"] else f"as {h['pred_side']}")
                          for g, h in hs.items())  # fmt: skip
        d2 = ", ".join(f"{_fmt(h.get('error_2d_px'))} ({h['size_px']:.0f})" for h in hs.values())
        mp = ", ".join(_fmt(h.get("mpjpe_wrist_mm")) for h in hs.values())
        wp = ", ".join(_fmt(h.get("wrist_position_mm"), 0) for h in hs.values())
        lines.append(f"| {name} | {'+'.join(hs)} | {found} | {', '.join(s['false_hands']) or 0} | {d2} | {mp} | "
                     f"{_fmt(s['mrrpe_mm'])} | {wp} |")  # fmt: skip
    t = total
    lines.append(
        f"| **all {t['items']}** | {t['gt_hands']} | {t['found']} found, {t['found_right_side']} right side | "
        f"{t['false_hands']} | {_fmt(t['mean_error_2d_px'])} ({_fmt(t['mean_size_px'], 0)}); "
        f"{_fmt(t['mean_error_2d_px_at_150'])} at 150 px | {_fmt(t['mean_mpjpe_wrist_mm'])} "
        f"(MCP-scaled {_fmt(t['mean_mpjpe_mcp_scaled_mm'])}) | {_fmt(t['mean_mrrpe_mm'])} | "
        f"{_fmt(t['mean_wrist_position_mm'], 0)} |"
    )
    return "\n".join(lines) + "\n"


def _draw_skeleton(draw, uv: np.ndarray, color: tuple[int, int, int], width: int) -> None:
    for i, parent in enumerate(STANDARD_PARENTS):
        if parent >= 0:
            draw.line([tuple(uv[parent]), tuple(uv[i])], fill=color, width=width)
    r = width + 2
    draw.ellipse([uv[0, 0] - r, uv[0, 1] - r, uv[0, 0] + r, uv[0, 1] + r], outline=color, width=width)


def overview_picture(path: Path, items: list[tuple[str, Path, KeypointFile, KeypointFile | None]]) -> Path:
    """Each photo with the ground truth (white) and the predicted hands (left orange, right
    blue) drawn, in one row of tiles :data:`TILE_HEIGHT` pixels high."""
    from PIL import Image, ImageDraw

    tiles = []
    for name, image_path, gt, pred in items:
        im = Image.open(image_path).convert("RGB")
        s = TILE_HEIGHT / im.height
        im = im.resize((max(1, round(im.width * s)), TILE_HEIGHT), Image.BILINEAR)
        draw = ImageDraw.Draw(im)
        for joints in gt.joints.values():
            _draw_skeleton(draw, project(joints, gt.K) * s, (255, 255, 255), 1)
        if pred is not None:
            K = gt.K if pred.K is None else pred.K
            for side, joints in pred.joints.items():
                color = tuple(int(c * 255) for c in HAND_COLORS[side])
                _draw_skeleton(draw, project(joints, K) * s, color, 2)
        draw.text((4, 4), name, fill=(255, 255, 0))
        tiles.append(im)
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), TILE_HEIGHT))
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + 4
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------- the job


def _image_of(images: Path, name: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (images / f"{name}{suffix}").is_file():
            return images / f"{name}{suffix}"
    raise Im2HandsError(f"no image {name}{{{','.join(IMAGE_SUFFIXES)}}} in {images} for {name}.json")


def _in_convention(kp: KeypointFile | None, src: str | None, dst: str) -> KeypointFile | None:
    """``kp`` with its joints moved from convention ``src`` (None: unknown, kept) to ``dst``."""
    if kp is None or src is None or src == dst:
        return kp
    return dataclasses.replace(kp, joints={s: to_convention(j, src, dst) for s, j in kp.joints.items()})


def evaluate(data: Path, pred: Path, out: Path, gt_convention: str = "annotation") -> dict[str, Any]:
    """Score ``pred`` (an ``im2hands extract`` output folder) against ``data/gt``; write the outputs.

    The extraction writes the keypoints it meshed, in its model's convention (``summary.json``:
    ``settings.keypoint_convention.model``); they are moved to ``gt_convention`` (InterHand2.6M's
    annotated ``joint_3d``: ``annotation``) before scoring."""
    gt_dir, images = data / "gt", data / "images"
    gt_files = sorted(gt_dir.glob("*.json")) if gt_dir.is_dir() else []
    if not gt_files:
        raise Im2HandsError(f"{gt_dir}: no ground-truth keypoint files NAME.json")
    summary_path = pred / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    records = {r["name"]: r for r in summary.get("items", [])}
    pred_convention = (summary.get("settings", {}).get("keypoint_convention") or {}).get("model")
    scores, drawn = {}, []
    for path in gt_files:
        name = path.stem
        gt = read_keypoints(path)
        pred_path = pred / f"{name}{KEYPOINTS_SUFFIX}"
        predicted = read_keypoints(pred_path) if pred_path.is_file() else None
        predicted = _in_convention(predicted, pred_convention, gt_convention)
        scores[name] = score_item(gt, predicted)
        drawn.append((name, _image_of(images, name), gt, predicted))
    total = summarize(scores)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "per_item.csv", per_item_csv(scores, records))
    write_text(out / "real_photos.md", markdown_table(scores, total))
    write_json(out / "summary.json", {"data": str(data), "pred": str(pred), "match_factor": MATCH_FACTOR,
                                      "keypoint_convention": {"pred": pred_convention, "scored_in": gt_convention},
                                      "overall": total, "items": scores})  # fmt: skip
    overview_picture(out / "overview.png", drawn)
    return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).parent / "real_photos",
                    help="folder with images/ (NAME.jpg|png + camera NAME.json) and gt/ (keypoint files)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--pred", type=Path, default=None,
                    help="score this existing 'im2hands extract' output instead of running extract into OUT/extract")
    args = ap.parse_args(argv)
    for folder in (args.data / "images", args.data / "gt"):
        if not folder.is_dir():
            print(f"error: {folder}: not a folder", file=sys.stderr)
            return 2
    pred = args.pred
    if pred is None:
        pred = args.out / "extract"
        cmd = [sys.executable, "-m", "im2hands", "extract", "--images", str(args.data / "images"), "--out", str(pred), *extra]
        print("running:", " ".join(cmd), flush=True)
        code = subprocess.call(cmd)
        if code not in (0, 1):  # 1: some items failed; they are scored as missed hands
            print(f"error: im2hands extract exited with {code}", file=sys.stderr)
            return 2
    elif not pred.is_dir():
        print(f"error: --pred {pred}: not a folder", file=sys.stderr)
        return 2
    try:
        total = evaluate(args.data, pred, args.out)
    except Im2HandsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((args.out / "real_photos.md").read_text(), end="")
    print(json.dumps(total["targets"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
