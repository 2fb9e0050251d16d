"""Surface extraction for the open hand model: marching cubes, then adaptive remeshing.

:func:`extract_surface` meshes the implicit hand of :mod:`im2hands.hands.anatomy` with marching
cubes and remeshes it to about 1.4k vertices: edge collapses driven by a size field that is
finer on the fingers (:func:`_size_field`), valence-improving edge flips, and tangential
Laplacian relaxation with Newton projection back onto the implicit surface (:func:`_relax`,
:func:`_project`). The result is one closed, outward-wound triangle mesh. Also holds the mesh
utilities the builder shares (:func:`vertex_normals`, :func:`_neighbors`).

Used by :mod:`im2hands.hands.builder`; deterministic (no random numbers).
"""

from __future__ import annotations

import heapq
import logging

import numpy as np
import scipy.sparse
from skimage.measure import marching_cubes

from im2hands.hands import anatomy
from im2hands.hands.anatomy import Skeleton
from im2hands.utils.errors import HandModelError

logger = logging.getLogger(__name__)

MC_VOXEL: float = 0.003
"""Marching-cubes voxel size (m) before remeshing."""
EDGE_FACTOR: float = 0.51
"""Target edge length = ``EDGE_FACTOR`` x the local part radius (finger radius or palm)."""
PALM_SIZE_RADIUS: float = 0.018
"""Part "radius" used for the palm's target edge length (m)."""


# ----------------------------------------------------------------------------------------------
# Mesh utilities


