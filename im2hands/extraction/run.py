"""The batch job behind ``im2hands extract``: items in, meshes, overlays and ``summary.json`` out.

Per item ``NAME`` in ``out``:

- ``NAME_left.obj``, ``NAME_right.obj``: camera frame (OpenCV), metres, outward normals;
- ``NAME_keypoints.json``: the keypoints the meshes were made from (the given keypoints, or
  the estimator's / refiner's output), in the keypoint-file format (``docs/keypoints_format.md``:
  order ``standard``, ``camera.K`` when known, camera frame, metres; an absent hand is left
  out), which ``im2hands eval`` reads for MPJPE and MRRPE;
- ``NAME.png`` when the item has an image: the input next to the meshes drawn over it (left
  orange, right blue, :data:`~im2hands.data.show.HAND_COLORS`);
- ``summary.json``: settings, one record per item (status ``ok`` / ``failed`` and message;
  where the keypoints came from, ``keypoints_source``: ``file``, ``dataset``, ``estimator``
  or ``refined``; which camera ``K`` the item used, ``camera``: the keypoint file, the
  dataset, a per-image camera file ``NAME.json`` beside an image, ``--focal`` or the default;
  seconds: load, encode, decode, mise, marching, write (keypoints, OBJ),
  overlay, total; per hand: status, vertex and face counts, watertight, components, volume,
  points evaluated) and totals. Rewritten as items finish (at most once a second) and when
  the job stops, also on Ctrl-C, so an interrupted run leaves a valid summary of what
  finished (``"finished": false``);
- the resolved configs of the models loaded from run folders or checkpoints
  (:data:`CONFIG_FILES`): ``config.yaml`` (the occupancy model), ``config_init_occ.yaml`` (the
  frozen stage 1 inside a stage-2 model), ``config_estimator.yaml``, ``config_refiner.yaml``.

Every file is written through a temporary name and renamed. A bad item (unreadable image,
malformed JSON, NaN keypoints, no surface found...) is recorded as failed and the job goes on.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from im2hands.config import config_to_yaml
from im2hands.data.files import write_obj
from im2hands.extraction.extractor import Extractor, resolve_threshold
from im2hands.extraction.meshfiles import MESH_FORMATS, write_hand_meshes
from im2hands.extraction.outfolder import EXISTING_MODES, OutputFolder, check_not_an_input
from im2hands.extraction.overlay import write_overlay
from im2hands.extraction.inputs import Item, ItemSource, list_items, load_item, prepare_image, write_keypoints
from im2hands.extraction.estimators import default_estimator, load_estimator
from im2hands.geometry.frames import CM3_PER_M3
from im2hands.hands.constants import SIDES
from im2hands.hands.conventions import CONVENTIONS
from im2hands.loading import load_model, shipped_path
from im2hands.models.base import HandsModel
from im2hands.utils.device import resolve_device as _resolve_device
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import check_output_path, output_dir, write_json, write_text

__all__ = [
    "SUMMARY_FORMAT",
    "CONFIG_FILES",
    "KEYPOINTS_SUFFIX",
    "PIPELINE_SETTINGS",
    "resolve_device",
    "batch_from_item",
    "write_obj",
    "write_item_keypoints",
    "write_configs",
    "extract_folder",
]

log = logging.getLogger(__name__)

SUMMARY_FORMAT = "im2hands-extract-summary"
SUMMARY_VERSION = 1
NO_REFINER = "none"
"""``--refiner none``: no stage-3 refinement of estimated keypoints (also what no ``--refiner`` means)."""
AUTO_KEYPOINTS = "auto"
"""``--keypoints auto``: estimate the keypoints from the images (docs/estimator.md)."""
MAX_RESOLUTION = 512
"""Largest final grid (cells per side): two 513^3 float32 grids and masks take ~1.4 GB."""
SUMMARY_EVERY_S = 1.0
"""``summary.json`` is rewritten after an item when this many seconds passed since the last write."""
KEYPOINTS_SUFFIX = "_keypoints.json"
"""``NAME_keypoints.json``: the keypoints an item's meshes were made from (read by ``im2hands eval``)."""
CONFIG_FILES: dict[str, str] = {
    "model": "config.yaml",
    "init_occ": "config_init_occ.yaml",
    "estimator": "config_estimator.yaml",
    "detector": "config_detector.yaml",
    "refiner": "config_refiner.yaml",
}
"""Role -> file name of the resolved model configs written into the output folder."""


