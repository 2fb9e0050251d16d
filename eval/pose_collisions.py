"""How well the pose sampler's cheap self-collision check tells penetrating poses from clean ones.

    python eval/pose_collisions.py [--num 400] [--seed 5] [--mano-dir DIR] [--mode random] [--reject] [--out OUT.json]

Draws ``--num`` poses of the right hand with the sampler's rejection off
(``PoseSampler.sample(reject=False)``; ``--reject``: on, as the synthetic data draws them), poses the hand model's mesh with each, and labels a pose
*penetrating* by an exact mesh test: the winding number of the closed mesh at every vertex
pushed 2 mm inwards along its normal; a vertex inside two layers of the mesh (|winding| > 1.5)
means one part of the hand is inside another. Then counts how many poses the capsule check
(``PoseSampler.collision_distances(angles) < 0``) flags, among the penetrating and the clean
ones, and the check's per-finger palm limits. Prints a JSON summary (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import trimesh

from im2hands.geometry.inside import winding_number
from im2hands.hands.layer import load_hand_models
from im2hands.hands.pose_sampler import MODES, PoseSampler
from im2hands.utils.io import write_json


def penetrating(vertices: np.ndarray, faces: np.ndarray, depth: float = 0.002) -> bool:
    """Whether a closed mesh passes through itself: some vertex, moved ``depth`` inwards, lies
    inside two layers (|winding number| > 1.5)."""
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    w = np.asarray(winding_number(vertices, faces, vertices - depth * normals))
    return bool((np.abs(w) > 1.5).any())


def evaluate(num: int, seed: int, mode: str = "random", mano_dir: str | None = None, reject: bool = False) -> dict:
    model = load_hand_models(mano_dir, dtype=torch.float64)["right"]
    sampler = PoseSampler.from_model(model, dtype=torch.float64)
    angles = sampler.sample(num, torch.Generator().manual_seed(seed), mode, reject=reject)
    with torch.no_grad():
        verts = model(sampler.pose_from_angles(angles), torch.zeros(num, 10, dtype=torch.float64),
                      torch.zeros(num, 3, dtype=torch.float64)).vertices.numpy()  # fmt: skip
    faces = model.closed_faces.numpy()
    pen = np.array([penetrating(v, faces) for v in verts])
    flagged = (sampler.collision_distances(angles) < 0).numpy()
    rest = float(sampler.collision_distances(torch.zeros(1, 15, 3, dtype=torch.float64))[0])
    return {
        "poses": num, "seed": seed, "mode": mode, "reject": reject, "penetrating": int(pen.sum()),
        "flagged_of_penetrating": int(flagged[pen].sum()), "flagged_of_clean": int(flagged[~pen].sum()),
        "clean": int((~pen).sum()), "rest_pose_margin_mm": 1000.0 * rest,
        "palm_limits_mm": [round(1000.0 * x, 2) for x in sampler.palm_limits.tolist()],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=400)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--mode", default="random", choices=MODES)
    p.add_argument("--mano-dir", default=None, help="hand-model folder (default: the open hand model)")
    p.add_argument("--reject", action="store_true", help="draw with the sampler's rejection on (as the data does)")
    p.add_argument("--out", default=None, help="also write the summary here (JSON)")
    args = p.parse_args(argv)
    if args.num < 1:
        p.error("--num must be at least 1")
    result = evaluate(args.num, args.seed, args.mode, args.mano_dir, args.reject)
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
