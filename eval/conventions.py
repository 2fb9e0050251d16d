"""Measure where annotated and MANO-regressed keypoints sit along each chain.

Each chain ``wrist -> j1 -> j2 -> j3 -> tip`` (a finger's MCP, PIP, DIP; the thumb's CMC, MCP,
IP) is described by its joints' fractions of the chain's polyline length, a measure free of
hand size. Annotated hands: the InterHand2.6M ground truth of ``eval/real_photos/gt`` (manual
``joint_3d``); MANO hands: the 22 calibration hands (MANO's joint regressor plus fingertip
vertices, see ``eval/real_hands.py``); optionally a hand-model folder at rest. Prints, per chain,
the mean fractions of both and the shifts ``(c, a, d)`` of :mod:`im2hands.hands.conventions`
that map the MANO means onto the annotated ones, and the annotated means predicted by
``to_convention`` from the MANO hands (a check of the table in use).

    python eval/conventions.py [--calib DIR] [--gt DIR] [--mano-dir DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_hands import DEFAULT_CALIBRATION, load_calibration  # noqa: E402

from im2hands.hands.conventions import _CHAINS, to_convention  # noqa: E402


def fractions(kp: np.ndarray) -> dict[str, np.ndarray]:
    """Per chain, the cumulative length fractions ``(3,)`` of j1, j2, j3 (standard order)."""
    out = {}
    for name, (j1, j2, j3) in _CHAINS.items():
        pts = kp[[0, j1, j2, j3, j3 + 1]]
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        out[name] = np.cumsum(seg)[:3] / seg.sum()
    return out


def annotated_hands(gt_dir: Path) -> list[np.ndarray]:
    hands = []
    for f in sorted(glob.glob(str(gt_dir / "*.json"))):
        d = json.loads(Path(f).read_text())
        for side in ("left", "right"):
            if d.get(side) and "joints" in d[side]:
                kp = np.asarray(d[side]["joints"], dtype=np.float64)
                if np.isfinite(kp).all():
                    hands.append(kp)
    return hands


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calib", type=Path, default=DEFAULT_CALIBRATION)
    p.add_argument("--gt", type=Path, default=Path(__file__).resolve().parent / "real_photos" / "gt")
    args = p.parse_args(argv)
    ann = annotated_hands(args.gt)
    mano = [h.keypoints for h in load_calibration(args.calib)]
    moved = [to_convention(k, "mano", "annotation") for k in mano]
    print(f"{len(ann)} annotated hands, {len(mano)} MANO-regressed hands")
    print("| chain | annotated j1 j2 j3 (std) | MANO j1 j2 j3 (std) | c a d | to_convention(MANO) |")
    print("|---|---|---|---|---|")
    for name in _CHAINS:
        A = np.array([fractions(k)[name] for k in ann])
        M = np.array([fractions(k)[name] for k in mano])
        T = np.array([fractions(k)[name] for k in moved]).mean(0)
        a_m, m_m = A.mean(0), M.mean(0)
        c = (m_m[0] - a_m[0]) / m_m[0]
        a = (a_m[1] - m_m[1]) / (m_m[2] - m_m[1])
        d = (a_m[2] - m_m[2]) / (1 - m_m[2])
        print(f"| {name} | {' '.join(f'{v:.3f}' for v in a_m)} ({' '.join(f'{v:.3f}' for v in A.std(0))}) | "
              f"{' '.join(f'{v:.3f}' for v in m_m)} ({' '.join(f'{v:.3f}' for v in M.std(0))}) | "
              f"{c:.2f} {a:.2f} {d:.2f} | {' '.join(f'{v:.3f}' for v in T)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
