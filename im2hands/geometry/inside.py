"""Exact inside/outside labels for closed triangle meshes, with winding-number semantics.

A point is *inside* when the mesh's winding number there satisfies ``|w| >= 0.5``. Unlike a
ray-parity test (odd number of hits = inside, as in ``trimesh.Trimesh.contains``), the winding
number stays correct where parts of one mesh overlap: a point inside two overlapping fingers
is crossed twice on its way out, so parity says "outside" while the winding number is 2.

Backends (``backend=`` argument):

- ``"embree"`` (default when ``embreex`` imports): signed ray crossings. For a closed,
  consistently oriented mesh the winding number at ``p`` equals the number of exits minus the
  number of entries along any ray from ``p`` to infinity. Every point is traced along two
  opposite directions with Embree's watertight ("robust") traversal, stepping past each hit;
  the few points whose two counts disagree (rays grazing an edge or vertex, or cut short by
  ``max_hits``) get the exact solid-angle winding number instead. Points outside the mesh's
  bounding box are outside without tracing.
- ``"igl"``: ``igl.fast_winding_number`` (libigl; approximate far field, exact enough away
  from the surface), used by ``"auto"`` only when ``embreex`` is missing and ``igl`` imports.
  libigl is *not* a dependency of im2hands.
- ``"exact"``: the naive reference, :func:`winding_number_exact`, the sum of the triangles'
  signed solid angles (Van Oosterom and Strackee), chunked over points. About 1e4 times slower.

The ray backend needs a closed mesh (every directed edge ``a->b`` matched by one ``b->a``;
see :func:`is_closed`); for open meshes pass ``backend="igl"`` or ``"exact"``, which compute the
generalized winding number. Timings and the choice are recorded in ``docs/dependencies.md``.

Example:
    >>> import trimesh
    >>> m = trimesh.creation.icosphere(subdivisions=3)
    >>> inside_mesh(m.vertices, m.faces, [[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]).tolist()
    [True, False]
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal

import numpy as np
import torch

from im2hands.typing import Bool, Float, Int, Tensor

__all__ = ["inside_mesh", "winding_number", "winding_number_exact", "is_closed", "available_backends", "has_embree"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "embree", "igl", "exact"]

# A fixed, irrational-looking direction avoids rays running along the axis-aligned edges of
# boxes and grid-like meshes. The second ray runs the opposite way.
_RAY_DIR = np.array([0.5320, 0.3149, 0.7860])
_RAY_DIR = _RAY_DIR / np.linalg.norm(_RAY_DIR)
# Step past a hit, in units of the normalised mesh (bounding box scaled to [-1, 1]).
_STEP = 2e-6


@functools.lru_cache(maxsize=1)
def has_embree() -> bool:
    """Whether the Embree ray backend is usable (cached)."""
    return "embree" in available_backends()


def available_backends() -> list[str]:
    """Names of the inside-test backends usable in this environment, fastest first."""
    names = []
    if _import_embree() is not None:
        names.append("embree")
    if _import_igl() is not None:
        names.append("igl")
    names.append("exact")
    return names


def _import_embree():
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError:
        return None
    return rtcore_scene, TriangleMesh


def _import_igl():
    try:
        import igl
    except ImportError:
        return None
    return igl


def _to_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(dtype, copy=False)
    return np.asarray(x, dtype=dtype)


def is_closed(faces) -> bool:
    """Whether every directed edge ``a->b`` of ``faces`` (F, 3) is matched by exactly one ``b->a``.

    This is what the ray backend needs: a closed, consistently oriented surface (it may
    self-intersect). A mesh made of several closed components is closed.
    """
    f = _to_numpy(faces, np.int64)
    if f.size == 0:
        return True
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # (3F, 2)
    n = int(f.max()) + 1
    fwd = np.sort(e[:, 0] * n + e[:, 1])
    rev = np.sort(e[:, 1] * n + e[:, 0])
    return bool(np.array_equal(fwd, rev)) and np.unique(fwd).size == fwd.size


def winding_number_exact(
    vertices: Float[Tensor, "V 3"] | np.ndarray,
    faces: Int[Tensor, "F 3"] | np.ndarray,
    points: Float[Tensor, "N 3"] | np.ndarray,
    chunk_elems: int = 1 << 21,
) -> Float[Tensor, "N"]:
    """Reference generalized winding number: the sum of signed solid angles over 4 pi.

    Exact up to float rounding for any triangle soup (open, closed, self-intersecting). Cost is
    O(N F); chunked over points so that one chunk holds about ``chunk_elems`` point-face pairs.

    Args:
        vertices: (V, 3) float, any frame and unit.
        faces: (F, 3) int, counter-clockwise seen from outside (outward normals).
        points: (N, 3) query points, same frame.
        chunk_elems: point-face pairs per chunk (memory ~ 200 bytes per pair in float64).

    Returns:
        (N,) float64 tensor on the device of ``vertices`` (torch) or CPU: about 1 inside a
        positively oriented closed surface, 0 outside, k inside k overlapping layers.
    """
    v = torch.as_tensor(vertices).to(torch.float64)
    f = torch.as_tensor(faces, device=v.device).long()
    p = torch.as_tensor(points).to(device=v.device, dtype=torch.float64)
    tri = v[f]  # (F, 3, 3)
    out = torch.zeros(p.shape[0], dtype=torch.float64, device=v.device)
    if f.shape[0] == 0 or p.shape[0] == 0:
        return out
    step = max(1, chunk_elems // f.shape[0])
    for s in range(0, p.shape[0], step):
        q = p[s : s + step, None, :]  # (C, 1, 3)
        a, b, c = tri[None, :, 0] - q, tri[None, :, 1] - q, tri[None, :, 2] - q  # (C, F, 3) each
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)  # (C, F)
        det = (a * torch.linalg.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s : s + step] = torch.atan2(det, den).sum(-1) / (2.0 * math.pi)
    return out


class _EmbreeWinding:
    """Signed ray-crossing counter over one Embree scene (the mesh normalised to [-1, 1]^3)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        rtcore_scene, TriangleMesh = _import_embree()
        lo, hi = vertices.min(0), vertices.max(0)
        self.center = (lo + hi) / 2
        self.scale = 1.0 / max(float((hi - lo).max()) / 2, 1e-12)
        v = (vertices - self.center) * self.scale  # (V, 3) in [-1, 1]
        try:
            self.scene = rtcore_scene.EmbreeScene(robust=True)
        except TypeError:  # older embreex without the robust flag
            self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self.scene, vertices=v.astype(np.float32), indices=faces.astype(np.int32))
        tri = v[faces]  # (F, 3, 3)
        self.plane_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), outward
        self.plane_o = tri[:, 0]

    def crossings(self, p: np.ndarray, d: np.ndarray, max_hits: int) -> tuple[np.ndarray, np.ndarray]:
        """Signed crossings (exits - entries) of rays ``p + t d``; also the rays that hit max_hits."""
        w = np.zeros(len(p), dtype=np.int64)
        origin = p.copy()
        last = np.full(len(p), -1, dtype=np.int64)
        live = np.arange(len(p))
        d32 = d[None].astype(np.float32)  # (1, 3): embreex broadcasts a single direction
        dn = self.plane_n @ d  # (F,) sign tells exit (+) or entry (-)
        for _ in range(max_hits):
            if live.size == 0:
                break
            prim = self.scene.run(origin[live].astype(np.float32), d32).astype(np.int64)
            hit = prim != -1
            live, prim = live[hit], prim[hit]
            fresh = prim != last[live]  # re-hitting the triangle just stepped past: ignore
            w[live[fresh]] += np.sign(dn[prim[fresh]]).astype(np.int64)
            last[live] = prim
            # Move to the hit point (plane-line intersection in float64), then a bit beyond it.
            denom = dn[prim]
            t = np.einsum("ij,ij->i", self.plane_n[prim], self.plane_o[prim] - origin[live])
            t = np.where(np.abs(denom) > 1e-12, t / np.where(denom == 0, 1.0, denom), 0.0)
            t = np.maximum(t, 0.0) + np.where(fresh, _STEP, 4 * _STEP)
            origin[live] += t[:, None] * d[None]
        unfinished = np.zeros(len(p), dtype=bool)
        unfinished[live] = True
        return w, unfinished

    def winding(self, points: np.ndarray, max_hits: int) -> tuple[np.ndarray, np.ndarray]:
        """Winding numbers (float) and a mask of points that need the exact fallback."""
        p = (points - self.center) * self.scale  # (N, 3) normalised
        w = np.zeros(len(p))
        in_box = np.all(np.abs(p) <= 1.0 + 1e-9, axis=1)
        idx = np.nonzero(in_box)[0]
        if idx.size == 0:
            return w, np.zeros(len(p), dtype=bool)
        w1, u1 = self.crossings(p[idx], _RAY_DIR, max_hits)
        w2, u2 = self.crossings(p[idx], -_RAY_DIR, max_hits)
        w[idx] = w1
        bad = np.zeros(len(p), dtype=bool)
        bad[idx] = (w1 != w2) | u1 | u2
        return w, bad


