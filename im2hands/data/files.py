"""The library's own files: keypoint files and OBJ meshes, one reader and one writer each.

Keypoint files (one per item, ``NAME.json``; ``docs/keypoints_format.md``)::

    {"order": "standard",
     "camera": {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]},
     "left":  {"joints": [[x, y, z], ... 21]},
     "right": {"joints": [[x, y, z], ... 21]}}

Camera frame (OpenCV: +x right, +y down, +z forward), metres. ``order`` is one of
:data:`KEYPOINT_ORDERS` (default ``standard``); joints are converted to ``standard`` on reading.
A hand may be absent (key missing or ``null``). :func:`parse_keypoints` is the one validating
parser (``im2hands extract`` reads inputs with it, ``im2hands eval`` predictions and ground
truth with its camera-frame checks off); every problem raises
:class:`~im2hands.utils.errors.DataError` naming the file and the field.

OBJ meshes: :func:`write_obj` writes ``v x y z`` / ``f a b c`` (1-based) at micrometre precision
in metres; :func:`read_obj` reads any triangle or polygon OBJ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.data.format import read_json
from im2hands.hands.constants import SIDES
from im2hands.hands.joint_orders import convert
from im2hands.utils.errors import DataError
from im2hands.utils.io import atomic_path, write_json

__all__ = [
    "KEYPOINT_ORDERS",
    "MAX_COORDINATE_M",
    "KeypointFile",
    "parse_keypoints",
    "read_keypoints",
    "camera_file",
    "read_camera",
    "keypoints_to_dict",
    "write_keypoints",
    "read_obj",
    "write_obj",
]

KEYPOINT_ORDERS: tuple[str, ...] = ("standard", "interhand", "mano")
"""Joint orders accepted in keypoint files (see :mod:`im2hands.hands.joint_orders`)."""
MAX_COORDINATE_M = 10.0
"""Keypoint coordinates beyond this many metres are rejected (millimetres given by mistake)."""
_OBJ_IGNORED = {"vn", "vt", "vp", "l", "p", "o", "g", "s", "usemtl", "mtllib"}


# --------------------------------------------------------------------------- keypoint files


@dataclass
class KeypointFile:
    """One parsed keypoint file.

    Attributes:
        order: the order the file was written in.
        K: ``(3, 3)`` intrinsics (pixels) or None when the file has no camera.
        joints: side -> ``(21, 3)`` float64, ``standard`` order, camera frame, metres; absent
            hands are not in the dict.
    """

    order: str
    K: np.ndarray | None
    joints: dict[str, np.ndarray]


def _matrix(value: Any, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{name}' must be a {'x'.join(map(str, shape))} array of numbers") from None
    if arr.shape != shape:
        raise DataError(f"{where}: '{name}' has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: '{name}' holds NaN or infinite values")
    return arr


def _check_K(K: np.ndarray, where: str) -> None:
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(f"{where}: 'camera.K' needs positive focal lengths fx = K[0][0], fy = K[1][1]")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise DataError(f"{where}: 'camera.K' must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")


def parse_keypoints(
    data: Any, where: str = "keypoints", *, camera_frame: bool = True, require_hand: bool = True
) -> KeypointFile:
    """Validate a keypoint dict (the JSON of one file); see the module docstring.

    Args:
        data: the parsed JSON.
        where: the file, for messages.
        camera_frame: check what the camera frame implies: ``camera.K`` is read and checked,
            joints need positive depth and coordinates within :data:`MAX_COORDINATE_M`. False
            (``im2hands eval``): ``camera`` is ignored and any finite joints are accepted.
        require_hand: a file without any hand is an error.

    Raises:
        DataError: wrong types or shapes, unknown order, NaN; with ``camera_frame``:
            non-positive depth, coordinates beyond :data:`MAX_COORDINATE_M`, a bad ``K``; with
            ``require_hand``: no hand at all.
    """
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
    order = data.get("order", "standard")
    if order not in KEYPOINT_ORDERS:
        raise DataError(f"{where}: unknown 'order' {order!r}; expected one of {', '.join(KEYPOINT_ORDERS)}")
    K = None
    camera = data.get("camera") if camera_frame else None
    if camera is not None:
        if not isinstance(camera, dict) or "K" not in camera:
            raise DataError(f"{where}: 'camera' must be an object with 'K' (3x3 intrinsics, pixels)")
        K = _matrix(camera["K"], (3, 3), "camera.K", where)
        _check_K(K, where)
    joints: dict[str, np.ndarray] = {}
    for side in SIDES:
        hand = data.get(side)
        if hand is None:
            continue
        if not isinstance(hand, dict) or "joints" not in hand:
            raise DataError(f"{where}: '{side}' must be an object with 'joints' (21 [x, y, z] in metres) or null")
        kp = _matrix(hand["joints"], (21, 3), f"{side}.joints", where)
        bad = np.flatnonzero(kp[:, 2] <= 0) if camera_frame else np.zeros(0, dtype=np.int64)
        if bad.size:
            raise DataError(
                f"{where}: '{side}.joints' has non-positive depth z at joint(s) {bad.tolist()} "
                f"(in this order); joints are camera-frame metres with +z forward"
            )
        if camera_frame and np.abs(kp).max() > MAX_COORDINATE_M:
            raise DataError(
                f"{where}: '{side}.joints' has coordinates beyond {MAX_COORDINATE_M:g} m; "
                "the format is metres (millimetres given?)"
            )
        joints[side] = convert(kp, order, "standard")
    if require_hand and not joints:
        raise DataError(f"{where}: no hand: give 'left' and/or 'right' with 'joints'")
    return KeypointFile(order=order, K=K, joints=joints)


def read_keypoints(path: str | Path, *, camera_frame: bool = True, require_hand: bool = True) -> KeypointFile:
    """Read and validate one keypoint file (:class:`DataError` for a missing or malformed file;
    the options as in :func:`parse_keypoints`)."""
    path = Path(path)
    return parse_keypoints(read_json(path), where=str(path), camera_frame=camera_frame, require_hand=require_hand)


def camera_file(image: str | Path) -> Path:
    """The per-image camera file of an image: ``NAME.json`` beside ``NAME.jpg|png``."""
    return Path(image).with_suffix(".json")


def read_camera(path: str | Path) -> np.ndarray:
    """Read a per-image camera file ``{"camera": {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}}``.

    ``K`` is in pixels of the image beside the file (``docs/keypoints_format.md``); other keys
    are ignored (a keypoint file also serves).

    Returns:
        ``(3, 3)`` float64 intrinsics.

    Raises:
        DataError: naming the file: malformed JSON, no ``camera.K``, a ``K`` that is not 3x3
            numbers, NaN or infinite values, non-positive focal lengths or a bad last row.
    """
    path = Path(path)
    where = str(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object with 'camera', got {type(data).__name__}")
    camera = data.get("camera")
    if not isinstance(camera, dict) or "K" not in camera:
        raise DataError(f"{where}: needs 'camera': {{'K': [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}} (pixels of the image)")
    K = _matrix(camera["K"], (3, 3), "camera.K", where)
    _check_K(K, where)
    return K


def keypoints_to_dict(joints: dict[str, np.ndarray], K: np.ndarray | None = None, order: str = "standard") -> dict:
    """The JSON dict of a keypoint file.

    Args:
        joints: side -> ``(21, 3)`` in ``standard`` order, camera frame, metres.
        K: ``(3, 3)`` intrinsics or None.
        order: order to write the joints in.
    """
    if order not in KEYPOINT_ORDERS:
        raise ValueError(f"order must be one of {KEYPOINT_ORDERS}, got {order!r}")
    out: dict[str, Any] = {"order": order}
    if K is not None:
        out["camera"] = {"K": np.asarray(K, dtype=float).tolist()}
    for side in SIDES:
        if side in joints and joints[side] is not None:
            kp = convert(np.asarray(joints[side], dtype=np.float64), "standard", order)
            out[side] = {"joints": kp.round(7).tolist()}
    return out


def write_keypoints(path: str | Path, joints: dict[str, np.ndarray], K: np.ndarray | None = None, order: str = "standard") -> Path:
    """Write a keypoint file atomically (see :func:`keypoints_to_dict`)."""
    write_json(path, keypoints_to_dict(joints, K, order), indent=None)
    return Path(path)


# --------------------------------------------------------------------------- OBJ meshes


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a Wavefront OBJ file; :class:`DataError` for a bad file.

    Reads ``v`` and ``f`` lines (``f`` entries may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``,
    negative indices count back from the last vertex read; polygons are fanned into
    triangles); other standard statements are ignored, anything else is an error. Plain
    ``v x y z`` / ``f a b c`` files (what marching-cubes writers produce) take a vectorised path.

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mesh not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable OBJ: {exc}") from None
    parsed = _parse_obj_plain(text)
    v, f = parsed if parsed is not None else _parse_obj_general(text, path)
    if len(f) == 0:
        raise DataError(f"{path}: the OBJ holds no triangles")
    if not np.all(np.isfinite(v)):
        raise DataError(f"{path}: the OBJ holds NaN or infinite vertices")
    if f.min() < 0 or f.max() >= len(v):
        raise DataError(f"{path}: face indices out of range (the OBJ has {len(v)} vertices)")
    return v, f


def _parse_obj_plain(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path: only ``v x y z``, ``f a b c`` (positive indices), comments and ignored statements.

    Returns None when the file is anything else (the general parser then reads it and
    reports errors with line numbers).
    """
    lines = text.splitlines()
    vl = [ln[2:] for ln in lines if ln.startswith("v ")]
    fl = [ln[2:] for ln in lines if ln.startswith("f ")]
    for ln in lines:
        if ln.startswith(("v ", "f ")):
            continue
        parts = ln.split(maxsplit=1)
        if parts and not parts[0].startswith("#") and parts[0] not in _OBJ_IGNORED:
            return None
    vtok, ftok = " ".join(vl).split(), " ".join(fl).split()
    if len(vtok) != 3 * len(vl) or len(ftok) != 3 * len(fl) or any("/" in ln for ln in fl):
        return None
    try:
        v = np.array(vtok, dtype=np.float64).reshape(-1, 3)
        f = np.array(ftok, dtype=np.int64).reshape(-1, 3)
    except ValueError:
        return None
    if f.size and f.min() < 1:
        return None
    return v, f - 1


