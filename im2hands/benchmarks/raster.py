"""Benchmark of the pure-torch rasterizer: ``python -m im2hands.benchmarks.raster``.

Scene as in ``/work/shared/reference/dependencies.md`` section 4: two hand-sized closed meshes
(capsule hands, :func:`im2hands.benchmarks.meshes.capsule_hand`, 3,888 faces each, 7,776 in
total) about 0.5 m in front of a 256 x 256 camera with f = 300 px, principal point (128, 128).
Reports the median over ``repeats`` runs (after two warm-ups) of: the scene rasterization
alone; :func:`im2hands.geometry.raster.render` (RGB + depth + object ids + visible masks);
and ``render`` with amodal masks too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from im2hands.benchmarks.meshes import capsule_hand
from im2hands.geometry.raster import join_meshes, rasterize, render

__all__ = ["two_hand_scene", "bench_raster", "format_table", "main"]


def two_hand_scene(count: int = 8, max_edge: float | None = 0.0125, device: str | torch.device = "cpu"):
    """Two overlapping capsule hands (3,856 faces each by default) facing a 256 x 256 camera 0.5 m away.

    Returns:
        meshes: two triples ``(vertices_cam (V, 3) float32, faces (F, 3) int64, colors (V, 3))``,
        and ``K`` (3, 3) float32.
    """
    tilt = np.array([[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    meshes = []
    for side, x in ((-1, -0.035), (1, 0.035)):
        rot = np.diag([side, -1.0, 1.0]) @ tilt  # fingers up in the image, mirrored left hand
        v, f = capsule_hand(count, center=(x, 0.0, 0.5 + 0.03 * side), rotation=rot, max_edge=max_edge)
        if side < 0:
            f = f[:, ::-1].copy()  # the mirror flips orientation; keep normals outward
        color = np.tile([0.9, 0.6, 0.5] if side > 0 else [0.5, 0.6, 0.9], (len(v), 1))
        meshes.append(tuple(torch.tensor(a, device=device) for a in (v.astype(np.float32), f, color.astype(np.float32))))
    K = torch.tensor([[300.0, 0.0, 128.0], [0.0, 300.0, 128.0], [0.0, 0.0, 1.0]], device=device)
    return meshes, K


def _times_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return [1e3 * t for t in times]


def bench_raster(
    repeats: int = 20, threads: tuple[int, ...] = (2, 1), size: int = 256, device: str = "cpu"
) -> list[dict]:
    """Time rasterize / render on the two-hand scene; one row per (thread count, operation)."""
    meshes, K = two_hand_scene(device=device)
    v, f, obj = join_meshes([(m[0], m[1]) for m in meshes])
    hw = (size, size)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    ops = {
        "rasterize (scene, object ids)": lambda: rasterize(v, f, K, hw, face_object=obj),
        "render: rgb + depth + visible masks": lambda: render(meshes, K, hw, amodal=False),
        "render: + amodal masks (same pass)": lambda: render(meshes, K, hw, amodal=True),
    }
    frags = rasterize(v, f, K, hw, face_object=obj)
    covered = int(frags.mask.sum())
    old = torch.get_num_threads()
    rows = []
    try:
        for t in threads:
            torch.set_num_threads(t)
            for name, fn in ops.items():
                ms = _times_ms(fn, repeats, sync)
                rows.append(dict(threads=t, op=name, ms=statistics.median(ms), min_ms=min(ms), faces=int(f.shape[0]),
                                 size=size, covered=covered))
    finally:
        torch.set_num_threads(old)
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows of :func:`bench_raster` as a Markdown table."""
    lines = ["| threads | operation | faces | image | median ms/frame | min ms |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['op']} | {r['faces']:,} | {r['size']}x{r['size']} | {r['ms']:.1f} | {r['min_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m im2hands.benchmarks.raster [--repeats 20] [--device cpu]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args(argv)
    print(format_table(bench_raster(args.repeats, tuple(args.threads), args.size, device=args.device)))


if __name__ == "__main__":
    main()
