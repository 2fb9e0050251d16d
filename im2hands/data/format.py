"""The toolkit's on-disk dataset format (documented in ``docs/data_format.md``).

One folder per dataset::

    DIR/meta.json                 format name and version, source, hand model, image size
    DIR/config.yaml               the resolved config of the job that wrote it
    DIR/splits/<name>.txt         sample ids, one per line (optional)
    DIR/images/<id>.png|.jpg      RGB image
    DIR/masks/<id>.png            uint8 bit field: 1 left amodal, 2 right amodal, 4 left visible, 8 right visible
    DIR/depth/<id>.png            uint16 depth in units of 0.1 mm (0 = no hand)
    DIR/annotations/<id>.json     camera, per-hand model parameters and keypoints; written LAST

A sample is complete exactly when its annotation file exists: writers put every other file in
place first and the annotation last, each atomically, so an interrupted job never leaves a
sample that looks complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from im2hands.hands.constants import SIDES
from im2hands.utils.errors import DataError
from im2hands.utils.io import atomic_path, write_json

FORMAT_NAME = "im2hands-dataset"
FORMAT_VERSION = 1
DEPTH_UNIT_M = 1e-4
"""Depth PNG unit: one count is 0.1 mm, so uint16 covers 0 to 6.55 m."""
MASK_BITS = {"left_amodal": 1, "right_amodal": 2, "left_visible": 4, "right_visible": 8}


@dataclass
class HandAnnotation:
    """One hand of one sample. Model parameters live in the world frame of the sample."""

    valid: bool
    pose: np.ndarray  # (48,) axis-angle, global rotation first
    shape: np.ndarray  # (10,) shape coefficients
    trans: np.ndarray  # (3,) metres, world frame
    keypoints: np.ndarray  # (21, 3) camera frame, metres, standard order
    keypoints_2d: np.ndarray  # (21, 2) pixels


@dataclass
class Annotation:
    """Everything known about one sample except its pixels."""

    id: str
    K: np.ndarray  # (3, 3) intrinsics of the stored image, pixels
    R: np.ndarray  # (3, 3) world -> camera rotation
    t: np.ndarray  # (3,) world -> camera translation, metres: x_cam = R x_world + t
    width: int
    height: int
    hand_model: str
    hands: dict[str, HandAnnotation]
    image: str = ""
    mask: str = ""
    depth: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _finite(name: str, value, shape: tuple[int, ...], where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise DataError(f"{where}: '{name}' has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: '{name}' holds NaN or infinite values")
    return arr


def annotation_to_dict(ann: Annotation) -> dict:
    """JSON-ready dict of an annotation (lists of floats)."""
    hands = {}
    for side, h in ann.hands.items():
        hands[side] = {
            "valid": bool(h.valid),
            "pose": np.asarray(h.pose, float).round(7).tolist(),
            "shape": np.asarray(h.shape, float).round(7).tolist(),
            "trans": np.asarray(h.trans, float).round(7).tolist(),
            "keypoints": np.asarray(h.keypoints, float).round(7).tolist(),
            "keypoints_2d": np.asarray(h.keypoints_2d, float).round(4).tolist(),
        }
    return {
        "id": ann.id,
        "image": ann.image,
        "mask": ann.mask,
        "depth": ann.depth,
        "camera": {
            "K": np.asarray(ann.K, float).tolist(),
            "R": np.asarray(ann.R, float).tolist(),
            "t": np.asarray(ann.t, float).tolist(),
            "width": int(ann.width),
            "height": int(ann.height),
        },
        "hand_model": ann.hand_model,
        "hands": hands,
        "extra": ann.extra,
    }


def annotation_from_dict(data: dict, where: str = "annotation") -> Annotation:
    """Parse and validate an annotation dict; :class:`DataError` names the file and field."""
    try:
        cam = data["camera"]
        hands = {}
        for side in SIDES:
            if side not in data["hands"]:
                continue
            h = data["hands"][side]
            hands[side] = HandAnnotation(
                valid=bool(h["valid"]),
                pose=_finite(f"hands.{side}.pose", h["pose"], (48,), where),
                shape=_finite(f"hands.{side}.shape", h["shape"], (10,), where),
                trans=_finite(f"hands.{side}.trans", h["trans"], (3,), where),
                keypoints=_finite(f"hands.{side}.keypoints", h["keypoints"], (21, 3), where),
                keypoints_2d=_finite(f"hands.{side}.keypoints_2d", h["keypoints_2d"], (21, 2), where),
            )
        return Annotation(
            id=str(data["id"]),
            K=_finite("camera.K", cam["K"], (3, 3), where),
            R=_finite("camera.R", cam["R"], (3, 3), where),
            t=_finite("camera.t", cam["t"], (3,), where),
            width=int(cam["width"]),
            height=int(cam["height"]),
            hand_model=str(data["hand_model"]),
            hands=hands,
            image=str(data.get("image", "")),
            mask=str(data.get("mask", "")),
            depth=str(data.get("depth", "")),
            extra=dict(data.get("extra", {})),
        )
    except KeyError as exc:
        raise DataError(f"{where}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: malformed annotation: {exc}") from None


# ----------------------------------------------------------------------------- reading


def read_json(path: Path) -> Any:
    """Read a JSON file; :class:`DataError` for a missing or malformed file."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON: {exc}") from None


def read_annotation(root: Path, sample_id: str) -> Annotation:
    path = Path(root) / "annotations" / f"{sample_id}.json"
    return annotation_from_dict(read_json(path), where=str(path))