def _winding_single(v: np.ndarray, f: np.ndarray, p: np.ndarray, backend: str, max_hits: int) -> np.ndarray:
    if len(p) == 0:
        return np.zeros(0)
    if len(f) == 0:
        return np.zeros(len(p))
    if backend == "embree":
        w, bad = _EmbreeWinding(v, f).winding(p, max_hits)
        if bad.any():
            log.debug("embree winding: %d of %d points need the exact fallback", int(bad.sum()), len(p))
            w[bad] = winding_number_exact(v, f, p[bad]).numpy()
        return w
    if backend == "igl":
        igl = _import_igl()
        return np.asarray(igl.fast_winding_number(v, f, p), dtype=np.float64)
    return winding_number_exact(v, f, p).numpy()


def _resolve_backend(backend: str, faces: np.ndarray) -> str:
    if backend not in ("auto", "embree", "igl", "exact"):
        raise ValueError(f"backend must be one of auto, embree, igl, exact; got {backend!r}")
    if backend == "embree" and _import_embree() is None:
        raise ImportError("backend='embree' needs the embreex package (pip install embreex)")
    if backend == "igl" and _import_igl() is None:
        raise ImportError("backend='igl' needs the libigl package (pip install libigl)")
    if backend != "auto":
        return backend
    closed = is_closed(faces)
    if closed and _import_embree() is not None:
        return "embree"
    if _import_igl() is not None:
        return "igl"
    if not closed:
        log.warning("mesh is not closed and libigl is missing: using the slow exact winding number")
    else:
        log.warning("embreex and libigl are missing: using the slow exact winding number")
    return "exact"


