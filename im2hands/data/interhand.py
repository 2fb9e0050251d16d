"""InterHand2.6M (v1.0) -> the toolkit's dataset format (``im2hands data interhand``).

Per kept annotation (see :mod:`im2hands.data.interhand_io` for the files and the filter; the
IntagHand protocol by default: interacting, ``hand_type_valid``, both NeuralAnnot MANO fits):

1. read the image; drop it (reported as *dark*, not an error) when its mean is below 10;
2. run the hand model for each hand on the NeuralAnnot parameters (world frame, metres);
3. world -> camera with ``R = camrot``, ``t = -R campos / 1000``;
4. crop a square around both hands' projected vertices, centred on their bounding box, with
   side ``extent / 0.8``, resized to 256 x 256 (bilinear, black outside the image), and
   adjust the intrinsics;
5. rasterize the hand-model meshes into per-hand amodal and visible masks and a depth map;
6. write the sample (JPEG image, PNG masks and depth, annotation last) in the format of
   ``docs/data_format.md``, plus the same annotation with the ``joint_3d.json`` joints as
   keypoints in ``OUT/joints_interhand/`` (the InterNet protocol's ground truth, for
   ``im2hands eval``).

Pixel convention: InterHand's ``princpt`` puts pixel centres at integers (OpenCV); the
toolkit's ``K`` puts them at integer + 0.5, so 0.5 is added to the principal point before
anything else. Sample ids are ``SPLIT_ID_BASE[split] + index`` in the split's kept list, so
they do not depend on ``--shard``, ``--workers`` or what an earlier run already wrote.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from im2hands.config.load import save_config
from im2hands.config.schema import ExperimentConfig
from im2hands.data import format as fmt
from im2hands.data.interhand_io import (
    HAND_TYPES,
    SampleTask,
    SplitIndex,
    check_layout,
    parse_shard,
    read_split,
    split_id_range,
)
from im2hands.geometry.crops import square_crop_intrinsics_np
from im2hands.geometry.frames import project_np
from im2hands.geometry.raster import join_meshes, rasterize
from im2hands.hands.constants import SIDES
from im2hands.hands.joint_orders import convert
from im2hands.hands.layer import HandModel, load_hand_models
from im2hands.hands.mano_io import ENV_MANO_DIR, resolve_mano_dir
from im2hands.utils.errors import DataError, Im2HandsError
from im2hands.utils.io import atomic_path, output_dir, write_json

__all__ = [
    "SOURCE",
    "CROP_SIZE",
    "BOX_RATIO",
    "MIN_IMAGE_MEAN",
    "JOINTS_VIEW",
    "interhand_intrinsics",
    "crop_box",
    "crop_image",
    "PreparedSample",
    "prepare_sample",
    "write_prepared",
    "prepare_interhand",
]

log = logging.getLogger(__name__)

SOURCE = "interhand2.6m"
CROP_SIZE = 256
"""Side of the stored crops, pixels (IntagHand's IMG_SIZE)."""
BOX_RATIO = 0.8
"""Share of the crop side taken by the hands' bounding box (IntagHand's HAND_BBOX_RATIO)."""
MIN_IMAGE_MEAN = 10.0
"""Images darker than this mean intensity (0-255) are dropped, as in IntagHand."""
JPEG_QUALITY = 95
JOINTS_VIEW = "joints_interhand"
"""Sub-folder holding the same samples with the ``joint_3d.json`` joints as keypoints."""
_HAND_SLICE = {"right": slice(0, 21), "left": slice(21, 42)}  # joint_3d rows of each hand
_ROOT = 20  # wrist, InterHand order


# ----------------------------------------------------------------------------- geometry


def interhand_intrinsics(focal, princpt) -> np.ndarray:
    """``K`` (3, 3) of a full InterHand image in the toolkit's convention (princpt + 0.5)."""
    fx, fy = (float(v) for v in focal)
    cx, cy = (float(v) + 0.5 for v in princpt)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def crop_box(uv: np.ndarray, ratio: float = BOX_RATIO) -> tuple[float, float, float]:
    """Square crop ``(x0, y0, side)`` around points ``uv`` (N, 2), pixels.

    Centre: the centre of the points' bounding box; side: its larger extent divided by
    ``ratio``. ``(x0, y0)`` is the top-left corner in continuous pixel coordinates.
    """
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    side = float(max(hi - lo)) / ratio
    if not np.isfinite(side) or side <= 0:
        raise DataError(f"degenerate crop: the projected hands span {hi - lo} pixels")
    centre = 0.5 * (lo + hi)
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop_image(image: np.ndarray, box: tuple[float, float, float], size: int = CROP_SIZE) -> np.ndarray:
    """Bilinear resample of the crop ``box`` of ``image`` (H, W, 3) uint8 to ``size`` x ``size``.

    PIL's affine transform maps output pixel corners to input pixel corners (pixel centres at
    integer + 0.5 on both sides, the toolkit's convention); pixels outside the image are black.
    """
    x0, y0, side = box
    inv = side / size
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = pil.transform((size, size), Image.Transform.AFFINE, data=(inv, 0.0, x0, 0.0, inv, y0),
                        resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


# ----------------------------------------------------------------------------- one sample


@dataclass
class PreparedSample:
    """One prepared sample; only ``image_mean`` is set (nothing to write) when the source was dark."""

    annotation: fmt.Annotation | None
    view: fmt.Annotation | None  # the joint_3d view, None when no hand has all joints valid
    image: np.ndarray | None
    masks: dict[str, np.ndarray] | None
    depth: np.ndarray | None
    image_mean: float

    @property
    def dark(self) -> bool:
        return self.image is None


def _vector(task: SampleTask, side: str, key: str, n: int) -> torch.Tensor:
    arr = task.mano[side].get(key)
    if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DataError(f"{task.file_name}: malformed NeuralAnnot '{side}.{key}' (expected {n} finite numbers)")
    return torch.as_tensor(arr)[None]


def _interhand_joints(task: SampleTask, R: np.ndarray, t: np.ndarray):
    """joint_3d joints per hand (standard order, camera frame, metres) and per-joint validity."""
    valid = task.joint_valid if task.joint_valid.shape == (42,) else np.zeros(42, bool)
    if task.joints_world_mm is None or not np.isfinite(task.joints_world_mm).all():
        return None, None
    cam = (task.joints_world_mm / 1000.0) @ R.T + t  # (42, 3)
    joints, joint_valid = {}, {}
    for side in task.sides:
        rows = _HAND_SLICE[side]
        v = valid[rows] & valid[rows][_ROOT]  # a joint is invalid when its hand root is
        joints[side] = convert(cam[rows], "interhand", "standard")
        joint_valid[side] = convert(v[:, None], "interhand", "standard")[:, 0]
    return joints, joint_valid


def prepare_sample(task: SampleTask, models: dict[str, HandModel], size: int = CROP_SIZE) -> PreparedSample:
    """Prepare one kept annotation (see the module docstring).

    Returns:
        The sample; a dark one (image mean below :data:`MIN_IMAGE_MEAN`) is returned right after
        reading the image, with only ``image_mean`` set.

    Raises:
        DataError: missing, unreadable or mis-sized image; malformed parameters; a crop
            that cannot be made (hands behind the camera).
    """
    image = fmt.read_image(Path(task.image_path))
    mean = float(image.mean())
    width, height = task.source_size
    if width and height and image.shape[:2] != (height, width):
        raise DataError(f"{task.image_path}: image is {image.shape[1]}x{image.shape[0]}, "
                        f"the annotation says {width}x{height}")
    if mean < MIN_IMAGE_MEAN:
        return PreparedSample(None, None, None, None, None, mean)
    cam = task.camera
    R, t = cam.R, cam.t
    K_full = interhand_intrinsics(cam.focal, cam.princpt)
    hands_world = {}
    with torch.no_grad():
        for side in task.sides:
            out = models[side](_vector(task, side, "pose", 48), _vector(task, side, "shape", 10),
                               _vector(task, side, "trans", 3))
            hands_world[side] = (out.vertices[0].double().numpy(), out.keypoints[0].double().numpy())
    verts = {s: v @ R.T + t for s, (v, _) in hands_world.items()}
    kps = {s: k @ R.T + t for s, (_, k) in hands_world.items()}
    all_verts = np.concatenate(list(verts.values()))
    if (all_verts[:, 2] <= 0.01).any():
        raise DataError(f"{task.file_name}: hand vertices lie behind camera {task.camera_name}")
    box = crop_box(project_np(all_verts, K_full))
    K = square_crop_intrinsics_np(K_full, *box, size)
    ann_hands = {}
    for side in task.sides:
        ann_hands[side] = fmt.HandAnnotation(
            valid=True, pose=_vector(task, side, "pose", 48)[0].numpy(),
            shape=_vector(task, side, "shape", 10)[0].numpy(), trans=_vector(task, side, "trans", 3)[0].numpy(),
            keypoints=kps[side], keypoints_2d=project_np(kps[side], K),
        )  # fmt: skip
    joints, joint_valid = _interhand_joints(task, R, t)
    extra: dict[str, Any] = {
        "source": SOURCE, "split": task.split, "file_name": task.file_name, "image_id": task.image_id,
        "annotation_id": task.annotation_id, "capture": task.capture, "camera": task.camera_name,
        "frame_idx": task.frame_idx, "seq_name": task.seq_name, "subject": task.subject, "hand_type": task.hand_type,
        "image_mean": round(mean, 3),
        "crop": {"x0": round(box[0], 4), "y0": round(box[1], 4), "side": round(box[2], 4), "size": size,
                 "source_K": K_full.tolist(), "source_size": [int(image.shape[1]), int(image.shape[0])]},
        "joints_interhand": None if joints is None else {s: np.round(j, 7).tolist() for s, j in joints.items()},
        "joints_interhand_valid": None if joint_valid is None else {s: v.tolist() for s, v in joint_valid.items()},
    }  # fmt: skip
    ann = fmt.Annotation(id=task.sample_id, K=K, R=R, t=t, width=size, height=size,
                         hand_model=models["right"].model_name, hands=ann_hands, extra=extra)
    view = _joints_view(ann, joints, joint_valid, K)
    crop = crop_image(image, box, size)
    sides = list(task.sides)
    meshes = [(torch.as_tensor(verts[s]), models[s].closed_faces) for s in sides]
    v, f, obj = join_meshes(meshes)
    frags = rasterize(v, f, torch.as_tensor(K), (size, size), face_object=obj, amodal=True)
    masks = {f"{s}_{kind}": np.zeros((size, size), bool) for s in SIDES for kind in ("amodal", "visible")}
    for i, s in enumerate(sides):
        masks[f"{s}_amodal"] = frags.amodal_masks[i].numpy()
        masks[f"{s}_visible"] = (frags.object_id == i).numpy()
    depth = frags.depth.numpy().astype(np.float32)
    return PreparedSample(ann, view, crop, masks, depth, mean)


def _joints_view(ann: fmt.Annotation, joints, joint_valid, K: np.ndarray) -> fmt.Annotation | None:
    """The annotation with the joint_3d joints as keypoints; hands with an invalid joint are
    marked invalid (``im2hands eval`` skips them); None when no hand is left."""
    if joints is None:
        return None
    hands = {}
    for side, h in ann.hands.items():
        hands[side] = fmt.HandAnnotation(valid=bool(joint_valid[side].all()), pose=h.pose, shape=h.shape,
                                         trans=h.trans, keypoints=joints[side], keypoints_2d=project_np(joints[side], K))
    if not any(h.valid for h in hands.values()):
        return None
    extra = {k: v for k, v in ann.extra.items() if k not in ("joints_interhand",)}
    extra["keypoints_source"] = "joint_3d.json (InterNet protocol ground truth)"
    return fmt.Annotation(id=ann.id, K=K, R=ann.R, t=ann.t, width=ann.width, height=ann.height,
                          hand_model=ann.hand_model, hands=hands, extra=extra)


def write_prepared(root: Path, sample: PreparedSample) -> None:
    """Write one sample: image (JPEG), masks, depth, the joints view, and the annotation last."""
    ann = sample.annotation
    sid = ann.id
    ann.image, ann.mask, ann.depth = f"images/{sid}.jpg", f"masks/{sid}.png", f"depth/{sid}.png"
    with atomic_path(root / ann.image) as tmp:
        Image.fromarray(sample.image).save(tmp, format="JPEG", quality=JPEG_QUALITY)
    fmt.write_png(root / ann.mask, fmt.encode_masks(sample.masks))
    fmt.write_png(root / ann.depth, fmt.encode_depth(sample.depth))
    if sample.view is not None:
        view = sample.view
        view.image, view.mask, view.depth = f"../{ann.image}", f"../{ann.mask}", f"../{ann.depth}"
        write_json(root / JOINTS_VIEW / "annotations" / f"{sid}.json", fmt.annotation_to_dict(view), indent=None)
    write_json(root / "annotations" / f"{sid}.json", fmt.annotation_to_dict(ann), indent=None)


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(mano_dir: str, root: str) -> None:
    torch.set_num_threads(1)
    _WORKER.update(models=load_hand_models(mano_dir), root=Path(root))


def _work(task: SampleTask) -> tuple[str, str, str, float]:
    """``(sample_id, status, message, seconds)``, status ``ok``, ``dark`` or ``failed``."""
    t0 = time.perf_counter()
    try:
        sample = prepare_sample(task, _WORKER["models"])
        if sample.dark:
            message = f"image mean {sample.image_mean:.2f} < {MIN_IMAGE_MEAN:g}"
            return task.sample_id, "dark", message, time.perf_counter() - t0
        write_prepared(_WORKER["root"], sample)
        return task.sample_id, "ok", "", time.perf_counter() - t0
    except Im2HandsError as exc:
        return task.sample_id, "failed", f"{task.file_name}: {exc}", time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - one broken file or record must not stop the job
        return task.sample_id, "failed", f"{task.file_name}: {type(exc).__name__}: {exc}", time.perf_counter() - t0


def _run(todo: list[SampleTask], workers: int, mano_dir: str, root: Path,
         models: dict[str, HandModel]) -> Iterator[tuple[str, str, str, float]]:
    if workers == 1 or len(todo) <= 1:
        _WORKER.update(models=models, root=root)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small per-sample tensors: one thread is fastest
        try:
            for task in todo:
                yield _work(task)
        finally:
            torch.set_num_threads(threads)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(mano_dir, str(root))) as pool:
        yield from pool.imap_unordered(_work, todo, chunksize=4)


# ----------------------------------------------------------------------------- folder


def _resolve_models_dir(mano_dir: str | os.PathLike | None) -> Path:
    if mano_dir is None or str(mano_dir) == "":
        if not os.environ.get(ENV_MANO_DIR):
            raise Im2HandsError(
                f"pass --mano-dir MANO (the folder with the licensed MANO_RIGHT.pkl and MANO_LEFT.pkl; the "
                f"NeuralAnnot fits are MANO parameters) or set {ENV_MANO_DIR}"
            )
        mano_dir = os.environ[ENV_MANO_DIR]
    return resolve_mano_dir(mano_dir, source="--mano-dir")


def _merge_meta(out: Path, split: str, hand_type: str, model_name: str, size: int) -> dict:
    meta: dict[str, Any] = {"source": SOURCE, "hand_model": {"name": model_name}, "image_size": [size, size],
                            "interhand": {"version": "v1.0", "splits": {}}}
    if (out / "meta.json").is_file():
        old = fmt.read_meta(out)
        for key in ("source", "hand_model", "image_size"):
            if old.get(key) != meta[key]:
                raise DataError(f"{out} already holds a dataset with a different {key} ({old.get(key)!r}, now "
                                f"{meta[key]!r}); use a new folder or the same settings to continue it")
        prev = old.get("interhand", {}).get("splits", {}).get(split)
        if prev is not None and prev.get("hand_type") != hand_type:
            raise DataError(f"{out}: split '{split}' was prepared with --hand-type {prev.get('hand_type')}, now "
                            f"{hand_type}; sample ids would clash: use a new folder")
        meta = {**old, "interhand": {"version": "v1.0", "splits": dict(old.get("interhand", {}).get("splits", {}))}}
    return meta


def _complete_ids(folder: Path, split: str) -> list[str]:
    lo, hi = split_id_range(split)
    ids = []
    for p in (folder / "annotations").glob("*.json"):
        if p.stem.isdigit() and lo <= int(p.stem) < hi:
            ids.append(p.stem)
    return sorted(ids)


def _finish(out: Path, meta: dict, split: str) -> int:
    """Write splits (main folder and joints view) and meta.json; returns the split's complete count."""
    ids = _complete_ids(out, split)
    fmt.write_splits(out, {split: ids})
    meta["num_samples"] = len(list((out / "annotations").glob("*.json")))
    meta["interhand"]["splits"][split]["complete"] = len(ids)
    fmt.write_meta(out, {k: v for k, v in meta.items() if k not in ("format", "version")})
    view = out / JOINTS_VIEW
    if (view / "annotations").is_dir():
        main = set(ids)
        view_ids = [i for i in _complete_ids(view, split) if i in main]
        fmt.write_splits(view, {split: view_ids})
        fmt.write_meta(view, {"source": SOURCE, "view": "joints_interhand", "parent": "..",
                              "keypoints": "InterHand2.6M joint_3d.json joints (standard order, camera frame, metres)",
                              "hand_model": meta["hand_model"], "image_size": meta["image_size"],
                              "num_samples": len(list((view / "annotations").glob("*.json")))})
    return len(ids)


def prepare_interhand(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    mano_dir: str | os.PathLike | None = None,
    hand_type: str = "interacting",
    workers: int = 1,
    shard: str | tuple[int, int] | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare one split of InterHand2.6M v1.0 into the dataset folder ``out`` (resumable).

    Args:
        root: the InterHand2.6M root (``annotations/`` and ``images/``; docs/interhand.md).
        out: dataset folder (created; a folder from an earlier run is continued, other
            splits prepared into it are kept).
        split: ``train``, ``val`` or ``test``.
        mano_dir: folder with MANO_RIGHT.pkl and MANO_LEFT.pkl; None: ``$IM2HANDS_MANO_DIR``.
        hand_type: ``interacting`` (IntagHand protocol), ``right``, ``left`` or ``all``.
        workers: processes (each single-threaded).
        shard: ``"I/N"`` or ``(I, N)``: prepare kept samples ``I, I+N, I+2N, ...`` only.
        limit: only the first ``limit`` kept samples (before sharding).
        progress: show a progress bar.

    Returns:
        Summary dict: ``split``, ``hand_type``, ``annotations``, ``dropped`` (per reason),
        ``kept``, ``assigned`` (this shard), ``skipped`` (already complete), ``written``,
        ``dark`` (ids), ``failed`` (id -> message), ``complete`` (the split's complete samples
        in ``out``), ``seconds``, ``seconds_per_sample``, ``report`` (its JSON file). ``out``
        also gets ``config.yaml``: the resolved config (defaults, with ``hand_model.mano_dir``
        the MANO folder used).

    Raises:
        Im2HandsError: bad arguments, a missing root, annotation file, image folder or MANO folder.
    """
    from tqdm import tqdm

    if hand_type not in HAND_TYPES:
        raise Im2HandsError(f"--hand-type {hand_type!r}: expected one of {', '.join(HAND_TYPES)}")
    if workers < 1:
        raise Im2HandsError(f"--workers must be at least 1, got {workers}")
    if limit is not None and limit < 1:
        raise Im2HandsError(f"--limit must be at least 1, got {limit}")
    shard_in = parse_shard(shard) if isinstance(shard, str) else shard
    if shard_in is not None:
        parse_shard(f"{shard_in[0]}/{shard_in[1]}")
    check_layout(root, split)  # before the (slow) model and JSON loading
    models_dir = _resolve_models_dir(mano_dir)
    models = load_hand_models(models_dir)
    model_name = models["right"].model_name
    if model_name != "mano":
        log.warning("hand model '%s' (from %s) is not MANO: the NeuralAnnot parameters are MANO's, so the meshes "
                    "will not match the images", model_name, models_dir)
    out = Path(out)
    meta = _merge_meta(out, split, hand_type, model_name, CROP_SIZE)

    t_read = time.perf_counter()
    index: SplitIndex = read_split(root, split, hand_type, limit=limit)
    log.info("%s: %d annotations, %d kept (%s) in %.1f s", split, index.num_annotations, len(index.tasks),
             ", ".join(f"{k} {v}" for k, v in sorted(index.dropped.items())) or "none dropped",
             time.perf_counter() - t_read)
    tasks = index.tasks if shard_in is None else index.tasks[shard_in[0]::shard_in[1]]
    output_dir(out)
    cfg = ExperimentConfig()
    cfg.hand_model.mano_dir = str(models_dir)  # the only config this job reads
    save_config(cfg, out)  # atomic; the last run into a shared folder rewrites it
    meta["interhand"]["splits"][split] = {"hand_type": hand_type, "annotations": index.num_annotations,
                                          "kept": len(index.tasks), "dropped": index.dropped,
                                          "id_base": split_id_range(split)[0], "limit": limit}
    fmt.write_meta(out, {k: v for k, v in meta.items() if k not in ("format", "version")})
    todo = [t for t in tasks if not fmt.is_complete(out, t.sample_id)]

    dark: list[str] = []
    failed: dict[str, str] = {}
    seconds: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"interhand {split}", unit="sample", disable=not progress, dynamic_ncols=True)
    try:
        for sid, status, message, secs in _run(todo, workers, str(models_dir), out, models):
            seconds.append(secs)
            if status == "dark":
                dark.append(sid)
            elif status == "failed":
                failed[sid] = message
                log.warning("sample %s skipped: %s", sid, message)
            bar.update(1)
            bar.set_postfix(dark=len(dark), failed=len(failed), refresh=False)
    finally:
        bar.close()
        complete = _finish(out, meta, split)
    elapsed = time.perf_counter() - start
    written = len(seconds) - len(dark) - len(failed)
    summary = {
        "split": split, "hand_type": hand_type, "annotations": index.num_annotations, "dropped": index.dropped,
        "kept": len(index.tasks), "shard": None if shard_in is None else f"{shard_in[0]}/{shard_in[1]}",
        "assigned": len(tasks), "skipped": len(tasks) - len(todo), "written": written, "dark": sorted(dark),
        "failed": dict(sorted(failed.items())), "complete": complete, "workers": workers, "seconds": elapsed,
        "seconds_per_sample": float(np.mean(seconds)) if seconds else None,
    }  # fmt: skip
    tag = "" if shard_in is None else f"_shard{shard_in[0]}of{shard_in[1]}"
    report = out / "reports" / f"interhand_{split}{tag}.json"
    summary["report"] = str(report)
    write_json(report, summary)
    return summary
