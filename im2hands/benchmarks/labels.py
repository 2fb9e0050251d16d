"""Benchmark of inside/outside labelling: ``python -m im2hands.benchmarks.labels``.

Labels 100k query points against a closed, self-intersecting capsule hand
(:func:`im2hands.benchmarks.meshes.capsule_hand`) with about 3k and 20k faces, using every
candidate that imports here: our embree winding number, ``trimesh.Trimesh.contains`` (embree
ray parity), libigl's ``fast_winding_number`` and exact ``winding_number``, and our exact
torch reference (timed on a subset and scaled to 100k, it is far too slow for 100k).

Three point sets: ``uniform`` = 100k uniform in the 0.44 m cube around the hand (the IoU
set), ``near`` = 100k near-surface points (sigma 4 mm), ``halo 50/50`` = half of each (the
training set). Each row reports the median wall time over
``repeats`` runs and the number of points whose label differs from the exact winding number.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from im2hands.benchmarks.meshes import capsule_hand, faces_for_count
from im2hands.data.sampling import sample_box_uniform, sample_near_surface
from im2hands.geometry.inside import available_backends, inside_mesh, winding_number_exact

__all__ = ["bench_labels", "format_table", "main"]


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    fn()  # warm-up (imports, first-call allocations)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _candidates(v: np.ndarray, f: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import trimesh

    cands: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "im2hands inside_mesh (embree signed crossings, 2 rays)": lambda p: inside_mesh(v, f, p, backend="embree"),
    }

    def contains(p: np.ndarray) -> np.ndarray:
        # a fresh Trimesh each call, so the embree scene build is timed as in our own path
        return trimesh.Trimesh(v, f, process=False).contains(p)

    cands["trimesh contains (embree ray parity)"] = contains
    if "igl" in available_backends():
        import igl

        cands["igl.fast_winding_number"] = lambda p: np.abs(igl.fast_winding_number(v, f, p)) >= 0.5
        cands["igl.winding_number (exact)"] = lambda p: np.abs(igl.winding_number(v, f, p)) >= 0.5
    return cands


def bench_labels(
    counts: tuple[int, ...] = (16, 41),
    n_points: int = 100_000,
    repeats: int = 5,
    exact_subset: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Time every available inside-test candidate; return one row per (mesh, point set, method).

    Args:
        counts: capsule-hand resolutions (16 -> 3,072 faces, 41 -> 20,172 faces).
        n_points: query points per set.
        repeats: timed runs per row (median reported), after one warm-up run.
        exact_subset: points timed for the slow torch reference (scaled to ``n_points``).
        seed: sampling seed.

    Returns:
        Rows with keys ``faces, points, method, median_s, wrong`` (labels differing from the
        exact winding number; the reference labels come from our embree path checked against
        the exact torch winding number on ``exact_subset`` points and on every disagreement).
    """
    torch.set_num_threads(2)
    rows = []
    for count in counts:
        v, f = capsule_hand(count)
        center = torch.tensor((v.min(0) + v.max(0)) / 2)
        g = torch.Generator().manual_seed(seed)
        uniform = sample_box_uniform(n_points, center, torch.eye(3, dtype=torch.float64), generator=g).numpy()
        near = sample_near_surface(torch.from_numpy(v), torch.from_numpy(f), n_points, generator=g).numpy()
        half = n_points // 2
        sets = {"uniform": uniform, "near": near, "halo 50/50": np.concatenate([uniform[:half], near[half:]])}
        for set_name, p in sets.items():
            results = {}
            for name, fn in _candidates(v, f).items():
                t, labels = _median_time(lambda fn=fn: fn(p), repeats)
                results[name] = (t, np.asarray(labels, dtype=bool))
            # reference labels: ours, verified against the exact solid-angle sum where it matters
            ref = results["im2hands inside_mesh (embree signed crossings, 2 rays)"][1].copy()
            check = np.zeros(len(p), dtype=bool)
            check[:exact_subset] = True
            for _, labels in results.values():
                check |= labels != ref
            exact = np.abs(winding_number_exact(v, f, p[check]).numpy()) >= 0.5
            ref[check] = exact
            t_sub, _ = _median_time(lambda: winding_number_exact(v, f, p[:exact_subset]), 1)
            results[f"exact torch solid angle (float64; {exact_subset} pts x {n_points // exact_subset})"] = (
                t_sub * n_points / exact_subset,
                ref,
            )
            for name, (t, labels) in results.items():
                rows.append(dict(faces=faces_for_count(count), points=set_name, method=name, median_s=t,
                                 wrong=int((labels != ref).sum())))
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows of :func:`bench_labels` as a Markdown table."""
    lines = ["| faces | points | method | median | labels != exact winding |", "|---|---|---|---|---|"]
    for r in rows:
        t = r["median_s"]
        ts = f"{t * 1e3:.1f} ms" if t < 10 else f"{t:.1f} s"
        lines.append(f"| {r['faces']:,} | {r['points']} | {r['method']} | {ts} | {r['wrong']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m im2hands.benchmarks.labels [--repeats 5] [--points 100000]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--counts", type=int, nargs="+", default=[16, 41])
    args = ap.parse_args(argv)
    rows = bench_labels(counts=tuple(args.counts), n_points=args.points, repeats=args.repeats)
    print(format_table(rows))


if __name__ == "__main__":
    main()
