"""Inputs of ``im2hands extract``: keypoint JSON files, image folders and dataset splits -> items.

Keypoint files (``docs/keypoints_format.md``) are read and written by :mod:`im2hands.data.files`
(:func:`~im2hands.data.files.read_keypoints`, :func:`~im2hands.data.files.write_keypoints`).

Items: :func:`list_items` pairs files by stem; :func:`load_item` reads one (the extraction job
calls it inside its per-item error handling, so a bad file fails only its own item).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from im2hands.data import format as fmt
from im2hands.data.files import (  # noqa: F401 - keypoint files have one home; the names stay importable here
    KEYPOINT_ORDERS,
    MAX_COORDINATE_M,
    KeypointFile,
    camera_file,
    keypoints_to_dict,
    parse_keypoints,
    read_camera,
    read_keypoints,
    write_keypoints,
)
from im2hands.geometry.crops import square_crop_intrinsics_np
from im2hands.geometry.frames import project_np
from im2hands.geometry.placement import default_intrinsics, focal_from_35mm
from im2hands.hands.constants import SIDES
from im2hands.hands.conventions import convention_of, to_convention
from im2hands.utils.errors import DataError, Im2HandsError

__all__ = [
    "KEYPOINT_ORDERS",
    "KEYPOINT_SOURCES",
    "IMAGE_SUFFIXES",
    "MIN_IMAGE_SIDE",
    "read_input_image",
    "check_image_size",
    "dataset_convention",
    "assemble_hands",
    "MAX_COORDINATE_M",
    "KeypointFile",
    "parse_keypoints",
    "read_keypoints",
    "camera_file",
    "read_camera",
    "keypoints_to_dict",
    "write_keypoints",
    "ItemSource",
    "Item",
    "list_items",
    "load_item",
    "placeholder_hand",
    "prepare_image",
    "crop_square",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
"""Image files ``extract --images`` reads (any case); other files in the folder are ignored."""
MIN_IMAGE_SIDE = 32
"""Images whose shorter side has fewer pixels cannot show a hand usefully: such items fail."""
CROP_FILL = 0.8
"""Fraction of the model's input side covered by the hands' projected keypoints (IntagHand's crop)."""
PLACEHOLDER_OFFSET_M = 0.3
"""How far along x the stand-in for an absent hand is moved from the present hand (metres)."""
KEYPOINT_SOURCES: tuple[str, ...] = ("file", "dataset", "estimator", "refined")
"""Values of :attr:`Item.keypoints_source`."""


# --------------------------------------------------------------------------- items


@dataclass
class ItemSource:
    """Where one item comes from (nothing is read yet)."""

    name: str
    image: Path | None = None
    keypoints: Path | None = None
    dataset: Path | None = None
    sample_id: str | None = None
    problem: str | None = None
    """Set when the item cannot be read at all (e.g. a keypoint file without its image)."""


@dataclass
class Item:
    """One loaded item, ready for the extractor.

    Attributes:
        name: output stem.
        keypoints: ``(2, 21, 3)`` float64 camera frame, metres, standard order; absent hands
            hold a stand-in (:func:`placeholder_hand`).
        present: ``(left, right)`` which hands were given.
        K: ``(3, 3)`` intrinsics of ``image`` or None.
        image: ``(H, W, 3)`` uint8 or None.
        vertices, faces: ground-truth meshes ``(2, V, 3)`` / ``(2, F, 3)`` (dataset items, when asked).
        keypoints_source: where ``keypoints`` came from, one of :data:`KEYPOINT_SOURCES`:
            ``file`` (a keypoint file), ``dataset`` (the dataset's annotation), ``estimator``
            (estimated from the image) or ``refined`` (estimated, then refined by stage 3).
        camera: where ``K`` came from, in words (``summary.json``'s ``camera``): the keypoint
            file, the dataset, a per-image camera file (:func:`camera_file`), ``--focal`` or
            the default; None without a camera.
    """

    name: str
    keypoints: np.ndarray
    present: tuple[bool, bool]
    K: np.ndarray | None = None
    image: np.ndarray | None = None
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    keypoints_source: str = "file"
    camera: str | None = None
    regions: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """Estimated items: per side, the image region the hand was found in ``(center_u, center_v,
    size, angle)`` (drawn in the overlay)."""
    keypoint_convention: str | None = None
    """The convention the keypoints came in (:mod:`im2hands.hands.conventions`), before
    :func:`load_item` moved them to the model's."""


def read_input_image(path: Path) -> np.ndarray:
    """An item's image as ``(H, W, 3)`` uint8 RGB (:func:`~im2hands.data.format.read_image`:
    EXIF-upright, 16-bit, grayscale, palette and alpha images handled).

    Raises:
        DataError: unreadable, or smaller than :data:`MIN_IMAGE_SIDE` on its shorter side.
    """
    return check_image_size(fmt.read_image(Path(path)), str(path))


def check_image_size(image: np.ndarray, where: str) -> np.ndarray:
    """``image`` when its shorter side has at least :data:`MIN_IMAGE_SIDE` pixels.

    Raises:
        DataError: naming ``where`` and the size.
    """
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise DataError(f"{where}: image of {image.shape[1]} x {image.shape[0]} pixels is too small to show a hand "
                        f"(at least {MIN_IMAGE_SIDE} pixels a side)")
    return image


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
            out.setdefault(p.stem, []).append(p)
    return out


def list_items(
    images: str | Path | None = None,
    keypoints: str | Path | None = None,
    dataset: str | Path | None = None,
    split: str | None = None,
) -> list[ItemSource]:
    """The items of one extraction job, sorted by name.

    - ``dataset`` (with ``split``): the split's samples (dataset keypoints, image and camera).
    - ``keypoints`` and/or ``images``: files paired by stem (``NAME.json``, ``NAME.png``); with
      both folders, a stem present in only one is an item that fails with a clear message.

    Raises:
        Im2HandsError: missing folders, a folder with no inputs, mixed dataset and folder inputs.
    """
    if dataset is not None:
        if images is not None or keypoints is not None:
            raise Im2HandsError("--dataset cannot be combined with --images or --keypoints")
        root = Path(dataset)
        ids = fmt.list_samples(root, split or "all")
        return [ItemSource(name=i, dataset=root, sample_id=i) for i in ids]
    folders = {}
    for flag, folder, suffixes in (("--images", images, IMAGE_SUFFIXES), ("--keypoints", keypoints, (".json",))):
        if folder is None:
            continue
        folder = Path(folder)
        if not folder.is_dir():
            raise Im2HandsError(f"{flag} {folder}: not a folder")
        found = _by_stem(folder, suffixes)
        if not found:
            raise Im2HandsError(f"{flag} {folder}: no {' / '.join(suffixes)} files")
        folders[flag] = found
    if not folders:
        raise Im2HandsError("no inputs: pass --keypoints DIR (and --images DIR), or --dataset DIR --split NAME")
    imgs, kps = folders.get("--images", {}), folders.get("--keypoints", {})
    items = []
    for name in sorted(set(imgs) | set(kps)):
        src = ItemSource(name=name)
        if len(imgs.get(name, [])) > 1 or len(kps.get(name, [])) > 1:
            src.problem = f"several input files named {name}: {[p.name for p in imgs.get(name, []) + kps.get(name, [])]}"
        src.image = imgs[name][0] if name in imgs else None
        src.keypoints = kps[name][0] if name in kps else None
        if images is not None and src.image is None:
            src.problem = f"no image {name}{{{','.join(IMAGE_SUFFIXES)}}} in {images} for {src.keypoints}"
        if keypoints is not None and src.keypoints is None:
            src.problem = f"no keypoint file {name}.json in {keypoints} for {src.image}"
        items.append(src)
    return items


def placeholder_hand(joints: np.ndarray, absent_side: str) -> np.ndarray:
    """A stand-in for an absent hand: the present hand mirrored (x -> -x about its wrist) and
    moved :data:`PLACEHOLDER_OFFSET_M` along x, so models that need both hands get a plausible
    one. Nothing is extracted for it."""
    kp = np.array(joints, dtype=np.float64)
    kp[:, 0] = 2.0 * kp[0, 0] - kp[:, 0]
    kp[:, 0] += -PLACEHOLDER_OFFSET_M if absent_side == "left" else PLACEHOLDER_OFFSET_M
    return kp


def assemble_hands(name: str, joints: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[bool, bool]]:
    """``(2, 21, 3)`` left, right keypoints from ``{side: (21, 3)}`` (an absent hand: the
    :func:`placeholder_hand` stand-in) and which are present.

    Raises:
        DataError: no hand at all (``name`` says which item).
    """
    present = tuple(s in joints for s in SIDES)
    if not any(present):
        raise DataError(f"{name}: no hand to extract")
    kp = []
    for side in SIDES:
        if side in joints:
            kp.append(joints[side])
        else:
            other = joints[SIDES[1 - SIDES.index(side)]]
            kp.append(placeholder_hand(other, side))
    return np.stack(kp), present  # (2, 21, 3)


def move_joints(joints: dict[str, np.ndarray], src: str | None, dst: str | None) -> dict[str, np.ndarray]:
    """``{side: (21, 3)}`` keypoints moved from convention ``src`` to ``dst`` (either None: unchanged)."""
    if src is None or dst is None or dst == src:
        return joints
    return {side: to_convention(kp, src, dst) for side, kp in joints.items()}


def dataset_convention(root: Path) -> str:
    """The keypoint convention of a dataset's keypoints: that of the hand model in its meta.json."""
    return convention_of((fmt.read_meta(root).get("hand_model") or {}).get("name"))


def load_item(src: ItemSource, *, hand_models: dict | None = None, estimate: Any = None,
              keypoint_convention: str | None = None, model_convention: str | None = None) -> Item:
    """Read one item (keypoints, camera, image, and ground-truth meshes when ``hand_models`` is given).

    Args:
        src: from :func:`list_items`.
        hand_models: ``{"left", "right"}`` hand models; dataset items then also carry their
            ground-truth meshes (for :class:`~im2hands.extraction.oracle.MeshOccupancy`).
        estimate: keypoints from the image instead of from files: a callable ``(image, K or
            None) -> result`` with ``result.joints`` (side -> (21, 3)), ``result.K`` and
            optionally ``result.refined`` and ``result.boxes`` (:class:`~im2hands.extraction.keypoints.EstimatedHands`);
            dataset items pass their camera; an image with a per-image camera file
            (:func:`camera_file`) passes that file's ``K``; else, when the estimator has no
            ``focal`` (``--focal``), the camera of the EXIF's 35 mm equivalent focal length
            (:func:`~im2hands.geometry.placement.focal_from_35mm`) if the image states one;
            else None (the estimator's ``focal`` or default). Its ``keypoint_convention`` attribute says where its PIP and
            DIP keypoints sit (absent or None: unknown, not moved).
        keypoint_convention: the convention of keypoint files (``"mano"`` or ``"annotation"``;
            None: the model's); a dataset's is that of the hand model in its ``meta.json``.
        model_convention: the model's convention; the keypoints are moved to it
            (:func:`~im2hands.hands.conventions.to_convention`); None: left as they come.

    Raises:
        DataError: anything wrong with this item's files, or no hand found in the image.
    """
    if src.problem:
        raise DataError(src.problem)
    if estimate is not None:
        K, camera = None, None
        if src.dataset is not None:
            ann = fmt.read_annotation(src.dataset, src.sample_id)
            K, path = np.asarray(ann.K, dtype=np.float64), src.dataset / ann.image
            camera = "dataset"
        elif src.image is not None:
            path, cam = src.image, camera_file(src.image)
            if cam.is_file():  # the per-image camera wins over --focal
                K, camera = read_camera(cam), f"file {cam}"
        else:
            raise DataError(f"{src.name}: no image to estimate keypoints from")
        image = read_input_image(path)
        if K is None and getattr(estimate, "focal", None) is None:  # no camera file, no --focal: the EXIF's lens
            f35 = fmt.read_exif_focal_35mm(Path(path))
            if f35 is not None:
                h, w = image.shape[:2]
                f = focal_from_35mm(f35, h, w)
                K = default_intrinsics(h, w, focal=f, dtype=torch.float64).numpy()
                camera = f"EXIF focal length {f35:g} mm (35 mm equivalent) = {f:.1f} px, principal point at the image centre"
        found = estimate(image, K)
        if K is None:
            focal = getattr(estimate, "focal", None)
            camera = (f"--focal {focal:g}" if focal is not None else f"default focal {float(found.K[0][0]):.1f} px")
            camera += ", principal point at the image centre"
        if not found.joints:
            raise DataError(f"{src.name}: the keypoint estimator found no hand in {path} (camera: {camera})")
        conv = getattr(estimate, "keypoint_convention", None)
        kp, present = assemble_hands(src.name, move_joints(found.joints, conv, model_convention))
        source = "refined" if getattr(found, "refined", False) else "estimator"
        return Item(name=src.name, keypoints=kp, present=present, K=np.asarray(found.K, dtype=np.float64), image=image,
                    keypoints_source=source, camera=camera, regions=dict(getattr(found, "boxes", {})),
                    keypoint_convention=conv)  # fmt: skip
    if src.dataset is not None:
        ann = fmt.read_annotation(src.dataset, src.sample_id)
        joints = {s: h.keypoints for s, h in ann.hands.items() if h.valid}
        conv = dataset_convention(src.dataset)
        kp, present = assemble_hands(src.name, move_joints(joints, conv, model_convention))
        item = Item(name=src.name, keypoints=kp, present=present, K=np.asarray(ann.K, dtype=np.float64),
                    keypoints_source="dataset", camera="dataset", keypoint_convention=conv)  # fmt: skip
        if ann.image:
            item.image = read_input_image(src.dataset / ann.image)
        if hand_models is not None:
            from im2hands.data.dataset import mesh_in_camera

            missing = [s for s in SIDES if s not in ann.hands]
            if missing:
                raise DataError(f"{src.dataset}/annotations/{src.sample_id}.json: no {missing[0]} hand for ground truth")
            item.vertices = np.stack([mesh_in_camera(hand_models[s], ann.hands[s], ann.R, ann.t).double().numpy() for s in SIDES])
            item.faces = np.stack([hand_models[s].closed_faces.cpu().numpy() for s in SIDES])
        return item
    if src.keypoints is None:
        raise DataError(f"{src.name}: no keypoint file")
    parsed = read_keypoints(src.keypoints)
    kp, present = assemble_hands(src.name, move_joints(parsed.joints, keypoint_convention, model_convention))
    item = Item(name=src.name, keypoints=kp, present=present, K=parsed.K, keypoints_source="file",
                camera=None if parsed.K is None else f"keypoint file {src.keypoints}",
                keypoint_convention=keypoint_convention)  # fmt: skip
    if src.image is not None:
        if parsed.K is None:
            raise DataError(f"{src.keypoints}: 'camera.K' is required when an image is given (to place the meshes over it)")
        item.image = read_input_image(src.image)
    return item


# --------------------------------------------------------------------------- images for models


def prepare_image(
    image: np.ndarray,
    K: np.ndarray,
    size: int,
    keypoints: np.ndarray | None = None,
    fill: float | None = CROP_FILL,
) -> tuple[torch.Tensor, np.ndarray]:
    """The model's square input image and its intrinsics.

    With ``keypoints`` and ``fill``: a square crop around the projected keypoints, which cover
    ``fill`` of its side (as the training crops do), zero outside the image. Otherwise the whole
    image, padded at the bottom or right to a square. Then resized to ``size``.

    Args:
        image: ``(H, W, 3)`` uint8.
        K: ``(3, 3)`` intrinsics of ``image``.
        size: output side in pixels.
        keypoints: ``(M, 3)`` camera-frame points to frame (the present hands' joints).
        fill: fraction of the side the keypoints' box covers; None: no crop.

    Returns:
        ``(3, size, size)`` float32 in [0, 1], and the ``(3, 3)`` intrinsics of that image.
    """
    h, w = image.shape[:2]
    if keypoints is not None and fill:
        uv = project_np(np.asarray(keypoints, dtype=np.float64), np.asarray(K, dtype=np.float64))
        lo, hi = uv.min(0), uv.max(0)
        side = max(int(math.ceil(float((hi - lo).max()) / fill)), 16)
        x0, y0 = (int(round(float(c) - side / 2)) for c in (lo + hi) / 2)
    else:
        side, x0, y0 = max(h, w), 0, 0
    return crop_square(image, x0, y0, side, size), square_crop_intrinsics_np(K, x0, y0, side, size)


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> torch.Tensor:
    """The square ``[x0, x0 + side)^2`` (whole pixels) of an ``(H, W, 3)`` uint8 image, zero
    outside the image, resized (PIL bilinear) to ``(3, size, size)`` float32 in [0, 1]. Its
    intrinsics: :func:`~im2hands.geometry.crops.square_crop_intrinsics_np` with the same box."""
    crop = Image.fromarray(image).crop((x0, y0, x0 + side, y0 + side))  # zero outside the image
    crop = crop.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
