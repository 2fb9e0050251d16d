"""``im2hands demo`` / ``make demo``: the main job on built-in defaults.

Today: generate a small seeded synthetic two-hand set and write pictures of it. The full
image-to-mesh pipeline (extraction and evaluation) joins here as it lands.
"""

from __future__ import annotations

import logging
from pathlib import Path

from im2hands.config import load_config
from im2hands.data.show import show_sample
from im2hands.data.synthetic import synthesize

log = logging.getLogger(__name__)


def run_demo(out_dir: str | Path = "demo_out", num: int = 16, workers: int = 2, pictures: int = 6) -> dict:
    """Generate ``num`` synthetic samples into ``out_dir/data`` and pictures into ``out_dir/pictures``."""
    out = Path(out_dir)
    cfg = load_config(None, ["name=demo"])
    summary = synthesize(out / "data", num, seed=12345, workers=workers, cfg=cfg)
    shown = []
    for i in range(min(pictures, num)):
        shown.append(show_sample(out / "data", i, out / "pictures" / f"sample_{i:02d}.png"))
    log.info("synthetic set: %s (%d samples, %.1f samples/s)", out / "data", num, summary["samples_per_s"])
    log.info("pictures: %s (image, masks, keypoints, meshes, depth per sample)", out / "pictures")
    return {"summary": summary, "pictures": [str(p) for p in shown]}
