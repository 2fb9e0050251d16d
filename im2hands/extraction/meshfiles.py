"""Mesh files of ``im2hands extract``: ``--mesh-format obj`` (default; what ``im2hands eval``
reads), ``ply`` (one file per hand, as OBJ), or ``glb`` (both hands in one binary glTF scene,
coloured left orange and right blue, for viewers). Camera frame (OpenCV), metres; written
atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from im2hands.data.files import write_obj
from im2hands.hands.constants import SIDES
from im2hands.utils.io import atomic_path

__all__ = ["MESH_FORMATS", "mesh_file_names", "write_hand_meshes"]

MESH_FORMATS = ("obj", "ply", "glb")
HAND_RGBA = {"left": (242, 115, 38, 255), "right": (38, 115, 242, 255)}
"""Vertex colours of the GLB scene (the overlays' colours)."""


def mesh_file_names(name: str, mesh_format: str) -> dict[str, str]:
    """Per side, the file an item's hand goes to (``glb``: both hands share ``NAME.glb``)."""
    if mesh_format not in MESH_FORMATS:
        raise ValueError(f"mesh format must be one of {', '.join(MESH_FORMATS)}, got {mesh_format!r}")
    if mesh_format == "glb":
        return {side: f"{name}.glb" for side in SIDES}
    return {side: f"{name}_{side}.{mesh_format}" for side in SIDES}


def write_hand_meshes(out: Path, name: str, hands: dict[str, tuple[np.ndarray, np.ndarray] | None],
                      mesh_format: str = "obj") -> list[str]:  # fmt: skip
    """Write the hands that have a mesh (``hands[side] = (vertices, faces)`` or None) in
    ``mesh_format`` into ``out``; files of this item left by an earlier run for a hand that now
    has none are removed (they would contradict the summary). Returns the names written."""
    import trimesh

    files = mesh_file_names(name, mesh_format)
    written: list[str] = []
    meshes = {side: trimesh.Trimesh(np.asarray(vf[0], np.float64), np.asarray(vf[1], np.int64), process=False)
              for side, vf in hands.items() if vf is not None}  # fmt: skip
    if mesh_format == "glb":
        path = out / files["left"]
        if not meshes:
            path.unlink(missing_ok=True)
            return written
        scene = trimesh.Scene()
        for side, mesh in meshes.items():
            mesh.visual.vertex_colors = np.tile(HAND_RGBA[side], (len(mesh.vertices), 1))
            scene.add_geometry(mesh, node_name=f"{side}_hand", geom_name=f"{side}_hand")
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(scene.export(file_type="glb"))
        return [path.name]
    for side in SIDES:
        path = out / files[side]
        if side not in meshes:
            path.unlink(missing_ok=True)
            continue
        if mesh_format == "obj":
            v, f = hands[side]
            write_obj(path, v, f, f"im2hands extract: {name} {side} hand, camera frame (OpenCV), metres")
        else:
            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(meshes[side].export(file_type=mesh_format))
        written.append(path.name)
    return written
