"""A keypoint model's own validation metrics averaged over a whole dataset split, and the
trivial baselines beside them.

    python eval/est_metrics.py RUN_OR_WEIGHTS DATA_ROOT SPLIT OUT.json

RUN_OR_WEIGHTS: a ``kpts_est`` or ``kpts_ref`` training run folder, checkpoint or weights file
(``im2hands/assets/weights/kpts_est.pt``). The metrics are the model's ``metrics`` (the
trainer's validation numbers, docs/estimator.md), averaged over the split's items (weighted by
batch size; NaN entries, e.g. no hand present, skipped). ``baseline_*``: the same split's
errors when every item is given the training split's mean (``baseline_mean_2d_px``: each
joint's mean pixel position; ``baseline_mean_pose_mm``: each joint's mean wrist-relative
offset, wrist-aligned MPJPE; ``baseline_zero_pose_mm``: all joints at the wrist).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from im2hands.data import format as fmt
from im2hands.data.dataset import HandsDataset
from im2hands.engine.builders import build_batch_transform
from im2hands.engine.checkpoint import load_model
from im2hands.hands.constants import SIDES


def _keypoints(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2, 21, 2) pixels and (N, 2, 21, 3) wrist-relative metres of a split's items."""
    kp2, rel = [], []
    for sid in fmt.list_samples(root, split):
        ann = fmt.read_annotation(root, sid)
        k = np.stack([ann.hands[s].keypoints for s in SIDES])
        kp2.append(np.stack([ann.hands[s].keypoints_2d for s in SIDES]))
        rel.append(k - k[:, :1])
    return np.asarray(kp2), np.asarray(rel)


def baselines(root: Path, split: str) -> dict[str, float]:
    """Errors of the training split's mean on ``split`` (module docstring)."""
    tr2, tr3 = _keypoints(root, "train")
    te2, te3 = _keypoints(root, split)
    return {
        "baseline_mean_2d_px": float(np.linalg.norm(te2 - tr2.mean(0), axis=-1).mean()),
        "baseline_mean_pose_mm": float(1000 * np.linalg.norm(te3 - tr3.mean(0), axis=-1).mean()),
        "baseline_zero_pose_mm": float(1000 * np.linalg.norm(te3, axis=-1).mean()),
    }


def main(run: str, root: str, split: str, out: str) -> dict[str, float]:
    model, cfg = load_model(run)
    transform = build_batch_transform(cfg)  # kpts_ref: its seeded validation noise; kpts_est: none in eval
    loader = torch.utils.data.DataLoader(HandsDataset(root, split, fields=model.data_fields), batch_size=16)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for batch in loader:
            n = batch["image"].shape[0]
            if transform is not None:
                batch = transform(batch, training=False)
            for k, v in model.metrics(batch, model(batch)).items():
                if math.isfinite(v):
                    sums[k], counts[k] = sums.get(k, 0.0) + v * n, counts.get(k, 0) + n
    res = {k: round(sums[k] / counts[k], 3) for k in sorted(sums)}
    res.update({k: round(v, 3) for k, v in baselines(Path(root), split).items()})
    Path(out).write_text(json.dumps(res, indent=1) + "\n")
    print(res)
    return res


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:5])