def winding_number(
    vertices: Float[Tensor, "*B V 3"] | np.ndarray,
    faces: Int[Tensor, "F 3"] | np.ndarray,
    points: Float[Tensor, "*B N 3"] | np.ndarray,
    backend: Backend = "auto",
    max_hits: int = 64,
) -> Float[Tensor, "*B N"] | np.ndarray:
    """Winding number of a closed triangle mesh at query points.

    Args:
        vertices: (V, 3) or (B, V, 3) float, numpy or torch; any frame, any unit (metres here).
        faces: (F, 3) int, shared by the batch; outward normals (counter-clockwise from outside).
        points: (N, 3) or (B, N, 3) query points in the frame of ``vertices``. An unbatched
            argument is broadcast against a batched one.
        backend: ``"auto"`` (embree for closed meshes, else igl, else exact), or one by name.
        max_hits: the most surface crossings traced per ray (embree); rays still going after
            that get the exact value.

    Returns:
        (N,) or (B, N) winding numbers, float64 numpy array, or a torch tensor (float64, on the
        device of ``points``) when ``points`` is a tensor.
    """
    as_torch = isinstance(points, torch.Tensor)
    device = points.device if as_torch else None
    v = _to_numpy(vertices, np.float64)
    f = _to_numpy(faces, np.int64).reshape(-1, 3)
    p = _to_numpy(points, np.float64)
    if v.ndim not in (2, 3) or v.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (V, 3) or (B, V, 3), got {v.shape}")
    if p.ndim not in (2, 3) or p.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3) or (B, N, 3), got {p.shape}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[-2]):
        raise ValueError(f"faces index vertices out of range [0, {v.shape[-2]})")
    name = _resolve_backend(backend, f)
    if v.ndim == 2 and p.ndim == 2:
        out = _winding_single(v, f, p, name, max_hits)
    else:
        batch = v.shape[0] if v.ndim == 3 else p.shape[0]
        if v.ndim == 3 and p.ndim == 3 and v.shape[0] != p.shape[0]:
            raise ValueError(f"batch sizes differ: vertices {v.shape}, points {p.shape}")
        vb = v if v.ndim == 3 else np.broadcast_to(v, (batch, *v.shape))
        pb = p if p.ndim == 3 else np.broadcast_to(p, (batch, *p.shape))
        out = np.stack([_winding_single(vb[i], f, pb[i], name, max_hits) for i in range(batch)])
    return torch.from_numpy(out).to(device) if as_torch else out


def inside_mesh(
    vertices: Float[Tensor, "*B V 3"] | np.ndarray,
    faces: Int[Tensor, "F 3"] | np.ndarray,
    points: Float[Tensor, "*B N 3"] | np.ndarray,
    backend: Backend = "auto",
    max_hits: int = 64,
) -> Bool[Tensor, "*B N"] | np.ndarray:
    """Inside/outside labels of query points for a closed (possibly self-intersecting) mesh.

    Inside means ``|winding number| >= 0.5``: overlapping parts of one mesh count as inside.
    Points within about 1e-6 of the surface (relative to the mesh size) may go either way.

    Args:
        vertices: (V, 3) or (B, V, 3) float, numpy or torch (metres, any frame).
        faces: (F, 3) int, shared by the batch.
        points: (N, 3) or (B, N, 3) query points in the frame of ``vertices``.
        backend: see :func:`winding_number`.
        max_hits: see :func:`winding_number`.

    Returns:
        (N,) or (B, N) bool: a numpy array, or a torch tensor on the device of ``points`` when
        ``points`` is a tensor.
    """
    w = winding_number(vertices, faces, points, backend=backend, max_hits=max_hits)
    return w.abs() >= 0.5 if isinstance(w, torch.Tensor) else np.abs(w) >= 0.5
