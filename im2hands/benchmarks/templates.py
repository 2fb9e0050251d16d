"""Timing of the two-hand interaction templates (:func:`time_templates`), the numbers of
``docs/poses.md``."""

from __future__ import annotations

import numpy as np
import torch

from im2hands.hands.interactions import TEMPLATES, sample_interaction

__all__ = ["time_templates"]


def time_templates(n: int = 30, seed: int = 0, threads: int | None = 1, shape_std: float = 0.8,
                   right_model=None, left_model=None) -> dict[str, dict[str, float]]:
    """Time :func:`sample_interaction` per template: ``{name: {wall_ms, wall_p90_ms, cpu_ms}}``
    (medians over ``n`` draws with random shapes). ``threads``: torch intra-op threads during
    the run (restored afterwards); ``None`` leaves the setting alone."""
    import time

    if right_model is None or left_model is None:
        from im2hands.hands.layer import load_hand_models

        models = load_hand_models()
        right_model, left_model = models["right"], models["left"]
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    table = {}
    try:
        for name in TEMPLATES:
            sample_interaction(name, right_model, left_model, None, g)  # warm-up
            wall, cpu = [], []
            for _ in range(n):
                shapes = shape_std * torch.randn(2, 10, generator=g)
                t, c = time.perf_counter(), time.process_time()
                sample_interaction(name, right_model, left_model, shapes, g)
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            table[name] = {"wall_ms": 1e3 * float(np.median(wall)), "wall_p90_ms": 1e3 * float(np.percentile(wall, 90)),
                           "cpu_ms": 1e3 * float(np.median(cpu))}
    finally:
        torch.set_num_threads(before)
    return table