def read_image(path: Path) -> np.ndarray:
    """RGB image as uint8 (H, W, 3), as it is meant to be seen: turned upright by its EXIF
    orientation; 16-bit images scaled to 8 bits (not clipped); grayscale, palette and
    alpha images as their RGB colours (alpha dropped). :class:`DataError` for missing or
    corrupted files."""
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit (or float) grayscale
                values = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode != "F" and values.max() > 255 else 255.0 if im.mode != "F" else 1.0
                gray = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=-1)
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image: {exc}") from None


EXIF_FOCAL_35MM = 0xA405
"""EXIF tag ``FocalLengthIn35mmFilm`` (in the Exif sub-IFD ``0x8769``): the lens's focal length
as on a 36 x 24 mm frame, millimetres (phones and most cameras write it)."""


def read_exif_focal_35mm(path: Path) -> float | None:
    """The 35 mm equivalent focal length (mm) an image's EXIF states, or None (no EXIF, no such
    tag, zero, or an unreadable file: the caller then falls back to its default camera)."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get_ifd(0x8769).get(EXIF_FOCAL_35MM)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    try:
        f = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def read_masks(path: Path) -> dict[str, np.ndarray]:
    """Masks as bool arrays keyed ``left_amodal``, ``right_amodal``, ``left_visible``, ``right_visible``."""
    if not path.is_file():
        raise DataError(f"mask not found: {path}")
    try:
        with Image.open(path) as im:
            bits = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable mask: {exc}") from None
    return {name: (bits & bit) > 0 for name, bit in MASK_BITS.items()}


def read_depth(path: Path) -> np.ndarray:
    """Depth in metres as float32 (H, W); 0 where no hand is seen."""
    if not path.is_file():
        raise DataError(f"depth not found: {path}")
    try:
        with Image.open(path) as im:
            raw = np.asarray(im, dtype=np.uint16)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable depth: {exc}") from None
    return raw.astype(np.float32) * DEPTH_UNIT_M


_PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every complete PNG
_JPEG_END = b"\xff\xd9"


def check_image_file(path: Path) -> None:
    """Cheap integrity check of an image file (header and end, not the pixels).

    Raises:
        DataError: a missing file, an unreadable header, or a PNG/JPEG cut short (its end
            marker missing: the usual result of an interrupted copy).
    """
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with Image.open(path) as im:
            kind = im.format
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image: {exc}") from None
    end = {"PNG": _PNG_END, "JPEG": _JPEG_END}.get(kind)
    if end is not None:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 32))
            if end not in fh.read():
                raise DataError(f"{path}: truncated {kind} file (no end marker)")


def check_sample(root: Path, sample_id: str, files: tuple[str, ...] = ("image", "mask", "depth")) -> None:
    """Check one sample without decoding its pixels: the annotation parses and validates, and
    each of ``files`` (``image``, ``mask``, ``depth``) passes :func:`check_image_file`.

    Raises:
        DataError: naming the sample's file and what is wrong.
    """
    root = Path(root)
    ann = read_annotation(root, sample_id)
    for name in files:
        check_image_file(root / getattr(ann, name))


def read_meta(root: Path) -> dict:
    path = Path(root) / "meta.json"
    meta = read_json(path)
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not an im2hands dataset (format={meta.get('format')!r})")
    if int(meta.get("version", -1)) > FORMAT_VERSION:
        raise DataError(f"{path}: format version {meta.get('version')} is newer than this toolkit's {FORMAT_VERSION}")
    return meta


def list_samples(root: Path, split: str = "all") -> list[str]:
    """Ids of the complete samples of a split (``all``: every complete sample, sorted)."""
    root = Path(root)
    if not (root / "meta.json").is_file():
        raise DataError(f"{root}: not a dataset folder (no meta.json)")
    if split == "all":
        return sorted(p.stem for p in (root / "annotations").glob("*.json"))
    path = root / "splits" / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in (root / "splits").glob("*.txt")) + ["all"]
        raise DataError(f"{root}: no split '{split}' (have: {', '.join(have)})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- writing


def write_meta(root: Path, meta: dict) -> None:
    write_json(Path(root) / "meta.json", {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta})


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 / uint16 array as PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)


def encode_masks(masks: dict[str, np.ndarray]) -> np.ndarray:
    out = None
    for name, bit in MASK_BITS.items():
        m = np.asarray(masks[name], bool)
        out = np.zeros(m.shape, np.uint8) if out is None else out
        out |= np.where(m, bit, 0).astype(np.uint8)
    return out


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    d = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0, posinf=0.0)
    return np.clip(np.round(d / DEPTH_UNIT_M), 0, 65535).astype(np.uint16)


def write_sample(
    root: Path,
    ann: Annotation,
    image: np.ndarray,
    masks: dict[str, np.ndarray],
    depth_m: np.ndarray,
) -> None:
    """Write one complete sample; the annotation goes last so completeness is atomic."""
    root = Path(root)
    sid = ann.id
    ann.image, ann.mask, ann.depth = f"images/{sid}.png", f"masks/{sid}.png", f"depth/{sid}.png"
    write_png(root / ann.image, np.asarray(image, np.uint8))
    write_png(root / ann.mask, encode_masks(masks))
    write_png(root / ann.depth, encode_depth(depth_m))
    write_json(root / "annotations" / f"{sid}.json", annotation_to_dict(ann), indent=None)


def is_complete(root: Path, sample_id: str) -> bool:
    return (Path(root) / "annotations" / f"{sample_id}.json").is_file()


def sample_id(index: int) -> str:
    return f"{index:07d}"


def write_splits(root: Path, splits: dict[str, list[str]]) -> None:
    for name, ids in splits.items():
        with atomic_path(Path(root) / "splits" / f"{name}.txt") as tmp:
            tmp.write_text("".join(f"{i}\n" for i in ids))


