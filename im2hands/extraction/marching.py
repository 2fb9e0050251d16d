"""Marching cubes on an occupancy grid -> one closed, outward-oriented triangle mesh.

Steps (:func:`extract_surface`):

1. Crop the grid to the bounding box of the inside points plus one point of margin (marching
   cubes then touches ~1/10 of a 257^3 hand grid). Where the inside region reaches the edge of
   the grid, pad that side with ``threshold - 1e6`` (as the original) so the surface closes on
   the box boundary.
2. ``skimage.measure.marching_cubes(level=threshold, gradient_direction="ascent",
   allow_degenerate=False)``: occupancy grows inwards, so ``"ascent"`` gives outward normals
   (``docs/dependencies.md``: with the default ``"descent"`` an occupancy field gives volume
   < 0); no zero-area faces, so the mesh stays watertight even after trimesh's vertex merging.
3. Vertices from grid-index coordinates to the caller's frame with a 4x4 affine; faces are
   flipped when its determinant is negative (mirrored left-hand palm frames), so the mesh stays
   outward-oriented. The signed volume is checked, and the mesh is inverted if it is negative.
4. Connected components (faces sharing vertices): the largest (most faces) is kept, and the
   count is reported.
5. Watertightness (``trimesh.Trimesh.is_watertight``: every edge shared by exactly two faces,
   consistently wound) is reported, not enforced.

Grid-index coordinates: grid point ``(i, j, k)`` is ``values[i, j, k]``; a vertex ``(x, y, z)``
in index units lies between grid points. The affine maps them to the output frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from im2hands.utils.errors import Im2HandsError

__all__ = ["SurfaceMesh", "NoSurfaceError", "extract_surface", "largest_component", "grid_affine"]

log = logging.getLogger(__name__)


class NoSurfaceError(Im2HandsError):
    """The grid has no iso-surface (every point on one side of the threshold)."""


@dataclass
class SurfaceMesh:
    """A marching-cubes mesh and what was checked about it.

    Attributes:
        vertices: ``(V, 3)`` float64 in the output frame (metres for the extractor).
        faces: ``(F, 3)`` int64, counter-clockwise seen from outside (outward normals).
        watertight: trimesh's ``is_watertight`` of the kept mesh.
        components: connected components before keeping the largest (1: nothing dropped).
        dropped_faces: faces of the components that were dropped.
        volume: signed volume of the kept mesh (output units cubed); > 0 for outward normals.
        area: surface area (output units squared).
        inverted: the orientation had to be flipped to make the volume positive.
    """

    vertices: np.ndarray
    faces: np.ndarray
    watertight: bool
    components: int
    dropped_faces: int
    volume: float
    area: float
    inverted: bool = False


def grid_affine(resolution: int, box_to_frame: np.ndarray | None = None, side: float = 1.0) -> np.ndarray:
    """4x4 affine from grid-index coordinates of a ``resolution``-cell grid to a frame.

    Index ``g`` (0..R) is the unit coordinate ``g / R``, the box coordinate
    ``u = (g / R - 0.5) * side`` (a cube of side ``side`` centred at the origin), then
    ``box_to_frame @ u``.

    Args:
        resolution: cells per side ``R``.
        box_to_frame: ``(4, 4)`` affine from box coordinates to the output frame (None: identity).
        side: the box side in output units.
    """
    S = np.eye(4)
    S[:3, :3] *= side / resolution
    S[:3, 3] = -0.5 * side
    T = np.eye(4) if box_to_frame is None else np.asarray(box_to_frame, dtype=np.float64)
    return T @ S


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Keep the connected component with the most faces (faces sharing a vertex are connected).

    Returns:
        ``(vertices, faces, components, dropped_faces)``; unreferenced vertices are removed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    V = len(vertices)
    if len(faces) == 0:
        return vertices, faces, 0, 0
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(V, V))
    count, labels = connected_components(graph, directed=False)
    face_label = labels[faces[:, 0]]
    sizes = np.bincount(face_label, minlength=count)
    used = sizes > 0  # isolated vertices (no faces) are components too; ignore them
    components = int(used.sum())
    if components <= 1:
        return vertices, faces, components, 0
    keep_faces = face_label == int(np.argmax(sizes))
    faces = faces[keep_faces]
    keep_v = np.zeros(V, dtype=bool)
    keep_v[faces.reshape(-1)] = True
    remap = np.cumsum(keep_v) - 1
    return vertices[keep_v], remap[faces], components, int((~keep_faces).sum())


def _crop_and_pad(values: np.ndarray, inside: np.ndarray, pad_value: float) -> tuple[np.ndarray, np.ndarray]:
    """The grid around the inside region (1-point margin), padded where it reaches the edge.

    Returns:
        ``(volume, offset)``: the array to run marching cubes on and the index of its first
        point in the original grid (negative where padded).
    """
    lo, hi = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(inside.any(axis=others))
        lo[axis], hi[axis] = hits[0], hits[-1]
    n = np.array(values.shape)
    lo_c, hi_c = np.maximum(lo - 1, 0), np.minimum(hi + 1, n - 1)
    vol = values[lo_c[0] : hi_c[0] + 1, lo_c[1] : hi_c[1] + 1, lo_c[2] : hi_c[2] + 1]
    before = (lo == 0).astype(np.int64)
    after = (hi == n - 1).astype(np.int64)
    if before.any() or after.any():
        vol = np.pad(vol, list(zip(before, after)), mode="constant", constant_values=pad_value)
    return np.ascontiguousarray(vol, dtype=np.float32), lo_c - before


def extract_surface(
    values: np.ndarray,
    threshold: float,
    index_to_frame: np.ndarray | None = None,
    *,
    keep_largest: bool = True,
) -> SurfaceMesh:
    """Marching cubes at ``threshold`` on an occupancy-like grid (inside: ``value >= threshold``).

    Args:
        values: ``(n0, n1, n2)`` float grid.
        threshold: iso-level.
        index_to_frame: ``(4, 4)`` affine from grid-index coordinates to the output frame
            (:func:`grid_affine`); None keeps index coordinates.
        keep_largest: keep only the largest connected component.

    Returns:
        :class:`SurfaceMesh`.

    Raises:
        NoSurfaceError: no point is inside, or every point is.
    """
    from skimage.measure import marching_cubes
    import trimesh

    values = np.asarray(values)
    if values.ndim != 3 or min(values.shape) < 2:
        raise ValueError(f"expected a 3D grid of at least 2 points per side, got shape {values.shape}")
    inside = values >= threshold
    n_in = int(inside.sum())
    if n_in == 0:
        raise NoSurfaceError(f"no surface found: no grid point reaches the threshold {threshold:g}")
    if n_in == inside.size:
        raise NoSurfaceError(f"no surface found: every grid point is at or above the threshold {threshold:g}")
    vol, offset = _crop_and_pad(values, inside, float(threshold) - 1e6)
    verts, faces, _, _ = marching_cubes(vol, level=float(threshold), gradient_direction="ascent", allow_degenerate=False)
    if len(faces) == 0:
        raise NoSurfaceError("no surface found: marching cubes returned no faces")
    verts = verts.astype(np.float64) + offset  # (V, 3) grid-index coordinates of the full grid
    faces = faces.astype(np.int64)
    A = np.eye(4) if index_to_frame is None else np.asarray(index_to_frame, dtype=np.float64)
    verts = verts @ A[:3, :3].T + A[:3, 3]
    if np.linalg.det(A[:3, :3]) < 0:
        faces = faces[:, ::-1].copy()
    if keep_largest:
        verts, faces, components, dropped = largest_component(verts, faces)
        if components > 1:
            log.debug("kept the largest of %d components (%d faces dropped)", components, dropped)
    else:
        components, dropped = largest_component(verts, faces)[2], 0
    tri = verts[faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), twice the area, outward
    volume = float(np.einsum("ij,ij->", tri[:, 0], cross)) / 6.0  # signed, by the divergence theorem
    area = 0.5 * float(np.linalg.norm(cross, axis=1).sum())
    inverted = volume < 0
    if inverted:
        faces, volume = faces[:, ::-1].copy(), -volume
        log.warning("marching cubes gave an inward-oriented mesh; inverted it")
    watertight = bool(trimesh.Trimesh(verts, faces, process=False).is_watertight)
    return SurfaceMesh(
        vertices=verts, faces=faces, watertight=watertight, components=components,
        dropped_faces=dropped, volume=volume, area=area, inverted=inverted,
    )  # fmt: skip