def _parse_obj_general(text: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts: list[list[str]] = []
    faces: list[tuple[int, int, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        tag = parts[0]
        try:
            if tag == "v":
                if len(parts) < 4:
                    raise ValueError("a vertex needs 3 coordinates")
                verts.append(parts[1:4])
            elif tag == "f":
                idx = [int(tok.split("/")[0]) for tok in parts[1:]]
                if len(idx) < 3 or 0 in idx:
                    raise ValueError("a face needs 3 or more non-zero indices")
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
            elif tag not in _OBJ_IGNORED:
                raise ValueError(f"unexpected statement {tag[:20]!r}")
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: malformed OBJ: {exc}") from None
    try:
        v = np.array(verts, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise DataError(f"{path}: malformed OBJ vertex: {exc}") from None
    return v, np.array(faces, dtype=np.int64).reshape(-1, 3)


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, header: str = "") -> Path:
    """Write a triangle mesh as Wavefront OBJ atomically (``v x y z``, 1-based ``f a b c``)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64) + 1
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append(f"# {len(v)} vertices, {len(f)} faces")
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"expected vertices (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    # one %-format over all numbers: the same text as np.savetxt, about 4x faster (it formats line by line)
    text = "\n".join(lines) + "\n" + ("v %.6f %.6f %.6f\n" * len(v)) % tuple(v.ravel().tolist())  # micrometres
    text += ("f %d %d %d\n" * len(f)) % tuple(f.ravel().tolist())
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
