"""``im2hands demo`` / ``make demo``: the main job on built-in defaults, images in, measured meshes out.

1. A small seeded synthetic two-hand set (``data/``; seed :data:`DEMO_SEED`, which no training
   set of the shipped weights uses, so it is held out).
2. ``im2hands extract`` on its images with the shipped weights and nothing else (estimator ->
   stage-3 refinement -> stage 1 -> stage 2; the dataset's camera intrinsics are used, its
   keypoints are not) -> ``meshes/``; and, for reference, from its ground-truth keypoints ->
   ``meshes_gt_keypoints/``.
3. ``im2hands eval`` of both against the ground truth: ``eval/`` (images only, camera frame),
   ``eval_root_aligned/`` (images only, each hand moved onto its ground-truth root, as image-only
   methods are compared), ``eval_gt_keypoints/``.
4. ``results.md`` (the metrics table beside the issue's targets), ``results.json`` (the numbers,
   also per item) and ``strip.png`` (input, overlay, side view and ground truth per item).

The same steps on the same seed give the held-out numbers recorded for the shipped weights
(``im2hands/assets/weights/MANIFEST.json``), which ``tests/test_demo.py`` reproduces on a subset.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.hands.constants import SIDES
from im2hands.utils.errors import Im2HandsError

log = logging.getLogger(__name__)

DEMO_SEED = 12345
"""Seed of the demo's synthetic set (the shipped weights were trained on seed 0's)."""

EXTRACTIONS: dict[str, str | None] = {"meshes": "auto", "meshes_gt_keypoints": None}
"""Mesh folder -> ``--keypoints`` of its extraction (``auto``: estimated from the images; None:
the dataset's ground-truth keypoints)."""

RUNS: dict[str, dict[str, Any]] = {
    "images": {"meshes": "meshes", "eval": "eval", "align": "none", "label": "images only, camera frame"},
    "images_root_aligned": {"meshes": "meshes", "eval": "eval_root_aligned", "align": "root",
                            "label": "images only, root-aligned"},
    "gt_keypoints": {"meshes": "meshes_gt_keypoints", "eval": "eval_gt_keypoints", "align": "none",
                     "label": "ground-truth keypoints + image"},
}
"""The demo's evaluations: which meshes, where the evaluation goes, the alignment, a label."""

TARGETS = {"images": {"iou": 0.70, "chamfer_l1_mm": 4.0}, "images_root_aligned": {"iou": 0.70, "chamfer_l1_mm": 4.0},
           "gt_keypoints": {"iou": 0.85, "chamfer_l1_mm": 2.5}}
"""The main-job issue's accuracy targets (IoU at least, Chamfer-L1 at most, per hand)."""

COLUMNS = [("iou", "IoU", "{:.3f}"), ("chamfer_l1_mm", "Chamfer-L1 mm", "{:.2f}"),
           ("fscore_5mm", "F@5mm", "{:.3f}"), ("mpjpe_mcp_scaled_mm", "MPJPE mm (MCP, scaled)", "{:.1f}"),
           ("mpjpe_wrist_mm", "MPJPE mm (wrist)", "{:.1f}"), ("mrrpe_mm", "MRRPE mm", "{:.1f}"),
           ("penetration_cm3", "penetration cm3", "{:.2f}")]


def run_pipeline(out_dir: str | Path, num: int, *, seed: int = DEMO_SEED, workers: int = 1, device: str = "auto",
                 progress: bool = True, plots: bool = True, eval_points: int = 100_000) -> dict[str, Any]:
    """Steps 1-3 of the module docstring into ``out_dir``; returns ``results.json``'s content.

    Returns:
        ``{"seed", "num", "seconds": {step: s}, "runs": {name: {"summary": metrics,
        "items": {NAME: {metric: value}}}}}``; metric values are the evaluation's (hand
        averages per item; None where undefined).
    """
    from im2hands.data.synthetic import synthesize
    from im2hands.extraction.run import extract_folder
    from im2hands.metrics.evaluator import evaluate_folder

    out = Path(out_dir)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    synthesize(out / "data", num, seed=seed, workers=workers, progress=progress)  # the default synth settings
    seconds["synthesize"] = time.perf_counter() - t
    for folder, keypoints in EXTRACTIONS.items():
        t = time.perf_counter()
        extract_folder(out / folder, dataset=out / "data", split="all", keypoints=keypoints, device=device,
                       progress=progress, existing="overwrite")  # fmt: skip
        seconds[f"extract_{folder}"] = time.perf_counter() - t
    runs: dict[str, Any] = {}
    for name, run in RUNS.items():
        t = time.perf_counter()
        summary = evaluate_folder(out / run["meshes"], out / "data", out / run["eval"], split="all", n_points=eval_points,
                                  plots=plots, progress=progress, align=run["align"])  # fmt: skip
        seconds[f"eval_{name}"] = time.perf_counter() - t
        runs[name] = {"label": run["label"], "summary": {k: summary.get(k) for k, _, _ in COLUMNS},
                      "items": _per_item(out / run["eval"] / "per_item.csv")}  # fmt: skip
    return {"seed": seed, "num": num, "seconds": seconds, "runs": runs}


def _per_item(csv_path: Path) -> dict[str, dict[str, Any]]:
    """Per item of an evaluation's ``per_item.csv``: the hands' mean IoU and Chamfer-L1 (None
    for a failed item)."""
    import csv

    res = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            item: dict[str, Any] = {}
            for key in ("iou", "chamfer_l1_mm"):
                vals = [float(row[f"{s}_{key}"]) for s in SIDES if row.get(f"{s}_{key}") not in (None, "")]
                item[key] = float(np.mean(vals)) if vals and row["status"] == "ok" else None
            res[row["name"]] = item
    return res


def results_table(results: dict[str, Any]) -> str:
    """The demo's metrics as a markdown table with the targets beside them."""
    head = "| inputs | " + " | ".join(h for _, h, _ in COLUMNS) + " | target (IoU / Chamfer) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, run in results["runs"].items():
        cells = []
        for key, _, fmt in COLUMNS:
            v = run["summary"].get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        tg = TARGETS[name]
        met = [run["summary"].get("iou") is not None and run["summary"]["iou"] >= tg["iou"],
               run["summary"].get("chamfer_l1_mm") is not None and run["summary"]["chamfer_l1_mm"] <= tg["chamfer_l1_mm"]]
        target = f">= {tg['iou']:.2f} ({'met' if met[0] else 'missed'}) / <= {tg['chamfer_l1_mm']} mm " \
                 f"({'met' if met[1] else 'missed'})"
        lines.append(f"| {run['label']} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(lines) + "\n"


def _read_meshes(folder: Path, name: str) -> dict[str, tuple[Any, Any]]:
    """``{side: (vertices, faces)}`` torch tensors of an item's OBJ files in ``folder`` (those present)."""
    import torch

    from im2hands.metrics.evaluator import read_obj

    meshes = {}
    for side in SIDES:
        f = folder / f"{name}_{side}.obj"
        if f.is_file():
            v, faces = read_obj(f)
            meshes[side] = (torch.from_numpy(v).float(), torch.from_numpy(faces).long())
    return meshes


def write_strip(out_dir: str | Path, names: list[str], path: str | Path, side_angle: float = 70.0) -> Path:
    """One row per item: input | images-only meshes over it | the same seen from the side (camera
    orbited by ``side_angle`` degrees about the meshes' centre) | meshes from the ground-truth
    keypoints | ground-truth meshes (left orange, right blue)."""
    import torch
    from PIL import Image, ImageDraw

    from im2hands.data import format as fmt
    from im2hands.data.dataset import mesh_in_camera
    from im2hands.data.show import mesh_overlay
    from im2hands.geometry.frames import orbit_view
    from im2hands.hands.layer import load_hand_models
    from im2hands.utils.io import atomic_path

    out = Path(out_dir)
    models = load_hand_models(None, source="hand_model.mano_dir")
    titles = ("input", "images only", f"images only, side ({side_angle:.0f} deg)", "ground-truth keypoints",
              "ground truth")
    rows = []
    for name in names:
        ann = fmt.read_annotation(out / "data", name)
        image = fmt.read_image(out / "data" / ann.image)
        pred = _read_meshes(out / RUNS["images"]["meshes"], name)
        from_gt_kp = _read_meshes(out / RUNS["gt_keypoints"]["meshes"], name)
        gt = {s: (mesh_in_camera(models[s], ann.hands[s], ann.R, ann.t).float(), models[s].closed_faces)
              for s in ann.hands}
        white = np.full_like(image, 255)
        side = white.astype(np.float32) / 255.0
        if pred:
            center = torch.cat([v for v, _ in pred.values()]).mean(0)
            side = mesh_overlay(white, {s: (orbit_view(v, center, side_angle), f) for s, (v, f) in pred.items()},
                                ann.K, alpha=1.0)  # fmt: skip
        panels = [image.astype(np.float32) / 255.0, mesh_overlay(image, pred, ann.K), side,
                  mesh_overlay(image, from_gt_kp, ann.K), mesh_overlay(image, gt, ann.K)]
        rows.append(np.concatenate([np.clip(p, 0, 1) for p in panels], axis=1))
    picture = Image.fromarray((np.concatenate(rows, axis=0) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    w = rows[0].shape[1] // len(titles)
    for i, title in enumerate(titles):
        x0, y0, x1, y1 = draw.textbbox((i * w + 5, 4), title)
        draw.rectangle((x0 - 3, y0 - 2, x1 + 3, y1 + 2), fill=(255, 255, 255))
        draw.text((i * w + 5, 4), title, fill=(0, 0, 0))
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def check_weights(out_dir: str | Path, num: int = 8, write: str | Path | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """The demo's steps 1-3 with the shipped weights; ``write``: a file to write a copy of the
    shipped ``MANIFEST.json`` to, with the numbers (summary and per item, with the command)
    recorded as ``heldout``. The installed package's own manifest is never written unless
    ``write`` names it."""
    from im2hands.engine.weights import read_manifest, write_manifest

    if write is not None:
        write = Path(write)
        if write.is_dir() or not write.parent.is_dir():
            raise Im2HandsError(f"--write {write}: expected a file path in an existing folder")
    results = run_pipeline(out_dir, num, progress=progress, plots=False)
    print(results_table(results))
    if write is not None:
        manifest = read_manifest()
        manifest["heldout"] = {"command": f"im2hands weights check --out DIR --num {num} --write MANIFEST.json",
                               "seed": results["seed"], "num": num, "runs": results["runs"]}
        log.info("recorded the held-out numbers in %s", write_manifest(manifest, path=write))
    return results


def run_demo(out_dir: str | Path = "demo_out", num: int = 8, workers: int = 2, strip_items: int = 4,
             progress: bool = True) -> dict[str, Any]:
    """The whole demo (module docstring) into ``out_dir``; returns ``results.json``'s content."""
    from im2hands.utils.io import write_json, write_text

    out = Path(out_dir)
    t0 = time.perf_counter()
    results = run_pipeline(out, num, workers=workers, progress=progress)
    names = sorted(results["runs"]["images"]["items"])[:strip_items]
    strip = write_strip(out, names, out / "strip.png") if names else None
    results["seconds"]["total"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    table = results_table(results)
    write_text(out / "results.md", f"# im2hands demo: {num} held-out synthetic samples (seed {results['seed']})\n\n"
               f"{table}\nMeans over items and hands; commands and protocols: README.md, docs/results.md.\n")
    print(table)
    print(f"demo outputs in {out}/:")
    print("  strip.png                 input | images only | side view | from ground-truth keypoints | ground truth")
    print("  meshes/                   NAME_left.obj, NAME_right.obj, NAME.png (overlay), NAME_keypoints.json")
    print("  eval*/                    per_item.csv, summary.json and plots per evaluation")
    print(f"  results.md, results.json  the table above (took {results['seconds']['total']:.0f} s)")
    return {**results, "strip": str(strip) if strip else None}