def _neighbors(faces: np.ndarray, n_vertices: int) -> scipy.sparse.csr_matrix:
    """Symmetric 0/1 vertex adjacency ``(V, V)`` of a triangle mesh."""
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = scipy.sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    return adj.tocsr()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` (outward for an outward-wound mesh)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for c in range(3):
        np.add.at(vn, faces[:, c], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def _project(points: np.ndarray, skeleton: Skeleton, steps: int = 3) -> np.ndarray:
    """Move points onto the implicit surface by Newton steps along the field's gradient."""
    eps = 1e-5
    offsets = np.eye(3) * eps
    for _ in range(steps):
        value = anatomy.hand_sdf(points, skeleton)
        grad = np.stack([(anatomy.hand_sdf(points + o, skeleton)
                          - anatomy.hand_sdf(points - o, skeleton)) / (2 * eps) for o in offsets], 1)
        points = points - (value / np.maximum((grad * grad).sum(1), 1e-6))[:, None] * grad
    return points


def _size_field(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Target edge length (m) at points: proportional to the nearest parts' radii."""
    dist = anatomy.part_distances(points, skeleton)
    radius = np.concatenate([[PALM_SIZE_RADIUS], skeleton.seg_radii[1:].mean(1)])
    soft = np.exp(-(dist - dist.min(1, keepdims=True)) / 0.003)
    return EDGE_FACTOR * (soft @ radius) / soft.sum(1)


# ----------------------------------------------------------------------------------------------
# Adaptive remeshing (collapse short edges, flip for valence, relax and project)


class _Mesh:
    """Minimal mutable triangle mesh with vertex -> face incidence, for edge operations."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.v = vertices.copy()
        self.f = faces.copy()
        self.alive_f = np.ones(len(faces), dtype=bool)
        self.alive_v = np.ones(len(vertices), dtype=bool)
        self.vf: list[set[int]] = [set() for _ in range(len(vertices))]
        for fi, tri in enumerate(faces):
            for a in tri:
                self.vf[a].add(fi)

    def ring(self, a: int) -> set[int]:
        return {int(b) for fi in self.vf[a] for b in self.f[fi] if b != a}

    def _normal(self, tri: np.ndarray) -> np.ndarray:
        p0, p1, p2 = self.v[tri[0]], self.v[tri[1]], self.v[tri[2]]
        return np.cross(p1 - p0, p2 - p0)

    def collapse(self, a: int, b: int, target: np.ndarray, max_len: float) -> bool:
        """Collapse edge (a, b) into ``a`` placed at ``target``; False if it would break things."""
        shared = self.vf[a] & self.vf[b]
        if len(shared) != 2:
            return False
        opposite = {int(t) for fi in shared for t in self.f[fi] if t != a and t != b}
        ring_a, ring_b = self.ring(a), self.ring(b)
        if (ring_a & ring_b) != opposite or any(len(self.vf[o]) <= 3 for o in opposite):
            return False
        if len(ring_a | ring_b) - 2 < 3:
            return False
        others = np.array(sorted((ring_a | ring_b) - {a, b}))
        if np.sqrt(((self.v[others] - target) ** 2).sum(1)).max() > max_len:
            return False
        around = np.array(sorted((self.vf[a] | self.vf[b]) - shared))
        old = self.v[self.f[around]]
        new = old.copy()
        new[(self.f[around] == a) | (self.f[around] == b)] = target
        n_old = np.cross(old[:, 1] - old[:, 0], old[:, 2] - old[:, 0])
        n_new = np.cross(new[:, 1] - new[:, 0], new[:, 2] - new[:, 0])
        cos = (n_old * n_new).sum(1)
        if (cos <= 0.3 * np.sqrt((n_old ** 2).sum(1) * (n_new ** 2).sum(1)) + 1e-30).any():
            return False
        for fi in shared:
            self.alive_f[fi] = False
            for t in self.f[fi]:
                self.vf[t].discard(fi)
        for fi in self.vf[b]:
            self.f[fi][self.f[fi] == b] = a
            self.vf[a].add(fi)
        self.vf[b] = set()
        self.alive_v[b] = False
        self.v[a] = target
        return True

    def flip_pass(self) -> int:
        """Flip edges that reduce the squared deviation of valences from 6; returns flips."""
        flips = 0
        valence = np.array([len(s) for s in self.vf])
        for fi in range(len(self.f)):
            if not self.alive_f[fi]:
                continue
            for e in range(3):
                a, b = int(self.f[fi][e]), int(self.f[fi][(e + 1) % 3])
                if a > b:
                    continue
                shared = sorted(self.vf[a] & self.vf[b])
                if len(shared) != 2:
                    continue
                f0, f1 = shared
                c = int(next(t for t in self.f[f0] if t != a and t != b))
                d = int(next(t for t in self.f[f1] if t != a and t != b))
                if d in self.ring(c):
                    continue
                before = sum((valence[x] - 6) ** 2 for x in (a, b, c, d))
                after = sum((valence[x] + dv - 6) ** 2 for x, dv in ((a, -1), (b, -1), (c, 1), (d, 1)))
                if after >= before:
                    continue
                # new faces keep the orientation of the old ones
                t0 = list(self.f[f0])
                i0 = t0.index(a)
                order_ab = t0[(i0 + 1) % 3] == b  # f0 runs a -> b -> c
                nf0 = [a, d, c] if order_ab else [a, c, d]
                nf1 = [b, c, d] if order_ab else [b, d, c]
                n_old = self._normal(self.f[f0]) + self._normal(self.f[f1])
                n0, n1 = self._normal(np.array(nf0)), self._normal(np.array(nf1))
                if min(np.dot(n0, n_old), np.dot(n1, n_old), np.dot(n0, n1)) <= 0.2 * (
                        np.linalg.norm(n0) * np.linalg.norm(n1)):
                    continue
                for fj, new in ((f0, nf0), (f1, nf1)):
                    for t in self.f[fj]:
                        self.vf[t].discard(fj)
                    self.f[fj] = new
                    for t in new:
                        self.vf[t].add(fj)
                valence[[a, b]] -= 1
                valence[[c, d]] += 1
                flips += 1
                break
        return flips

    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        keep = np.flatnonzero(self.alive_v)
        remap = np.full(len(self.v), -1)
        remap[keep] = np.arange(len(keep))
        return self.v[keep].copy(), remap[self.f[self.alive_f]]


def _collapse_short_edges(mesh: _Mesh, size: np.ndarray) -> int:
    """Collapse edges shorter than 0.8 x the target length, shortest (relative) first.

    ``size`` holds the target edge length per vertex; a merged vertex gets the mean.
    """
    def priority(a: int, b: int) -> float:
        return float(np.linalg.norm(mesh.v[a] - mesh.v[b]) / (0.5 * (size[a] + size[b])))

    edges = np.unique(np.sort(np.concatenate([mesh.f[:, [0, 1]], mesh.f[:, [1, 2]],
                                              mesh.f[:, [2, 0]]]), axis=1), axis=0)
    rel = np.linalg.norm(mesh.v[edges[:, 0]] - mesh.v[edges[:, 1]], axis=1) / (
        0.5 * (size[edges[:, 0]] + size[edges[:, 1]]))
    heap = [(float(r), int(a), int(b)) for r, (a, b) in zip(rel, edges) if r < 0.8]
    heapq.heapify(heap)
    count = 0
    while heap:
        r, a, b = heapq.heappop(heap)
        if not (mesh.alive_v[a] and mesh.alive_v[b]) or not (mesh.vf[a] & mesh.vf[b]):
            continue
        if abs(priority(a, b) - r) > 1e-12:
            continue
        target = 0.5 * (mesh.v[a] + mesh.v[b])
        merged = 0.5 * (size[a] + size[b])
        if not mesh.collapse(a, b, target, 1.33 * merged):
            continue
        size[a] = merged
        count += 1
        for n in sorted(mesh.ring(a)):
            pr = priority(a, n)
            if pr < 0.8:
                heapq.heappush(heap, (pr, min(a, n), max(a, n)))
    return count


def _relax(vertices: np.ndarray, faces: np.ndarray, skeleton: Skeleton, steps: int) -> np.ndarray:
    """Tangential Laplacian relaxation, each step followed by projection onto the surface."""
    adj = _neighbors(faces, len(vertices))
    deg = np.asarray(adj.sum(1)).ravel()
    for _ in range(steps):
        normal = vertex_normals(vertices, faces)
        delta = adj @ vertices / deg[:, None] - vertices
        delta -= (delta * normal).sum(1, keepdims=True) * normal
        vertices = _project(vertices + 0.5 * delta, skeleton, steps=2)
    return vertices


def extract_surface(skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the implicit hand: marching cubes, then adaptive remeshing.

    Args:
        skeleton: the right hand's rest skeleton.

    Returns:
        ``vertices (V, 3)`` float64 (m, model frame) and ``faces (F, 3)`` int64, a single closed,
        outward-wound (counter-clockwise seen from outside) triangle mesh.
    """
    h = MC_VOXEL
    lo = np.array([-0.035, -0.045, -0.1])
    hi = np.array([0.19, 0.03, 0.06])
    axes = [np.arange(a, b + h, h) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    field = anatomy.hand_sdf(grid, skeleton).reshape([len(a) for a in axes])
    if (field[[0, -1]] <= 0).any() or (field[:, [0, -1]] <= 0).any() or (field[..., [0, -1]] <= 0).any():
        raise HandModelError("hand-model builder: the implicit hand touches the meshing box")
    verts, faces, _, _ = marching_cubes(field, 0.0, spacing=(h, h, h), allow_degenerate=False)
    verts = verts.astype(np.float64) + lo
    faces = faces.astype(np.int64)
    mesh = _Mesh(verts, faces)
    for it in range(3):
        collapsed = _collapse_short_edges(mesh, _size_field(mesh.v, skeleton))
        flips = sum(mesh.flip_pass() for _ in range(3))
        verts, faces = mesh.compact()
        verts = _relax(verts, faces, skeleton, steps=4)
        mesh = _Mesh(verts, faces)
        logger.debug("remesh pass %d: %d collapses, %d flips, %d vertices", it, collapsed, flips,
                     len(verts))
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    euler = len(verts) - len(counts) + len(faces)
    if (counts != 2).any() or euler != 2:
        raise HandModelError(f"hand-model builder: the hand surface is not one closed sphere-like "
                             f"mesh (edge uses {sorted(set(counts.tolist()))}, Euler number {euler})")
    return verts, faces