# --------------------------------------------------------------------------- model and device


def resolve_device(name: str | torch.device) -> torch.device:
    """``--device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) as a torch device.

    Raises:
        Im2HandsError: unknown name, or CUDA asked for but not available.
    """
    return _resolve_device(name, source="--device")


def batch_from_item(item: Item, *, image_size: int | None = None, crop: bool = True) -> dict[str, torch.Tensor]:
    """Model inputs for one item (leading batch axis of 1).

    Keys: ``keypoints`` (1, 2, 21, 3), ``hand_valid`` (1, 2); with ``image_size`` and an image:
    ``image`` (1, 3, S, S) and its ``K`` (a crop around the keypoints when ``crop``, see
    :func:`~im2hands.extraction.inputs.prepare_image`); else ``K`` of the item when known;
    ``vertices`` / ``faces`` when the item carries ground truth.
    """
    batch: dict[str, torch.Tensor] = {
        "keypoints": torch.as_tensor(item.keypoints, dtype=torch.float32)[None],
        "hand_valid": torch.tensor([item.present]),
    }
    if image_size is not None and item.image is not None and item.K is not None:
        given = item.keypoints[np.asarray(item.present)].reshape(-1, 3)
        img, K = prepare_image(item.image, item.K, image_size, given if crop else None)
        batch["image"], batch["K"] = img[None], torch.as_tensor(K, dtype=torch.float32)[None]
    elif item.K is not None:
        batch["K"] = torch.as_tensor(item.K, dtype=torch.float32)[None]
    if item.vertices is not None:
        batch["vertices"] = torch.as_tensor(item.vertices)[None]
        batch["faces"] = torch.as_tensor(item.faces)
    return batch


# --------------------------------------------------------------------------- writers


def write_item_keypoints(path: str | os.PathLike, item: Item) -> Path:
    """Write the keypoints an item's meshes were made from, atomically, as a keypoint file.

    ``{"order": "standard", "camera": {"K": ...}, "left": {"joints": 21 x [x, y, z]}, "right": ...}``:
    camera frame (OpenCV), metres, ``standard`` order; ``camera`` only when the item has a
    ``K``; an absent hand is left out (its stand-in is not written). The format of
    ``docs/keypoints_format.md``, read back by :func:`~im2hands.data.files.read_keypoints`
    and by ``im2hands eval`` (:func:`~im2hands.metrics.evaluator.read_keypoint_file`).
    """
    joints = {side: item.keypoints[h] for h, side in enumerate(SIDES) if item.present[h]}
    return write_keypoints(path, joints, item.K, order="standard")


def write_configs(out: str | os.PathLike, configs: dict[str, str | None]) -> list[str]:
    """Write resolved model configs (YAML text) into ``out`` atomically, as :data:`CONFIG_FILES`.

    Args:
        out: the output folder.
        configs: role (a key of :data:`CONFIG_FILES`) -> YAML text, or None when unknown.

    Returns:
        The names of the files written. A file of a role without a config (left by an earlier
        run into the same folder, with other models) is removed, so the folder's configs are
        this run's.
    """
    out = Path(out)
    written = []
    for role, name in CONFIG_FILES.items():
        text = configs.get(role)
        path = out / name
        if text:
            write_text(path, text if text.endswith("\n") else text + "\n")
            written.append(name)
        elif path.exists():
            path.unlink()
    return written


# --------------------------------------------------------------------------- the job


def _hand_record(r) -> dict[str, Any]:
    rec: dict[str, Any] = {"status": r.status, "message": r.message}
    if r.status == "skipped":
        return rec
    rec.update(points_evaluated=r.points_evaluated, points_per_level=r.points_per_level,
               query_fraction=round(r.query_fraction, 6))  # fmt: skip
    if r.status == "ok":
        rec.update(
            vertices=int(len(r.vertices)), faces=int(len(r.faces)), watertight=bool(r.watertight),
            components=int(r.components), dropped_faces=int(r.dropped_faces),
            volume_cm3=round(r.volume_m3 * CM3_PER_M3, 4), area_cm2=round(r.area_m2 * 1e4, 3),
        )  # fmt: skip
    return rec


