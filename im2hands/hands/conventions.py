"""Keypoint conventions: where the PIP and DIP keypoints sit along each finger.

Two conventions meet in this library:

``mano``
    MANO's joint regressor (and the open hand model, which reproduces it): what the shipped
    networks are trained on. The keypoints of meshes regressed this way, and of
    ``im2hands data synth`` datasets, follow it.
``annotation``
    Manually annotated datasets (InterHand2.6M's ``joint_3d``, FreiHAND's keypoints): the
    annotators put the PIP and DIP joints more distally than MANO's regressor, about 10 mm at
    the index PIP (issue 14; the calibration README measures 29 mm MCP -> PIP for MANO
    against about 41 mm in annotated InterHand2.6M samples).

The mapping used here moves each finger's PIP distally along PIP -> DIP by
:data:`PIP_SHIFT` of that bone, and its DIP along DIP -> tip by :data:`DIP_SHIFT`; the thumb,
the MCPs, the wrist and the tips do not move. :data:`PIP_SHIFT` = 0.5 gives 10.4 mm at the
mean real index finger (PIP -> DIP 20.7 mm), the measured offset; :data:`DIP_SHIFT` is an
assumption (about 5 mm at the index), not a measurement. The inverse is exact.
"""

from __future__ import annotations

import numpy as np

CONVENTIONS: tuple[str, ...] = ("mano", "annotation")
PIP_SHIFT: float = 0.5
"""Fraction of PIP -> DIP by which an annotated PIP lies distal of MANO's."""
DIP_SHIFT: float = 0.2
"""Fraction of DIP -> tip by which an annotated DIP lies distal of MANO's (assumed)."""
_FINGER_BASES: tuple[int, ...] = (5, 9, 13, 17)  # standard MCP of index, middle, ring, pinky

V1_HAND_MODEL: str = "im2hands-open-hand-v1"
"""The hand model of checkpoints that do not record theirs (every one written before the
trainer recorded it was trained on version-1 data)."""
HAND_MODEL_CONVENTIONS: dict[str, str] = {
    V1_HAND_MODEL: "annotation",
    "im2hands-open-hand-v2": "mano",
    "mano": "mano",
}
"""The keypoint convention of each hand model's regressed joints. Version 1's designed joint
centres are taken as ``annotation``: its middle MCP -> PIP is 0.54 of wrist -> middle MCP, the
annotated InterHand2.6M hands of ``eval/real_photos`` give 0.44-0.54, MANO's regressor 0.31."""


def convention_of(hand_model: str | None) -> str:
    """The keypoint convention of a hand model's regressed joints (``"mano"`` or ``"annotation"``).

    Args:
        hand_model: a hand-model file's ``model_name``; None: :data:`V1_HAND_MODEL`. Unknown
            names (other MANO-format files) are taken as ``"mano"``.
    """
    return HAND_MODEL_CONVENTIONS.get(V1_HAND_MODEL if hand_model is None else str(hand_model), "mano")


def to_convention(keypoints: np.ndarray, src: str, dst: str, *, pip_shift: float = PIP_SHIFT,
                  dip_shift: float = DIP_SHIFT) -> np.ndarray:
    """Move the four fingers' PIP and DIP keypoints from convention ``src`` to ``dst``.

    Args:
        keypoints: ``(..., 21, 3)`` keypoints, ``standard`` order, any frame and unit.
        src, dst: ``"mano"`` or ``"annotation"``.
        pip_shift, dip_shift: the fractions of the next bone (see the module docstring).

    Returns:
        A new ``(..., 21, 3)`` array; a copy of the input when ``src == dst``.

    Raises:
        ValueError: unknown convention, or shifts outside [0, 1).
    """
    for name in (src, dst):
        if name not in CONVENTIONS:
            raise ValueError(f"unknown keypoint convention {name!r}; expected one of {', '.join(CONVENTIONS)}")
    if not (0.0 <= pip_shift < 1.0 and 0.0 <= dip_shift < 1.0):
        raise ValueError(f"pip_shift and dip_shift must be in [0, 1), got {pip_shift}, {dip_shift}")
    out = np.array(keypoints, dtype=np.float64, copy=True)
    if src == dst:
        return out
    for mcp in _FINGER_BASES:
        pip, dip, tip = mcp + 1, mcp + 2, mcp + 3
        if dst == "annotation":
            out[..., pip, :] = (1 - pip_shift) * out[..., pip, :] + pip_shift * out[..., dip, :]
            out[..., dip, :] = (1 - dip_shift) * out[..., dip, :] + dip_shift * out[..., tip, :]
        else:
            out[..., dip, :] = (out[..., dip, :] - dip_shift * out[..., tip, :]) / (1 - dip_shift)
            out[..., pip, :] = (out[..., pip, :] - pip_shift * out[..., dip, :]) / (1 - pip_shift)
    return out
