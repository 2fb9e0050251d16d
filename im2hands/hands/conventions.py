"""Keypoint conventions: where the joint keypoints sit along each finger.

Two conventions meet in this library:

``mano``
    MANO's joint regressor (and the open hand model version 2, which reproduces it): the
    keypoints of meshes regressed this way, of ``im2hands data synth`` datasets and of the
    networks trained on them.
``annotation``
    Manually annotated datasets (InterHand2.6M's ``joint_3d``, FreiHAND's keypoints) and the
    networks trained on them (MediaPipe's landmarks); the open model version 1's designed joints
    are close to it.

Measured (``python eval/conventions.py``): each chain ``wrist -> j1 -> j2 -> j3 -> tip`` (j1-j3 =
MCP, PIP, DIP of a finger; CMC, MCP, IP of the thumb) is described by its joints' fractions of
the chain's length; the 6 annotated InterHand2.6M hands of ``eval/real_photos`` against the 22
real MANO-regressed hands of the calibration set. The annotated finger MCPs lie about 0.12 of
``wrist -> MCP`` nearer the wrist, the PIPs in the same place (-0.11 to +0.04 of ``PIP -> DIP``),
the DIPs 0.05-0.15 of ``DIP -> tip`` nearer the tip; the thumb's CMC 0.06 nearer the wrist, its
MCP 0.10 and IP 0.19 nearer the tip. (The often-quoted "annotated PIPs are 10 mm more distal"
comes from ``MCP -> PIP`` lengths, which mostly measure the MCP's move.)

:data:`SHIFTS` holds, per chain, ``(c, a, d)``: from ``mano`` to ``annotation`` j1 moves by
``-c (j1 - wrist)``, j2 by ``a (j3 - j2)``, j3 by ``d (tip - j3)``; wrist and tips stay. The
inverse is exact (j3 first, then j2, then j1).
"""

from __future__ import annotations

import numpy as np

CONVENTIONS: tuple[str, ...] = ("mano", "annotation")
SHIFTS: dict[str, tuple[float, float, float]] = {
    "thumb": (0.06, 0.10, 0.19),
    "index": (0.12, 0.0, 0.13),
    "middle": (0.12, 0.0, 0.13),
    "ring": (0.12, 0.0, 0.13),
    "pinky": (0.12, 0.0, 0.13),
}
"""Per chain ``(c, a, d)`` (module docstring); the four fingers share the mean of their
measured values (index/middle/ring/pinky c 0.09/0.15/0.12/0.11, a 0.03/-0.11/0.02/-0.04, d
0.13/0.15/0.15/0.05: their spread is within the precision of 6 annotated hands)."""
_CHAINS: dict[str, tuple[int, int, int]] = {  # standard order: j1, j2, j3 (the tip is j3 + 1)
    "thumb": (1, 2, 3), "index": (5, 6, 7), "middle": (9, 10, 11), "ring": (13, 14, 15), "pinky": (17, 18, 19),
}

V1_HAND_MODEL: str = "im2hands-open-hand-v1"
"""The hand model of checkpoints that do not record theirs (every one written before the
trainer recorded it was trained on version-1 data)."""
HAND_MODEL_CONVENTIONS: dict[str, str] = {
    V1_HAND_MODEL: "annotation",
    "im2hands-open-hand-v2": "mano",
    "mano": "mano",
}
"""The keypoint convention of each hand model's regressed joints. Version 1's designed joint
centres are taken as ``annotation``: its middle MCP lies at 0.46 of the chain wrist -> middle
tip, the annotated hands' at 0.47, MANO-regressed hands' at 0.56 (``eval/conventions.py``)."""


def convention_of(hand_model: str | None) -> str:
    """The keypoint convention of a hand model's regressed joints (``"mano"`` or ``"annotation"``).

    Args:
        hand_model: a hand-model file's ``model_name``; None: :data:`V1_HAND_MODEL`. Unknown
            names (other MANO-format files) are taken as ``"mano"``.
    """
    return HAND_MODEL_CONVENTIONS.get(V1_HAND_MODEL if hand_model is None else str(hand_model), "mano")


def to_convention(keypoints: np.ndarray, src: str, dst: str, *,
                  shifts: dict[str, tuple[float, float, float]] | None = None) -> np.ndarray:
    """Move the joint keypoints of every chain from convention ``src`` to ``dst``.

    Args:
        keypoints: ``(..., 21, 3)`` keypoints, ``standard`` order, any frame and unit.
        src, dst: ``"mano"`` or ``"annotation"``.
        shifts: per chain ``(c, a, d)`` (module docstring); None: :data:`SHIFTS`.

    Returns:
        A new ``(..., 21, 3)`` array; a copy of the input when ``src == dst``.

    Raises:
        ValueError: unknown convention, or a shift outside (-1, 1).
    """
    for name in (src, dst):
        if name not in CONVENTIONS:
            raise ValueError(f"unknown keypoint convention {name!r}; expected one of {', '.join(CONVENTIONS)}")
    shifts = SHIFTS if shifts is None else shifts
    if any(not -1.0 < v < 1.0 for abc in shifts.values() for v in abc):
        raise ValueError(f"every shift must lie in (-1, 1), got {shifts}")
    out = np.array(keypoints, dtype=np.float64, copy=True)
    if src == dst:
        return out
    wrist = out[..., 0, :].copy()
    for chain, (j1, j2, j3) in _CHAINS.items():
        c, a, d = shifts[chain]
        tip = out[..., j3 + 1, :]
        if dst == "annotation":
            out[..., j1, :] = (1 - c) * out[..., j1, :] + c * wrist
            out[..., j2, :] = (1 - a) * out[..., j2, :] + a * out[..., j3, :]
            out[..., j3, :] = (1 - d) * out[..., j3, :] + d * tip
        else:
            out[..., j3, :] = (out[..., j3, :] - d * tip) / (1 - d)
            out[..., j2, :] = (out[..., j2, :] - a * out[..., j3, :]) / (1 - a)
            out[..., j1, :] = (out[..., j1, :] - c * wrist) / (1 - c)
    return out
