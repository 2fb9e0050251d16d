"""Would fixing each hand's palm length help the default image path's placement?

    python eval/placement_palm_length.py DATA_ROOT SPLIT [N]

Runs the per-hand crop pipeline (MediaPipe's networks) on the first N items of a dataset split
and on the real photos of ``eval/real_photos``, then places each found hand twice more with its
3D keypoints rescaled to a palm length (mean wrist -> MCP distance) of 80, 85 and 90 mm, and
prints the wrist position error and MRRPE (mm) against the ground truth for each variant
(``none``: the pipeline's own placement). Keypoints only; nothing is written.
Used for the "tried and not adopted" paragraph of docs/estimator.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from im2hands.data import format as fmt
from im2hands.extraction.mediapipe_hands import mediapipe_pipeline
from im2hands.geometry.placement import place_hands
from im2hands.hands.constants import SIDES

MCPS = (5, 9, 13, 17)
REAL = Path(__file__).resolve().parent / "real_photos"


def _palm(k: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(k[i] - k[0]) for i in MCPS]))


def _items(root: Path, split: str, n: int):
    for sid in fmt.list_samples(root, split)[:n]:
        ann = fmt.read_annotation(root, sid)
        yield "synthetic", fmt.read_image(root / ann.image), ann.K, {s: ann.hands[s].keypoints for s in SIDES}
    for p in sorted((REAL / "images").glob("*.jpg")):
        gt = json.loads((REAL / "gt" / f"{p.stem}.json").read_text())
        yield "real", np.array(Image.open(p).convert("RGB")), np.array(gt["camera"]["K"]), {
            s: np.array(gt[s]["joints"]) for s in SIDES if s in gt}


def main(root: str, split: str, n: int = 60) -> None:
    torch.set_num_threads(2)
    pipe = mediapipe_pipeline()
    res: dict = {}
    for kind, image, K, gt in _items(Path(root), split, n):
        found = pipe(image, K)
        for mode in ("none", 0.080, 0.085, 0.090):
            placed, roots = {}, []
            for s, side in enumerate(SIDES):
                if side not in found.joints:
                    continue
                rel = found.keypoints[s] - found.keypoints[s][0]
                if mode != "none":
                    rel = rel * (mode / _palm(rel))
                pl = place_hands(torch.from_numpy(found.keypoints_2d[s])[None, None], torch.from_numpy(rel)[None, None],
                                 torch.from_numpy(np.asarray(K, float))[None], prior_weight=0.0)  # fmt: skip
                placed[side] = pl.keypoints[0, 0].numpy()
                if side in gt:
                    roots.append(1000 * np.linalg.norm(placed[side][0] - gt[side][0]))
            d = res.setdefault((kind, str(mode)), {"root": [], "mrrpe": []})
            d["root"] += roots
            if all(s in placed and s in gt for s in SIDES):
                d["mrrpe"].append(1000 * np.linalg.norm((placed["left"][0] - placed["right"][0])
                                                        - (gt["left"][0] - gt["right"][0])))  # fmt: skip
    for (kind, mode), d in sorted(res.items()):
        mrrpe = f"{np.mean(d['mrrpe']):.0f}" if d["mrrpe"] else "-"
        print(f"{kind} palm {mode}: wrist position mm mean {np.mean(d['root']):.0f} (n={len(d['root'])}); "
              f"MRRPE mm mean {mrrpe} (n={len(d['mrrpe'])})")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
