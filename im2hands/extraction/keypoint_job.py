"""``im2hands extract --keypoints-only``: the keypoint estimator alone over a folder or a dataset
split, writing one keypoint file per item and no meshes.

Per item ``NAME`` in ``out``: ``NAME_keypoints.json`` (``docs/keypoints_format.md``: ``standard``
order, ``camera.K``, camera frame, metres; a hand not found is left out), plus
``summary.json`` (settings, one record per item: status ``ok`` / ``failed``, message, the
hands found, the camera used, seconds; totals). An item where no hand is found is ``failed``
and the job goes on. Files are written through temporary names; the output folder has
:class:`~im2hands.extraction.outfolder.OutputFolder`'s lock and its ``refuse`` / ``overwrite``
/ ``resume`` rules.

What it is for: stage 3 trained on what the estimator predicts on the training images
(``data.predicted_keypoints``, ``configs/kpts_ref_pred_cpu.yaml``), and keypoints to look at or
to feed ``im2hands extract --keypoints DIR`` later. On a dataset split the keypoints are moved
to the dataset's keypoint convention (``meta.json``'s hand model), so that they compare with its
annotations.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from im2hands.extraction.estimators import default_estimator, load_estimator
from im2hands.extraction.inputs import dataset_convention, list_items, load_item
from im2hands.extraction.outfolder import EXISTING_MODES, OutputFolder, check_not_an_input
from im2hands.extraction.run import KEYPOINTS_SUFFIX, NO_REFINER, PIPELINE_SETTINGS, write_item_keypoints
from im2hands.hands.constants import SIDES
from im2hands.utils.device import resolve_device
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import check_output_path, output_dir, write_json

__all__ = ["KEYPOINTS_SUFFIX", "SUMMARY_FORMAT", "estimate_keypoints_folder"]

log = logging.getLogger(__name__)

SUMMARY_FORMAT = "im2hands-keypoints-summary"


def estimate_keypoints_folder(
    out: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    split: str | None = None,
    estimator: Any = None,
    refiner: Any = None,
    focal: float | None = None,
    pair_scale: str | None = None,
    detector: Any = None,
    device: str = "cpu",
    limit: int | None = None,
    progress: bool = True,
    existing: str = "refuse",
) -> dict[str, Any]:
    """Estimate both hands' keypoints for every image of a folder or dataset split.

    Args:
        out: output folder (created).
        images: folder of ``NAME.jpg|png`` (a per-image camera ``NAME.json`` beside an image
            gives its ``K``, else ``focal``); or dataset, split: a dataset folder and split name
            (its cameras).
        estimator, refiner, focal, pair_scale, detector: as for
            :func:`~im2hands.extraction.run.extract_folder` (None: the default per-hand crop
            pipeline, no refinement).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        limit: only the first ``limit`` items (sorted by name).
        progress: a tqdm progress bar.
        existing: an earlier run in ``out``: ``refuse``, ``overwrite`` or ``resume``.

    Returns:
        The summary written to ``out/summary.json``.

    Raises:
        Im2HandsError: no images, bad options, an output folder that is an input.
    """
    from tqdm import tqdm

    if (images is None) == (dataset is None):
        raise Im2HandsError("--keypoints-only estimates keypoints from images: pass --images DIR or --dataset DIR")
    if existing not in EXISTING_MODES:
        raise Im2HandsError(f"existing must be one of {', '.join(EXISTING_MODES)}, got {existing!r}")
    if limit is not None and limit < 1:
        raise Im2HandsError(f"--limit must be at least 1, got {limit}")
    check_output_path(out)
    check_not_an_input(out, images=images, keypoints=None, dataset=dataset)
    dev = resolve_device(device)
    refiner = None if isinstance(refiner, str) and refiner == NO_REFINER else refiner
    pipeline, _ = load_estimator(default_estimator() if estimator is None else estimator, refiner, dev, focal,
                                 pair_scale, detector)  # fmt: skip
    convention = dataset_convention(Path(dataset)) if dataset is not None else None
    sources = list_items(images=images, keypoints=None, dataset=dataset, split=split)
    listed = len(sources)
    sources = sources[:limit] if limit is not None else sources
    out = Path(out)
    output_dir(out)
    settings = {
        "inputs": {"images": None if images is None else str(images), "dataset": None if dataset is None else str(dataset),
                   "split": split},
        "estimator": None if estimator is None else str(estimator), "refiner": None if refiner is None else str(refiner),
        "pair_scale": getattr(pipeline, "pair_scale", None), "focal": focal, "keypoint_convention": convention,
        "hand_finding": {k: getattr(pipeline, k) for k in PIPELINE_SETTINGS if hasattr(pipeline, k)} or None,
        "device": str(dev), "limit": limit,
        "frame": "camera (OpenCV: +x right, +y down, +z forward), metres",
    }  # fmt: skip
    records: list[dict[str, Any]] = []
    t_job = time.perf_counter()
    with OutputFolder(out, existing) as folder:
        done = folder.finished_records(settings)

        def write_summary(finished: bool) -> dict[str, Any]:
            ok = sum(r["status"] == "ok" for r in records)
            totals = {"items": listed, "processed": len(records), "ok": ok, "failed": len(records) - ok,
                      "hands": sum(len(r["hands"]) for r in records), "seconds": round(time.perf_counter() - t_job, 3)}
            summary = {"format": SUMMARY_FORMAT, "version": 1, "finished": finished, "settings": settings,
                       "totals": totals, "items": records}  # fmt: skip
            write_json(out / "summary.json", summary)
            return summary

        bar = tqdm(sources, unit="image", disable=not progress, dynamic_ncols=True)
        finished, last = False, 0.0
        try:
            for src in bar:
                rec = done.get(src.name) or _process(src, out, pipeline, convention)
                records.append(rec)
                if time.perf_counter() - last >= 1.0:
                    write_summary(False)
                    last = time.perf_counter()
            finished = True
        finally:
            bar.close()
            summary = write_summary(finished)
    t = summary["totals"]
    log.info("%s: keypoints for %d of %d images, %d failed", out, t["ok"], t["processed"], t["failed"])
    return summary


def _process(src: Any, out: Path, pipeline: Any, convention: str | None) -> dict[str, Any]:
    """One item; a failure becomes the record's message."""
    rec: dict[str, Any] = {"name": src.name, "status": "ok", "message": "", "hands": [], "camera": None, "files": []}
    t0 = time.perf_counter()
    try:
        item = load_item(src, estimate=pipeline, model_convention=convention)
        path = write_item_keypoints(out / f"{src.name}{KEYPOINTS_SUFFIX}", item)
        rec.update(hands=[side for h, side in enumerate(SIDES) if item.present[h]], camera=item.camera, files=[path.name])
    except Im2HandsError as exc:  # DataError included: unreadable image, no hand found
        rec["status"], rec["message"] = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad item must not stop the job
        log.debug("item %s failed", src.name, exc_info=True)
        rec["status"], rec["message"] = "failed", f"{type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    if rec["status"] == "failed":
        log.warning("%s: %s", src.name, rec["message"])
    return rec
