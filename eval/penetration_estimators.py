"""Do the two penetration-volume homes give the same numbers?

    python eval/penetration_estimators.py [N] [SEED]

Synthesizes N two-hand samples (64 px images, seed SEED) into a temporary folder and, for each
ground-truth pair of hand meshes, prints the interpenetration volume (cm³) of
- ``eval``: :func:`im2hands.metrics.penetration.penetration_volume_cm3`, the number
  ``im2hands eval`` reports (Embree line lattice, 0.5 mm, oblique direction, seed 0);
- ``stored``: the ``penetration_cm3`` the generator stored in the annotation (the placement's
  own line grid, :func:`im2hands.hands.overlap.overlap_profile`, 2 mm, along its push direction);
- ``grid``: :func:`im2hands.hands.overlap.penetration_volume_grid` along z (2 mm, seed 0);
- ``mc``: :func:`im2hands.hands.overlap.penetration_volume` (Monte Carlo, 20000 points, seed 0).
Used for the penetration paragraph of docs/architecture.md ("Issue 13, last items").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from im2hands.config.schema import SynthConfig
from im2hands.data import format as fmt
from im2hands.data.dataset import mesh_in_camera
from im2hands.data.synthetic import synthesize
from im2hands.hands.layer import load_hand_models
from im2hands.hands.overlap import penetration_volume, penetration_volume_grid
from im2hands.metrics.penetration import penetration_volume_cm3


def main(num: int = 8, seed: int = 0) -> None:
    models = load_hand_models()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synthesize(root, num, seed=seed, settings=SynthConfig(image_size=64), progress=False)
        for sid in fmt.list_samples(root, "all"):
            ann = fmt.read_annotation(root, sid)
            mesh = {}
            for side in ("left", "right"):
                v = mesh_in_camera(models[side], ann.hands[side], ann.R, ann.t).double().numpy()
                mesh[side] = (v, models[side].closed_faces.cpu().numpy().astype(np.int64))
            (vl, fl), (vr, fr) = mesh["left"], mesh["right"]
            row = {
                "id": sid,
                "eval": penetration_volume_cm3(vl, fl, vr, fr),
                "stored": float(ann.extra["penetration_cm3"]),
                "grid": penetration_volume_grid(vl, fl, vr, fr, generator=torch.Generator().manual_seed(0)),
                "mc": penetration_volume(vl, fl, vr, fr, generator=torch.Generator().manual_seed(0)),
            }
            rows.append(row)
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    ev = np.array([r["eval"] for r in rows])
    for key in ("stored", "grid", "mc"):
        other = np.array([r[key] for r in rows])
        print(f"{key} - eval: mean {np.mean(other - ev):+.4f} cm3, max |diff| {np.abs(other - ev).max():.4f} cm3, "
              f"identical {int(np.sum(other == ev))}/{len(rows)}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