def _totals(records: list[dict[str, Any]], listed: int, seconds: float) -> dict[str, Any]:
    hands = [h for r in records for h in r.get("hands", {}).values()]
    ok_hands = [h for h in hands if h["status"] == "ok"]
    evaluated = [h for h in hands if "points_evaluated" in h]
    done = len(records)
    return {
        "items": listed,
        "processed": done,
        "ok": sum(r["status"] == "ok" for r in records),
        "failed": sum(r["status"] == "failed" for r in records),
        "hands_ok": len(ok_hands),
        "hands_failed": sum(h["status"] == "failed" for h in hands),
        "hands_skipped": sum(h["status"] == "skipped" for h in hands),
        "not_watertight": sum(not h["watertight"] for h in ok_hands),
        "several_components": sum(h["components"] > 1 for h in ok_hands),
        "points_evaluated": int(sum(h["points_evaluated"] for h in evaluated)),
        "mean_query_fraction": round(float(np.mean([h["query_fraction"] for h in evaluated])), 6) if evaluated else None,
        "seconds": round(seconds, 3),
        "mean_item_seconds": round(float(np.mean([r["seconds"]["total"] for r in records])), 4) if records else None,
    }


PIPELINE_SETTINGS = ("min_size_ratio", "flip_average", "keypoint_tta", "pair_depth", "pair_depth_range",
                     "detector_side", "detector_presence", "detector_keypoints")
"""Per-hand crop pipeline options recorded in ``summary.json`` (``settings.hand_finding``; also by ``--keypoints-only``)."""


