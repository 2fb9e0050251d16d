"""Does giving both hands of a pair one common metric size help the default image path's placement?

    python eval/placement_shared_scale.py DATA_ROOT SPLIT [N]

Runs the per-hand crop pipeline (MediaPipe's networks, ``shared_scale="none"``) once on the first
N items of a dataset split and on the real photos of ``eval/real_photos``, then places the found
hands again with :meth:`HandCropPipeline.place` for each variant of ``shared_scale`` (the
geometric or arithmetic mean of the two hands' ``palm`` or ``bones`` sizes) and prints, per
data kind and variant: the wrist position error, MRRPE, MPJPE wrist-aligned and MCP-scaled (mm)
against the ground truth. Synthetic hands are paired by side (as ``im2hands eval``), the real
photos' hands by their 2D keypoints (as ``eval/real_photos.py``). Keypoints only; nothing is
written. Used for the "Two hands, one size" paragraph of docs/estimator.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from placement_palm_length import _items  # noqa: E402  (the same items, in the same order)
from real_photos import match_hands, project  # noqa: E402

from im2hands.extraction.mediapipe_hands import mediapipe_pipeline  # noqa: E402
from im2hands.hands.constants import SIDES  # noqa: E402
from im2hands.models.measures import mpjpe_mcp_scaled, mpjpe_wrist, mrrpe  # noqa: E402

VARIANTS = (("none", "palm"), ("geometric", "palm"), ("arithmetic", "palm"), ("geometric", "bones"),
            ("arithmetic", "bones"))  # fmt: skip


def _pairs(kind: str, placed: dict, gt: dict, K: np.ndarray) -> dict[str, str]:
    """ground-truth side -> predicted side."""
    if kind == "synthetic":
        return {s: s for s in SIDES if s in placed and s in gt}
    return match_hands({s: project(j, K) for s, j in placed.items()}, {s: project(j, K) for s, j in gt.items()})


def main(root: str, split: str, n: int = 60) -> None:
    torch.set_num_threads(1)
    pipe = mediapipe_pipeline()
    res: dict = {}
    for kind, image, K, gt in _items(Path(root), split, n):
        found = pipe(image, K)
        valid = found.presence > 0
        rel = np.nan_to_num(found.keypoints - found.keypoints[:, :1])
        for mean, measure in VARIANTS:
            pipe.shared_scale, pipe.size_measure = mean, measure
            kp = pipe.place(found.keypoints_2d, rel, K, valid).keypoints[0].numpy()
            placed = {SIDES[s]: kp[s] for s in range(2) if valid[s]}
            pairs = _pairs(kind, placed, gt, np.asarray(K, float))
            d = res.setdefault((kind, mean, measure), {"root": [], "mrrpe": [], "wrist": [], "mcp": []})
            for g, p in pairs.items():
                d["root"].append(1000 * np.linalg.norm(placed[p][0] - gt[g][0]))
                d["wrist"].append(float(mpjpe_wrist(placed[p], gt[g])))
                d["mcp"].append(float(mpjpe_mcp_scaled(placed[p], gt[g])))
            if len(gt) == 2 and len(pairs) == 2:
                d["mrrpe"].append(float(mrrpe(placed[pairs["left"]], placed[pairs["right"]], gt["left"], gt["right"])))
        pipe.shared_scale, pipe.size_measure = "none", "palm"
    for (kind, mean, measure), d in res.items():
        m = lambda k: f"{np.mean(d[k]):.1f}" if d[k] else "-"  # noqa: E731
        print(f"{kind} {mean}/{measure}: wrist position mm {m('root')} (n={len(d['root'])}); MRRPE mm {m('mrrpe')} "
              f"(n={len(d['mrrpe'])}, median {np.median(d['mrrpe']) if d['mrrpe'] else float('nan'):.1f}); "
              f"MPJPE wrist-aligned mm {m('wrist')}, MCP-scaled {m('mcp')}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
