"""Penetration volume between the two hands: the volume inside both meshes, in cm³.

"Inside" has winding-number semantics (``|w| >= 0.5``, as in
:func:`im2hands.geometry.inside.inside_mesh`): a point inside a hand's own overlapping fingers
counts once, and the meshes' orientation (outward or inward faces) does not matter.

Two estimators, both unbiased and deterministic for a seed:

``"lines"`` (default): exact along lines, midpoint rule across them.
    A lattice of parallel lines of spacing ``h`` (default 0.5 mm), randomly shifted (seeded),
    runs through the overlap of the two meshes' bounding boxes along a fixed oblique
    direction. Each line is traced through each mesh with Embree (every crossing, in float64
    from the triangle planes), which gives the exact 1-D intervals where the winding number
    is non-zero; the overlap of the two meshes' intervals is summed over lines and times
    ``h²``. A randomly shifted lattice makes this an unbiased estimate whose error shrinks
    much faster than Monte Carlo (two interacting synthetic hands: within about 1 % of the
    converged value at 0.5 mm; 100k Monte-Carlo points scatter by about 10 %, because the
    overlap is a thin contact layer). A line whose crossings do not add up to zero (a ray
    grazing an edge, more than ``max_hits`` crossings) is measured by inside tests on points
    along it instead. Open meshes, or no Embree: falls back to ``"points"``.
``"points"``: stratified Monte Carlo.
    About ``n`` cells, as close to cubes as possible, tile the overlap box; one uniform point
    per cell (jittered grid); ``volume = box volume x (points inside both) / cells``.

For scale: a fingertip sunk 5 mm deep into the other hand's palm is about 0.1 to 0.2 cm³;
the synthetic generator places its hands in contact with about 0.25 cm³ of overlap.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from im2hands.geometry.frames import CM3_PER_M3, orthonormal_basis
from im2hands.geometry.inside import has_embree, is_closed
from im2hands.metrics.iou import inside

__all__ = [
    "CM3_PER_M3",
    "LINE_SPACING",
    "stratified_box_points",
    "intersection_volume",
    "penetration_volume_cm3",
]

log = logging.getLogger(__name__)

"""Cubic centimetres per cubic metre (volumes only; lengths go through ``m_to_mm``)."""
LINE_SPACING: float = 5e-4
"""Default spacing of the line lattice of the ``"lines"`` estimator, metres (0.5 mm)."""

_LINE_DIR = np.array([0.3163, 0.5477, 0.7746])
_LINE_DIR = _LINE_DIR / np.linalg.norm(_LINE_DIR)  # oblique: never along a grid mesh's edges
_STEP = 2e-6  # step past a hit, normalised units (the scene is scaled to [-1, 1]^3)
_MAX_BAD_FRACTION = 0.05  # more bad lines than this: the mesh is probably open, use points


def stratified_box_points(lo, hi, n: int, seed: int = 0) -> np.ndarray:
    """One uniform point in each cell of a near-cubic grid of about ``n`` cells over a box.

    Args:
        lo, hi: (3,) box corners, ``hi > lo``.
        n: target number of cells (the result has ``prod(counts)`` points, close to ``n``).
        seed: the points are a pure function of (lo, hi, n, seed).

    Returns:
        (M, 3) float64 points, M close to n (at least 1).
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    ext = hi - lo
    if np.any(ext <= 0):
        raise ValueError(f"empty box: lo={lo}, hi={hi}")
    h = (float(np.prod(ext)) / max(int(n), 1)) ** (1.0 / 3.0)  # cell side for cubic cells
    counts = np.maximum(1, np.round(ext / h)).astype(np.int64)  # (3,)
    grid = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, 3)
    u = torch.rand(len(grid), 3, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).numpy()
    return lo + (grid + u) * (ext / counts)


def _points_volume(va, fa, vb, fb, lo, hi, n: int, seed: int) -> float:
    points = stratified_box_points(lo, hi, n, seed)
    in_a = inside(va, fa, points)
    if not in_a.any():
        return 0.0
    in_both = inside(vb, fb, points[in_a])
    return float(np.prod(hi - lo)) * int(np.count_nonzero(in_both)) / len(points)


