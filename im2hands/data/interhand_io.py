"""Reading the InterHand2.6M v1.0 annotation files into small per-sample tasks.

Layout under the dataset root (the v1.0 download, 5 fps or 30 fps, no ``all/`` / ``human/``
subset folder)::

    ROOT/annotations/<split>/InterHand2.6M_<split>_data.json              COCO-style images + annotations
    ROOT/annotations/<split>/InterHand2.6M_<split>_camera.json            per capture: campos, camrot, focal, princpt
    ROOT/annotations/<split>/InterHand2.6M_<split>_joint_3d.json          per capture, frame: world_coord (42 x 3, mm)
    ROOT/annotations/<split>/InterHand2.6M_<split>_MANO_NeuralAnnot.json  per capture, frame, hand: pose, shape, trans
    ROOT/images/<split>/<file_name>                                      the images (file_name as in data.json,
                                                                         e.g. Capture0/<seq>/cam400262/image20683.jpg)

Schemas (keys are strings in the JSON files):

- ``data.json``: ``images`` = ``[{id, file_name, width, height, capture, subject, seq_name,
  camera, frame_idx}]``, ``annotations`` = ``[{id, image_id, bbox, joint_valid (42 x [0|1]),
  hand_type ("right" | "left" | "interacting"), hand_type_valid (0|1)}]``;
- ``camera.json``: ``{capture: {"campos": {camera: [3] mm}, "camrot": {camera: 3 x 3},
  "focal": {camera: [fx, fy]}, "princpt": {camera: [cx, cy]}}}``, with
  ``x_cam = camrot (x_world - campos)``;
- ``joint_3d.json``: ``{capture: {frame: {world_coord (42 x 3 mm; right hand 0-20, left 21-41,
  InterHand order with the wrist last), joint_valid, hand_type, hand_type_valid}}}``;
- ``MANO_NeuralAnnot.json``: ``{capture: {frame: {"right": {pose (48), shape (10), trans (3)}
  | null, "left": ... | null}}}``, world frame, metres (MANO's own output unit).

Which annotations become samples (the IntagHand protocol for ``hand_type="interacting"``):
an image record exists, ``hand_type_valid``, the hand type matches, and every hand to write has a
NeuralAnnot fit. Kept annotations are sorted by annotation id; the position in that list is the
sample index, so ids do not depend on sharding, workers or which samples were already written.
The image-brightness rule (mean >= 10) needs the pixels and is applied when a sample is prepared.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.utils.errors import DataError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
HAND_TYPES: tuple[str, ...] = ("interacting", "right", "left", "all")
FILE_KINDS: tuple[str, ...] = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")

SPLIT_ID_BASE: dict[str, int] = {"train": 0, "val": 4_000_000, "test": 6_000_000}
"""First sample id of each split, so that the three splits can share one dataset folder with
7-digit ids. The v1.0 5 fps release holds 1.36 M train, 0.38 M val and 0.85 M test annotations,
well inside each range (:func:`split_id_range`); a larger split is refused with a clear error."""

SPLIT_ID_RANGE = 2_000_000
"""Ids of split ``s`` are ``SPLIT_ID_BASE[s] + index`` with ``index < SPLIT_ID_RANGE`` (train: 4 M)."""

LAYOUT_HELP = (
    "expected the InterHand2.6M v1.0 layout: ROOT/annotations/<split>/InterHand2.6M_<split>_{data,camera,"
    "joint_3d,MANO_NeuralAnnot}.json and ROOT/images/<split>/Capture*/... (see docs/interhand.md)"
)


def split_id_range(split: str) -> tuple[int, int]:
    """``[first, end)`` sample ids of a split (train may use 4 M ids, the others 2 M)."""
    base = SPLIT_ID_BASE[split]
    end = SPLIT_ID_BASE["val"] if split == "train" else base + SPLIT_ID_RANGE
    return base, end


def annotation_file(root: str | Path, split: str, kind: str) -> Path:
    """Path of one annotation file, e.g. ``ROOT/annotations/test/InterHand2.6M_test_camera.json``."""
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def image_folder(root: str | Path, split: str) -> Path:
    return Path(root) / "images" / split


def check_layout(root: str | Path, split: str) -> None:
    """Clear errors for a missing root, annotation file or image folder.

    Raises:
        DataError: naming the first missing path and the expected layout.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"InterHand2.6M root {root} does not exist or is not a folder; {LAYOUT_HELP}")
    for kind in FILE_KINDS:
        path = annotation_file(root, split, kind)
        if not path.is_file():
            raise DataError(f"annotation file {path} not found; {LAYOUT_HELP}")
    if not image_folder(root, split).is_dir():
        raise DataError(f"image folder {image_folder(root, split)} not found; {LAYOUT_HELP}")


