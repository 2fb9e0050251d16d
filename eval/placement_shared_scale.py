"""Two-hand consistent placement: one metric size (and wrist depth) for both hands of a pair.

    python eval/placement_shared_scale.py DATA_ROOT SPLIT [N]

Runs the per-hand crop pipeline (MediaPipe's networks) once on the first N items of a dataset
split and on the real photos of ``eval/real_photos``, then places the found hands again with
:meth:`HandCropPipeline.place` for each variant of ``pair_scale`` x ``pair_depth`` x
``size_measure`` (``own``: each hand its own predicted size, the placement before) and prints,
per data kind and variant: the wrist position error, MRRPE, MPJPE wrist-aligned and MCP-scaled
(mm) and the 2D error of the placed keypoints' projections (px) against the ground truth. Synthetic hands are paired by side (as ``im2hands eval``), the real
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

VARIANTS = (("own", False, "bones"), ("geometric", False, "palm"), ("geometric", False, "bones"),
            ("arithmetic", False, "bones"), ("best", False, "palm"), ("best", False, "bones"),
            ("geometric", True, "bones"), ("best", True, "palm"), ("best", True, "bones"))  # fmt: skip


def _pairs(kind: str, placed: dict, gt: dict, K: np.ndarray) -> dict[str, str]:
    """ground-truth side -> predicted side."""
    if kind == "synthetic":
        return {s: s for s in SIDES if s in placed and s in gt}
    return match_hands({s: project(j, K) for s, j in placed.items()}, {s: project(j, K) for s, j in gt.items()})


def main(root: str, split: str, n: int = 60) -> None:
    torch.set_num_threads(1)
    pipe = mediapipe_pipeline(pair_scale="own")  # each hand's own size: the network's metric keypoints
    res: dict = {}
    for kind, image, K, gt in _items(Path(root), split, n):
        K = np.asarray(K, float)
        found = pipe(image, K)
        valid = found.presence > 0
        rel = np.nan_to_num(found.keypoints - found.keypoints[:, :1])
        for variant in VARIANTS:
            pipe.pair_scale, pipe.pair_depth, pipe.size_measure = variant
            kp = pipe.place(found.keypoints_2d, rel, K, valid).keypoints[0].numpy()
            placed = {SIDES[s]: kp[s] for s in range(2) if valid[s]}
            pairs = _pairs(kind, placed, gt, K)
            d = res.setdefault((kind, *variant), {"root": [], "mrrpe": [], "wrist": [], "mcp": [], "px": []})
            for g, p in pairs.items():
                d["px"].append(float(np.linalg.norm(project(placed[p], K) - project(gt[g], K), axis=-1).mean()))
                d["root"].append(1000 * np.linalg.norm(placed[p][0] - gt[g][0]))
                d["wrist"].append(float(mpjpe_wrist(placed[p], gt[g])))
                d["mcp"].append(float(mpjpe_mcp_scaled(placed[p], gt[g])))
            if len(gt) == 2 and len(pairs) == 2:
                d["mrrpe"].append(float(mrrpe(placed[pairs["left"]], placed[pairs["right"]], gt["left"], gt["right"])))
        pipe.pair_scale = "own"  # the next image's pipeline placement: the network's own sizes again
    for (kind, scale, depth, measure), d in res.items():
        m = lambda k: f"{np.mean(d[k]):.1f}" if d[k] else "-"  # noqa: E731
        print(f"{kind} {scale}/{'depth' if depth else '-'}/{measure}: wrist position mm {m('root')} (n={len(d['root'])}); "
              f"MRRPE mm {m('mrrpe')} (n={len(d['mrrpe'])}, median {np.median(d['mrrpe']) if d['mrrpe'] else float('nan'):.1f}); "
              f"MPJPE wrist-aligned mm {m('wrist')}, MCP-scaled {m('mcp')}; 2D px {m('px')}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