class _LineTracer:
    """All crossings of a set of parallel lines with one mesh (Embree, normalised coordinates)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        try:
            self.scene = rtcore_scene.EmbreeScene(robust=True)
        except TypeError:  # older embreex without the robust flag
            self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self.scene, vertices=vertices.astype(np.float32), indices=faces.astype(np.int32))
        tri = vertices[faces]  # (F, 3, 3)
        self.normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), not normalised
        self.origin = tri[:, 0]

    def crossings(self, starts: np.ndarray, d: np.ndarray, max_hits: int):
        """Crossings of the lines ``starts + t d`` (t >= 0).

        Returns:
            line index (K,), parameter t (K,), winding change (K,) int (+1 entering an
            outward-oriented surface), and a (L,) mask of lines not finished after max_hits.
        """
        n_lines = len(starts)
        dn = self.normal @ d  # (F,) > 0: leaving an outward surface
        t_now = np.zeros(n_lines)
        last = np.full(n_lines, -1, dtype=np.int64)
        live = np.arange(n_lines)
        d32 = d[None].astype(np.float32)
        out_line, out_t, out_dw = [], [], []
        for _ in range(max_hits):
            if live.size == 0:
                break
            origin = starts[live] + t_now[live, None] * d
            prim = self.scene.run(origin.astype(np.float32), d32).astype(np.int64)
            hit = prim != -1
            live, prim = live[hit], prim[hit]
            denom = dn[prim]
            num = np.einsum("ij,ij->i", self.normal[prim], self.origin[prim] - starts[live])
            t = np.where(np.abs(denom) > 1e-300, num / np.where(denom == 0, 1.0, denom), t_now[live])
            fresh = (prim != last[live]) & (denom != 0)
            out_line.append(live[fresh])
            out_t.append(t[fresh])
            out_dw.append(-np.sign(denom[fresh]).astype(np.int64))
            last[live] = prim
            t_now[live] = np.maximum(t, t_now[live]) + np.where(fresh, _STEP, 4 * _STEP)
        unfinished = np.zeros(n_lines, dtype=bool)
        unfinished[live] = True
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        return cat(out_line, np.int64), cat(out_t, np.float64), cat(out_dw, np.int64), unfinished


def _lines_volume(va, fa, vb, fb, lo, hi, spacing: float, seed: int, max_hits: int) -> float | None:
    """The ``"lines"`` estimator in m³; None when too many lines are bad (open meshes)."""
    # normalise both meshes together so that Embree's float32 keeps ~1e-7 relative precision
    both = np.concatenate([va, vb])
    center = (both.min(0) + both.max(0)) / 2
    scale = 1.0 / max(float((both.max(0) - both.min(0)).max()) / 2, 1e-12)
    d = _LINE_DIR
    e1, e2 = orthonormal_basis(d)
    e1, e2 = -e1, -e2  # the basis the estimator was written with (exact negation)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rel = (corners - center) * scale  # (8, 3) overlap box, normalised
    h = spacing * scale
    u_lo, u_hi = (rel @ e1).min(), (rel @ e1).max()
    v_lo, v_hi = (rel @ e2).min(), (rel @ e2).max()
    shift = torch.rand(2, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).numpy() * h
    us = u_lo - shift[0] + h * np.arange(int(math.ceil((u_hi - u_lo) / h)) + 2)
    vs = v_lo - shift[1] + h * np.arange(int(math.ceil((v_hi - v_lo) / h)) + 2)
    uu, vv = np.meshgrid(us, vs, indexing="ij")
    back = 2.0  # the normalised meshes lie in [-1, 1]^3: start every line outside both
    starts = uu.reshape(-1, 1) * e1 + vv.reshape(-1, 1) * e2 - back * np.sqrt(3.0) * d  # (L, 3)
    n_lines = len(starts)

    events, bad = [], np.zeros(n_lines, dtype=bool)
    for k, (v, f) in enumerate(((va, fa), (vb, fb))):
        line, t, dw, unfinished = _LineTracer((v - center) * scale, f).crossings(starts, d, max_hits)
        total = np.bincount(line, weights=dw, minlength=n_lines)
        bad |= unfinished | (np.abs(total) > 0.5)
        dwa = dw if k == 0 else np.zeros_like(dw)
        dwb = dw if k == 1 else np.zeros_like(dw)
        events.append((line, t, dwa, dwb))
    if bad.mean() > _MAX_BAD_FRACTION:
        return None
    line = np.concatenate([e[0] for e in events])
    t = np.concatenate([e[1] for e in events])
    dwa = np.concatenate([e[2] for e in events])
    dwb = np.concatenate([e[3] for e in events])
    keep = ~bad[line]
    line, t, dwa, dwb = line[keep], t[keep], dwa[keep], dwb[keep]
    order = np.lexsort((t, line))
    line, t = line[order], t[order]
    wa, wb = np.cumsum(dwa[order]), np.cumsum(dwb[order])  # every kept line returns to 0: no reset needed
    seg = (line[:-1] == line[1:]) & (wa[:-1] != 0) & (wb[:-1] != 0)
    length = float(np.sum((t[1:] - t[:-1])[seg]))  # normalised units

    n_bad = int(bad.sum())
    if n_bad:  # measure the few bad lines with inside tests on points along them
        log.debug("penetration: %d of %d lines measured by points", n_bad, n_lines)
        length += _bad_lines_length(va, fa, vb, fb, starts[bad], d, center, scale, lo, hi, h)
    return length / scale * spacing**2


def _bad_lines_length(va, fa, vb, fb, starts, d, center, scale, lo, hi, h) -> float:
    """Length (normalised units) inside both meshes along lines, from points every h/4 in the box."""
    lo_n, hi_n = (lo - center) * scale, (hi - center) * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo_n - starts) / d, (hi_n - starts) / d  # (L, 3) slab entries and exits
    t_in = np.minimum(t1, t2).max(1)
    t_out = np.maximum(t1, t2).min(1)
    step = h / 4
    counts = np.where(t_out > t_in, np.ceil((t_out - t_in) / step), 0).astype(np.int64)  # (L,)
    if counts.sum() == 0:
        return 0.0
    line = np.repeat(np.arange(len(starts)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # index along each line
    ts = t_in[line] + step * (k + 0.5)
    p = (starts[line] + ts[:, None] * d) / scale + center  # metres
    in_a = inside(va, fa, p)
    if not in_a.any():
        return 0.0
    return step * int(np.count_nonzero(inside(vb, fb, p[in_a])))


def intersection_volume(
    vertices_a,
    faces_a,
    vertices_b,
    faces_b,
    n: int = 100_000,
    seed: int = 0,
    method: str = "lines",
    spacing: float = LINE_SPACING,
    max_hits: int = 64,
) -> float:
    """Volume inside both meshes, in m³ (see module docstring).

    Args:
        vertices_a, faces_a: first mesh, (V, 3) metres and (F, 3) int.
        vertices_b, faces_b: second mesh, same frame.
        n: points of the ``"points"`` estimator (also its fallback).
        seed: seed of the lattice shift or of the points.
        method: ``"lines"`` (default; falls back to ``"points"`` for open meshes or without
            Embree) or ``"points"``.
        spacing: line spacing of ``"lines"`` in metres.
        max_hits: most crossings traced per line and mesh.

    Returns:
        The intersection volume in m³ (0.0 when the bounding boxes do not overlap).
    """
    if method not in ("lines", "points"):
        raise ValueError(f"method must be 'lines' or 'points', got {method!r}")
    va, vb = np.asarray(vertices_a, np.float64), np.asarray(vertices_b, np.float64)
    fa, fb = np.asarray(faces_a, np.int64).reshape(-1, 3), np.asarray(faces_b, np.int64).reshape(-1, 3)
    if len(va) == 0 or len(vb) == 0 or len(fa) == 0 or len(fb) == 0:
        return 0.0
    lo = np.maximum(va.min(0), vb.min(0))
    hi = np.minimum(va.max(0), vb.max(0))
    if np.any(hi <= lo):
        return 0.0
    if method == "lines" and has_embree() and is_closed(fa) and is_closed(fb):
        vol = _lines_volume(va, fa, vb, fb, lo, hi, float(spacing), seed, max_hits)
        if vol is not None:
            return vol
        log.debug("penetration: too many lines need point tests; using the points estimator")
    return _points_volume(va, fa, vb, fb, lo, hi, n, seed)


def penetration_volume_cm3(vertices_a, faces_a, vertices_b, faces_b, n: int = 100_000, seed: int = 0,
                           method: str = "lines", spacing: float = LINE_SPACING) -> float:
    """:func:`intersection_volume` in cm³ (the left and right hands of one item)."""
    return intersection_volume(vertices_a, faces_a, vertices_b, faces_b, n=n, seed=seed, method=method,
                               spacing=spacing) * CM3_PER_M3