def load_json(path: Path) -> Any:
    """Read one (possibly multi-GB) annotation file; :class:`DataError` when malformed."""
    t0 = time.perf_counter()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable: {exc}") from None
    log.info("read %s (%.1f s)", path.name, time.perf_counter() - t0)
    return data


# ----------------------------------------------------------------------------- records


@dataclass
class Camera:
    """One InterHand camera: ``x_cam = R (x_world - campos)``; intrinsics in InterHand's pixels."""

    R: np.ndarray  # (3, 3) camrot, world -> camera
    campos_mm: np.ndarray  # (3,) camera centre in the world, millimetres
    focal: np.ndarray  # (2,) fx, fy in pixels
    princpt: np.ndarray  # (2,) cx, cy in pixels (pixel centres at integers, OpenCV's convention)

    @property
    def t(self) -> np.ndarray:
        """World -> camera translation in metres: ``t = -R campos / 1000``."""
        return -self.R @ self.campos_mm / 1000.0


@dataclass
class SampleTask:
    """Everything needed to prepare one sample: small and picklable (sent to worker processes)."""

    index: int  # position in the kept list of the split
    sample_id: str
    split: str
    image_path: str
    file_name: str
    image_id: int
    annotation_id: int
    capture: int
    camera_name: str
    frame_idx: int
    seq_name: str
    subject: Any
    hand_type: str
    sides: tuple[str, ...]  # the hands written ("left", "right" for interacting frames)
    mano: dict[str, dict[str, np.ndarray | None]]  # side -> {"pose": (48,), "shape": (10,), "trans": (3,)}
    camera: Camera
    joints_world_mm: np.ndarray | None  # (42, 3) joint_3d world_coord; None when missing or malformed
    joint_valid: np.ndarray  # (42,) bool from the data.json annotation (empty when malformed)
    source_size: tuple[int, int]  # (width, height) of the image record


@dataclass
class SplitIndex:
    """The kept samples of one split and why the other annotations were left out."""

    split: str
    hand_type: str
    tasks: list[SampleTask]
    num_annotations: int
    dropped: dict[str, int] = field(default_factory=dict)


def _sides(hand_type: str) -> tuple[str, ...]:
    return ("left", "right") if hand_type == "interacting" else (hand_type,)


