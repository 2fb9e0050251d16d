"""Hands, sides and 2D keypoints that an images-only extraction found, against a dataset split.

    im2hands extract --dataset data/synth --split test60 --keypoints auto --out runs/t60_img
    python eval/image_keypoints.py --pred runs/t60_img --gt data/synth --split test60 --out runs/t60_img_kp

For every ground-truth hand of every item: found or not (the extraction's ``NAME_keypoints.json``
holds a hand of that side); for a found hand, its 2D error (mean over the 21 joints, pixels of
the dataset's images) of the placed keypoints projected with the item's camera, against the
ground-truth hand of the same side; and whether its side is right: the item's ground-truth
hand nearest to it in 2D (mean joint distance) is the one of its side (items with one
ground-truth hand count a found hand as right). These are the issue-16 targets' measures
(2D error, side right) for the whole image path; ``im2hands eval`` scores the meshes.
Writes ``OUT/image_keypoints.json`` and ``OUT/image_keypoints.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.data import format as fmt
from im2hands.extraction.inputs import read_keypoints
from im2hands.geometry.frames import project_np
from im2hands.hands.constants import SIDES
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import write_json, write_text


def score_item(gt_uv: dict[str, np.ndarray], pred_uv: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per ground-truth side: ``found``, ``error_2d_px`` (same side) and ``side_right``."""
    out: dict[str, dict[str, Any]] = {}
    for side, g in gt_uv.items():
        p = pred_uv.get(side)
        if p is None:
            out[side] = {"found": False, "error_2d_px": None, "side_right": None}
            continue
        dist = {s: float(np.linalg.norm(p - u, axis=-1).mean()) for s, u in gt_uv.items()}
        out[side] = {"found": True, "error_2d_px": dist[side], "side_right": min(dist, key=dist.get) == side}
    return out


def summarize(scores: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    hands = [h for item in scores.values() for h in item.values()]
    found = [h for h in hands if h["found"]]
    err = np.array([h["error_2d_px"] for h in found], float)
    return {
        "gt_hands": len(hands), "found": len(found),
        "side_right_pct": 100.0 * float(np.mean([h["side_right"] for h in found])) if found else None,
        "error_2d_px_mean": float(err.mean()) if len(err) else None,
        "error_2d_px_median": float(np.median(err)) if len(err) else None,
    }  # fmt: skip


def evaluate(pred: Path, gt: Path, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of every item of ``split`` (an item without a keypoint file, or with one that does
    not parse, e.g. a hand placed behind the camera: no hand found; listed in
    ``unreadable_items``)."""
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    unreadable: list[str] = []
    for sid in fmt.list_samples(gt, split):
        ann = fmt.read_annotation(gt, sid)
        K = np.asarray(ann.K, float)
        gt_uv = {s: np.asarray(ann.hands[s].keypoints_2d, float) for s in SIDES
                 if ann.hands.get(s) is not None and ann.hands[s].valid}  # fmt: skip
        path = pred / f"{sid}_keypoints.json"
        pred_uv = {}
        if path.is_file():
            try:
                kp = read_keypoints(path, require_hand=False)
            except Im2HandsError as exc:  # e.g. a hand placed behind the camera: reported, counted not found
                print(f"warning: {sid}: {exc}; its hands count as not found", file=sys.stderr)
                unreadable.append(sid)
            else:
                pred_uv = {s: project_np(np.asarray(j, float), K) for s, j in kp.joints.items()}
        scores[sid] = score_item(gt_uv, pred_uv)
    return scores, {**summarize(scores), "unreadable_items": unreadable}


def markdown(total: dict[str, Any], pred: Path, split: str) -> str:
    fmt_ = lambda x, d=1: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    return (f"Images only, `{pred}`, split `{split}`:\n\n"
            "| GT hands | found | side right % | 2D px mean (median) | unreadable items |\n|---:|---:|---:|---|---:|\n"
            f"| {total['gt_hands']} | {total['found']} | {fmt_(total['side_right_pct'])} | "
            f"{fmt_(total['error_2d_px_mean'])} ({fmt_(total['error_2d_px_median'])}) | "
            f"{len(total.get('unreadable_items', []))} |\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", type=Path, required=True, help="an `im2hands extract --keypoints auto` output folder")
    ap.add_argument("--gt", type=Path, required=True, help="the dataset folder it was extracted from")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if not args.pred.is_dir():
            raise Im2HandsError(f"--pred {args.pred} is not a folder")
        scores, total = evaluate(args.pred, args.gt, args.split)
    except Im2HandsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "image_keypoints.json", {"pred": str(args.pred), "gt": str(args.gt), "split": args.split,
                                                    "total": total, "items": scores})  # fmt: skip
    table = markdown(total, args.pred, args.split)
    write_text(args.out / "image_keypoints.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
