"""Synthetic closed, self-intersecting hand-like meshes for benchmarks and tests.

A "capsule hand" is a flattened palm capsule plus five finger capsules whose bases sink into
the palm, all concatenated into one mesh without boolean union. Every component is closed
and outward-oriented, so the whole mesh is closed, and it self-intersects where fingers enter
the palm: the case where ray parity mislabels points and the winding number does not.
"""

from __future__ import annotations

import numpy as np
import trimesh
import trimesh.remesh

__all__ = ["capsule_hand", "faces_for_count"]

# (x offset, length, radius, spread angle in degrees) of thumb, index, middle, ring, pinky.
_FINGERS = [(0.040, 0.060, 0.011, 55.0), (0.024, 0.080, 0.009, 8.0), (0.006, 0.088, 0.009, 0.0),
            (-0.012, 0.082, 0.0085, -7.0), (-0.028, 0.066, 0.008, -15.0)]


def faces_for_count(count: int) -> int:
    """Faces of one :func:`capsule_hand` built with ``count``: 6 capsules of 2 count^2 faces."""
    return 12 * count * count


def capsule_hand(
    count: int = 16, center=(0.0, 0.0, 0.0), rotation=None, max_edge: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A closed hand-sized mesh (about 0.19 m long) as ``(vertices (V, 3) float64 metres, faces (F, 3))``.

    Args:
        count: capsule resolution; the mesh has ``12 count^2`` faces (16 -> 3,072; 41 -> 20,172).
        center: (3,) translation applied last (metres).
        rotation: optional (3, 3) rotation applied before the translation.
        max_edge: if given, split edges longer than this (metres), which turns the long
            cylinder triangles into MANO-like ones (count 8, 0.0125 -> 3,856 faces, mean edge 7.5 mm).

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64, outward-oriented, closed, self-intersecting.
    """
    parts = []
    palm = trimesh.creation.capsule(height=0.06, radius=0.035, count=[count, count])  # along z
    palm.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))  # z -> +y
    palm.vertices[:, 2] *= 0.45  # flatten the palm (a positive scale keeps the orientation)
    parts.append(palm)
    for x, length, radius, angle in _FINGERS:
        cap = trimesh.creation.capsule(height=length, radius=radius, count=[count, count])
        # capsule axis is z; rotate it to +y, spread it, and sink its base into the palm
        cap.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        cap.apply_transform(trimesh.transformations.rotation_matrix(np.radians(-angle), [0, 0, 1]))
        tip_dir = np.array([np.sin(np.radians(angle)), np.cos(np.radians(angle)), 0.0])
        cap.apply_translation(np.array([x, 0.045, 0.0]) + tip_dir * (length / 2 - 0.01))
        parts.append(cap)
    verts, faces, offset = [], [], 0
    for p in parts:
        verts.append(np.asarray(p.vertices, dtype=np.float64))
        faces.append(np.asarray(p.faces, dtype=np.int64) + offset)
        offset += len(p.vertices)
    v, f = np.concatenate(verts), np.concatenate(faces)
    if max_edge is not None:
        v, f = trimesh.remesh.subdivide_to_size(v, f, max_edge=max_edge)
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).T
    return v + np.asarray(center, dtype=np.float64), f