def _camera(cams: dict, capture: Any, name: str) -> Camera | None:
    entry = cams.get(str(capture))
    if entry is None:
        return None
    try:
        return Camera(
            R=np.asarray(entry["camrot"][name], dtype=np.float64).reshape(3, 3),
            campos_mm=np.asarray(entry["campos"][name], dtype=np.float64).reshape(3),
            focal=np.asarray(entry["focal"][name], dtype=np.float64).reshape(2),
            princpt=np.asarray(entry["princpt"][name], dtype=np.float64).reshape(2),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _mano_fits(mano: dict, capture: Any, frame: Any, sides: tuple[str, ...]) -> dict[str, dict] | None:
    try:
        frame_fits = mano[str(capture)][str(frame)]
    except (KeyError, TypeError):
        return None
    if not isinstance(frame_fits, dict):
        return None
    fits = {}
    for side in sides:
        fit = frame_fits.get(side)
        if fit is None:
            return None
        fits[side] = {k: _array(fit.get(k)) for k in ("pose", "shape", "trans")}
    return fits


def _array(value: Any, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """Compact float64 array of a JSON value (per-sample records stay small); None when malformed
    (the sample then fails with a message when it is prepared)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
        return arr.reshape(shape) if shape is not None else arr.reshape(-1)
    except (TypeError, ValueError):
        return None


def _hand_type_matches(ann_type: str, wanted: str) -> bool:
    if wanted == "all":
        return ann_type in ("right", "left", "interacting")
    return ann_type == wanted


def read_split(root: str | Path, split: str, hand_type: str = "interacting", limit: int | None = None) -> SplitIndex:
    """Read a split's four annotation files and list the samples to prepare.

    Args:
        root: InterHand2.6M root (see the module docstring for the layout).
        split: ``train``, ``val`` or ``test``.
        hand_type: ``interacting`` (IntagHand protocol), ``right``, ``left`` or ``all``.
        limit: keep only the first ``limit`` kept samples (ids stay those of the full list).

    Returns:
        :class:`SplitIndex`; ``dropped`` counts annotations left out per reason
        (``no_image_record``, ``hand_type_invalid``, ``hand_type``, ``no_mano_fit``, ``no_camera``).

    Raises:
        DataError: missing or malformed files (see :func:`check_layout`).
    """
    if hand_type not in HAND_TYPES:
        raise DataError(f"unknown hand type {hand_type!r}; expected one of {', '.join(HAND_TYPES)}")
    check_layout(root, split)
    root = Path(root)
    data = load_json(annotation_file(root, split, "data"))
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{annotation_file(root, split, 'data')}: expected COCO-style 'images' and 'annotations'")
    images = {int(img["id"]): img for img in data["images"]}
    annotations = sorted(data["annotations"], key=lambda a: int(a["id"]))
    del data
    cams = load_json(annotation_file(root, split, "camera"))
    mano = load_json(annotation_file(root, split, "MANO_NeuralAnnot"))

    dropped: Counter = Counter()
    kept: list[tuple[dict, dict, tuple[str, ...], dict, Camera]] = []
    for ann in annotations:
        img = images.get(int(ann["image_id"]))
        if img is None:
            dropped["no_image_record"] += 1
            continue
        if not ann.get("hand_type_valid"):
            dropped["hand_type_invalid"] += 1
            continue
        ann_type = str(ann.get("hand_type"))
        if not _hand_type_matches(ann_type, hand_type):
            dropped["hand_type"] += 1
            continue
        sides = _sides(ann_type)
        fits = _mano_fits(mano, img["capture"], img["frame_idx"], sides)
        if fits is None:
            dropped["no_mano_fit"] += 1
            continue
        cam = _camera(cams, img["capture"], str(img["camera"]))
        if cam is None:
            dropped["no_camera"] += 1
            continue
        kept.append((ann, img, sides, fits, cam))
        if limit is not None and len(kept) >= limit:
            break
    del mano, cams
    base, end = split_id_range(split)
    if base + len(kept) > end:
        raise DataError(f"{split}: {len(kept)} samples do not fit the id range [{base}, {end})")

    joints = load_json(annotation_file(root, split, "joint_3d"))
    folder = image_folder(root, split)
    tasks = []
    for index, (ann, img, sides, fits, cam) in enumerate(kept):
        frame_joints = joints.get(str(img["capture"]), {}).get(str(img["frame_idx"]))
        world = _array(frame_joints.get("world_coord"), (42, 3)) if isinstance(frame_joints, dict) else None
        valid = _array(ann.get("joint_valid"), (42,))
        tasks.append(SampleTask(
            index=index, sample_id=f"{base + index:07d}", split=split,
            image_path=str(folder / img["file_name"]), file_name=str(img["file_name"]),
            image_id=int(img["id"]), annotation_id=int(ann["id"]), capture=int(img["capture"]),
            camera_name=str(img["camera"]), frame_idx=int(img["frame_idx"]), seq_name=str(img.get("seq_name", "")),
            subject=img.get("subject"), hand_type=str(ann["hand_type"]), sides=sides, mano=fits, camera=cam,
            joints_world_mm=world, joint_valid=np.zeros(0, bool) if valid is None else valid > 0.5,
            source_size=(int(img.get("width", 0)), int(img.get("height", 0))),
        ))  # fmt: skip
    return SplitIndex(split=split, hand_type=hand_type, tasks=tasks, num_annotations=len(annotations),
                      dropped=dict(dropped))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; None stays None.

    Raises:
        DataError: malformed text.
    """
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise DataError(f"--shard {text!r}: expected I/N with integers, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise DataError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return i, n