def extract_folder(
    out: str | os.PathLike,
    *,
    model: Any = None,
    images: str | os.PathLike | None = None,
    keypoints: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    split: str | None = None,
    resolution: int = 32,
    upsampling_steps: int = 3,
    threshold: float | None = None,
    device: str | torch.device = "cpu",
    points_batch_size: int = 100_000,
    limit: int | None = None,
    progress: bool = True,
    overlay: bool = True,
    estimator: Any = None,
    refiner: Any = None,
    focal: float | None = None,
    pair_scale: str | None = None,
    detector: Any = None,
    existing: str = "refuse",
    mesh_format: str = "obj",
    keypoint_convention: str | None = None,
    **extractor_kwargs: Any,
) -> dict[str, Any]:
    """Extract both hands' meshes for every item of a folder or dataset split.

    Args:
        out: output folder (created).
        existing: an earlier run in ``out``: ``refuse`` it, ``overwrite`` it (its files removed
            first) or ``resume`` it (finished items kept; same settings) (:mod:`.outfolder`).
        mesh_format: ``obj`` (what ``eval`` reads), ``ply`` or ``glb`` (:mod:`.meshfiles`).
        keypoint_convention: where the PIP and DIP keypoints of the keypoint files sit,
            ``mano`` or ``annotation`` (:mod:`im2hands.hands.conventions`); None: where the
            model's training data put them. Every item's keypoints (files, dataset, estimator)
            are moved to the model's ``keypoint_convention``.
        model: a run folder or checkpoint path (rebuilt with :func:`im2hands.loading.load_model`),
            or a :class:`~im2hands.models.base.HandsModel` that decodes occupancy (e.g.
            :mod:`~im2hands.extraction.oracle`); None: the shipped weights
            (:func:`im2hands.loading.shipped_path`): stage 2 with its stage 1
            when there are images, the keypoint-only stage 1 for keypoint files alone.
        images: folder of ``NAME.jpg|png``; without ``keypoints`` the estimator finds them.
        keypoints: folder of ``NAME.json`` keypoint files (``docs/keypoints_format.md``), or
            ``"auto"``: estimate them from ``images`` or the ``dataset`` images.
        dataset, split: a dataset folder (``docs/data_format.md``) and split name.
        resolution: MISE start resolution (cells per side); upsampling_steps: levels after it.
        threshold: iso-level; None: the model's ``threshold`` (0.5 stage 1, 0.45 stage 2).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        points_batch_size: most query points per hand in one decode call.
        limit: process only the first ``limit`` items (sorted by name).
        progress: show a tqdm progress bar.
        overlay: write ``NAME.png`` for items with an image.
        estimator: None (the default: the per-hand crop pipeline with the shipped fine-tuned
            crop network, :func:`~im2hands.extraction.estimators.default_estimator`),
            ``"mediapipe"`` (the same pipeline with MediaPipe's original networks alone,
            :mod:`~im2hands.extraction.mediapipe_hands`), a ``crop_net`` run or checkpoint, a
            whole-image keypoint estimator (``kpts_est``) run folder or checkpoint (the shipped one:
            ``im2hands/assets/weights/kpts_est.pt``), or a ready
            :class:`~im2hands.extraction.keypoints.KeypointPipeline` /
            :class:`~im2hands.extraction.hand_crops.HandCropPipeline`.
        refiner: keypoint refinement (``kpts_ref``) run folder, checkpoint or model, applied to
            the estimated keypoints; None or ``"none"``: no refinement.
        focal: focal length (pixels) of images without a camera file (estimation only; an image
            ``NAME.jpg`` with ``NAME.json`` beside it uses that file's ``K``, see
            :func:`~im2hands.extraction.inputs.read_camera`); None: the estimator's
            ``default_focal_factor`` x the longer image side, principal point at the centre.
        pair_scale: sizing of a found pair (per-hand crop pipeline; None: its default, ``best``).
        detector: how a ``crop_net`` estimator finds hands: a ``hand_det`` run / checkpoint or
            ``"mediapipe"``; None: the shipped ``hand_det.pt``
            (:func:`~im2hands.extraction.estimators.load_estimator`).
        **extractor_kwargs: more :class:`~im2hands.extraction.extractor.Extractor` options.

    Returns:
        The summary dict also written to ``out/summary.json``.

    Raises:
        Im2HandsError: unusable arguments (a missing model, a model that needs images without
            them, no inputs); per-item problems are only recorded.
    """
    from tqdm import tqdm

    auto = keypoints is not None and str(keypoints) == AUTO_KEYPOINTS
    if auto and images is None and dataset is None:
        raise Im2HandsError("--keypoints auto estimates keypoints from images: pass --images DIR or --dataset DIR")
    estimate = auto or (images is not None and keypoints is None and dataset is None)
    if estimate and estimator is None:  # the per-hand crop pipeline (the shipped fine-tuned crop network)
        estimator = default_estimator()
    refiner = None if isinstance(refiner, str) and refiner == NO_REFINER else refiner
    keypoints = None if auto else keypoints
    if images is None and keypoints is None and dataset is None:
        raise Im2HandsError("no inputs: pass --keypoints DIR (and --images DIR), or --dataset DIR --split NAME")
    check_output_path(out)
    if mesh_format not in MESH_FORMATS:
        raise Im2HandsError(f"--mesh-format must be one of {', '.join(MESH_FORMATS)}, got {mesh_format!r}")
    if keypoint_convention is not None and keypoint_convention not in CONVENTIONS:
        raise Im2HandsError(f"--keypoint-convention must be one of {', '.join(CONVENTIONS)}, got {keypoint_convention!r}")
    if existing not in EXISTING_MODES:
        raise Im2HandsError(f"existing must be one of {', '.join(EXISTING_MODES)}, got {existing!r}")
    check_not_an_input(out, images=images, keypoints=keypoints, dataset=dataset)
    check_mesh_options(threshold=threshold, focal=focal, resolution=resolution, upsampling_steps=upsampling_steps)
    if limit is not None and limit < 1:
        raise Im2HandsError(f"--limit must be at least 1, got {limit}")
    if points_batch_size < 1:
        raise Im2HandsError(f"--points-batch-size must be at least 1, got {points_batch_size}")
    if model is None:  # shipped: stage 2 (with its stage 1) given images, else the keypoint-only stage 1
        model = shipped_path("model" if images is not None or dataset is not None else "keypoint_only")
    dev = resolve_device(device)
    cfg = None
    if isinstance(model, (str, os.PathLike)):
        model_name = str(model)
        model, cfg = load_model(model, device=dev, occupancy=True)
    elif isinstance(model, HandsModel):
        model_name = type(model).__name__
        model = model.to(dev)
    else:
        raise Im2HandsError(f"model: expected a run folder, a checkpoint or a HandsModel, got {type(model).__name__}")
    uses_image = model.uses_image
    if uses_image and images is None and dataset is None:
        raise Im2HandsError(
            f"the model {model_name} reads images (model.init_occ.use_image=true); pass --images DIR with "
            "--keypoints DIR, or use a keypoint-only model (model.init_occ.use_image=false)"
        )
    pipeline, estimator_configs = load_estimator(estimator, refiner, dev, focal, pair_scale, detector) if estimate else (None, {})
    sources = list_items(images=images, keypoints=keypoints, dataset=dataset, split=split)
    listed = len(sources)
    if dataset is not None:
        log.info("dataset %s, split '%s': %d items", dataset, split, listed)
    if limit is not None:
        sources = sources[:limit]
    image_size = model.image_size if uses_image else None
    if uses_image and image_size is None:
        raise Im2HandsError(f"the model {model_name} reads images but declares no image_size")
    hand_models = None
    if model.needs_ground_truth:
        from im2hands.hands.layer import load_hand_models

        hand_models = load_hand_models(cfg.hand_model.mano_dir if cfg is not None else None, source="hand_model.mano_dir")
    extractor = Extractor(
        model, resolution0=resolution, upsampling_steps=upsampling_steps, threshold=threshold,
        points_batch_size=points_batch_size, device=dev, **extractor_kwargs,
    )  # fmt: skip

    out = Path(out)
    output_dir(out)
    with OutputFolder(out, existing) as folder:
        config_files = write_configs(out, {"model": config_to_yaml(cfg) if cfg is not None else None,
                                           "init_occ": model.init_occ_config, **estimator_configs})
        settings = {
            "model": model_name,
            "model_type": cfg.model.type if cfg is not None else model.stage,
            "inputs": {"images": _str(images), "keypoints": AUTO_KEYPOINTS if estimate else _str(keypoints),
                       "dataset": _str(dataset), "split": split},
            "estimator": _str(estimator) if isinstance(estimator, (str, os.PathLike)) else None,
            "refiner": _str(refiner) if isinstance(refiner, (str, os.PathLike)) else None,
            "pair_scale": getattr(pipeline, "pair_scale", None),
            "detector": getattr(pipeline, "detector_source", None),
            "hand_finding": {k: getattr(pipeline, k) for k in PIPELINE_SETTINGS if hasattr(pipeline, k)} or None,
            "resolution0": resolution,
            "upsampling_steps": upsampling_steps,
            "resolution": extractor.resolution,
            "threshold": resolve_threshold(model, threshold),
            "box_side_m": extractor.box_side,
            "seed_radius_m": extractor.seed_radius,
            "seed_levels": extractor.seed_levels,
            "start_radius_m": extractor.start_radius,
            "flood": extractor.flood,
            "device": str(dev),
            "precision": extractor.precision,
            "points_batch_size": points_batch_size,
            "limit": limit,
            "mesh_format": mesh_format,
            "keypoint_convention": {"files": keypoint_convention or model.keypoint_convention,
                                    "model": model.keypoint_convention},
        "frame": "camera (OpenCV: +x right, +y down, +z forward), metres",
            "config_files": config_files,
        }
        done = folder.finished_records(settings)  # --resume: items the earlier run finished
        records: list[dict[str, Any]] = []
        t_job = time.perf_counter()

        def write_summary(finished: bool) -> dict[str, Any]:
            summary = {
                "format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "finished": finished, "settings": settings,
                "totals": _totals(records, listed, time.perf_counter() - t_job), "items": records,
            }  # fmt: skip
            write_json(out / "summary.json", summary)
            return summary

        write_summary(False)
        bar = tqdm(sources, unit="item", disable=not progress, dynamic_ncols=True)
        last_write, finished = time.perf_counter(), False
        try:
            for src in bar:
                if src.name in done:
                    records.append(done[src.name])
                    continue
                records.append(_process(src, out, extractor, image_size, hand_models, overlay, crop=src.dataset is None,
                                        estimate=pipeline, mesh_format=mesh_format,
                                        conventions=(keypoint_convention or model.keypoint_convention,
                                                     model.keypoint_convention)))  # fmt: skip
                failed = sum(r["status"] == "failed" for r in records)
                bar.set_postfix(ok=len(records) - failed, failed=failed)
                if time.perf_counter() - last_write >= SUMMARY_EVERY_S:
                    write_summary(False)
                    last_write = time.perf_counter()
            finished = True
        finally:  # also on Ctrl-C: the summary then lists what finished, with "finished": false
            bar.close()
            summary = write_summary(finished)
    t = summary["totals"]
    log.info("%s: %d of %d items ok, %d failed (%.1f s)", out, t["ok"], t["processed"], t["failed"], t["seconds"])
    return summary


def check_mesh_options(*, threshold: float | None, focal: float | None, resolution: int, upsampling_steps: int) -> None:
    """Check the options the command line and the API share; :class:`Im2HandsError` names a bad one."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise Im2HandsError(f"--threshold must lie strictly between 0 and 1 (an occupancy probability), got {threshold}")
    if focal is not None and not (math.isfinite(focal) and focal > 0):
        raise Im2HandsError(f"--focal must be a positive number of pixels, got {focal}")
    if resolution < 2 or upsampling_steps < 0 or resolution * 2**upsampling_steps > MAX_RESOLUTION:
        raise Im2HandsError(
            f"--resolution {resolution} --upsampling-steps {upsampling_steps}: need resolution >= 2, steps >= 0 "
            f"and resolution * 2^steps <= {MAX_RESOLUTION} (the grids are held in memory)"
        )


def _str(p: Any) -> str | None:
    return None if p is None else str(p)


def _process(
    src: ItemSource, out: Path, extractor: Extractor, image_size: int | None, hand_models: Any, overlay: bool, crop: bool,
    estimate: Any = None, mesh_format: str = "obj", conventions: tuple[str, str | None] = ("mano", None),
) -> dict[str, Any]:
    """Run one item; every failure becomes a record, nothing escapes but interrupts.
    ``conventions``: the keypoint files' and the model's keypoint conventions."""
    rec: dict[str, Any] = {"name": src.name, "status": "ok", "message": "", "keypoints_source": None, "camera": None,
                           "hands": {}, "files": [], "seconds": {}}  # fmt: skip
    t0 = time.perf_counter()
    try:
        item = load_item(src, hand_models=hand_models, estimate=estimate, keypoint_convention=conventions[0],
                         model_convention=conventions[1])
        if image_size is not None and item.image is None:
            raise Im2HandsError(f"{src.name}: the model reads images but this item has none")
        batch = batch_from_item(item, image_size=image_size, crop=crop)
        t_load = time.perf_counter() - t0
        rec["keypoints_source"], rec["camera"] = item.keypoints_source, item.camera
        if estimate is not None and src.image is not None:  # plain images: say which camera placed the hands
            log.info("%s: camera %s", src.name, item.camera)
        result = extractor.extract(batch)
        t = time.perf_counter()
        # the keypoints first: an item whose meshes are on disk always has its keypoints too
        rec["files"].append(write_item_keypoints(out / f"{src.name}{KEYPOINTS_SUFFIX}", item).name)
        problems = []
        for side in SIDES:
            r = result.hands[side]
            rec["hands"][side] = _hand_record(r)
            if r.status == "failed":
                problems.append(f"{side}: {r.message}")
        meshes = {s: (r.vertices, r.faces) if r.status == "ok" else None for s, r in result.hands.items()}
        rec["files"].extend(write_hand_meshes(out, src.name, meshes, mesh_format))
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        if overlay and item.image is not None and item.K is not None:
            rec["files"].append(write_overlay(out / f"{src.name}.png", item, result).name)
        t_overlay = time.perf_counter() - t
        if problems:
            rec["status"], rec["message"] = "failed", "; ".join(problems)
        else:
            notes = [f"{s}: {rec['hands'][s]['message']}" for s in SIDES if rec["hands"][s]["message"]]
            rec["message"] = "; ".join(notes)
        rec["seconds"] = {"load": round(t_load, 4), **{k: round(v, 4) for k, v in result.seconds.items() if k != "total"},
                          "write": round(t_write, 4), "overlay": round(t_overlay, 4)}  # fmt: skip
    except Im2HandsError as exc:
        rec["status"], rec["message"] = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad item must not stop the job; the message says what broke
        log.debug("item %s failed", src.name, exc_info=True)
        rec["status"], rec["message"] = "failed", f"{type(exc).__name__}: {exc}"
    rec["seconds"]["total"] = round(time.perf_counter() - t0, 4)
    if rec["status"] == "failed":
        log.warning("%s: %s", src.name, rec["message"])
    return rec
