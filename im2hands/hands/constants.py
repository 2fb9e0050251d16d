"""Hand constants shared by every module: the hand axis, joint counts, MANO vertex ids.

The library's own keypoint order is ``standard`` (see :mod:`im2hands.hands.joint_orders`):
wrist, then thumb, index, middle, ring, pinky, each from base to tip.
"""

LEFT: int = 0
"""Index of the left hand on every hand axis ``(..., 2, ...)``."""
RIGHT: int = 1
"""Index of the right hand on every hand axis ``(..., 2, ...)``."""
SIDES: tuple[str, str] = ("left", "right")
"""Hand names in hand-axis order: ``SIDES[LEFT] == "left"``."""

NUM_KEYPOINTS: int = 21
"""Keypoints per hand: 16 hand-model joints plus 5 fingertips."""
NUM_JOINTS: int = 16
"""Hand-model (MANO) joints per hand: wrist plus 3 per finger; also the 16 occupancy parts."""
NUM_BETAS: int = 10
"""Shape coefficients per hand."""
NUM_POSE: int = 48
"""Axis-angle pose values per hand: 3 global rotation, then 15 joints x 3."""

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
"""Finger names in ``standard`` order."""

MANO_FINGERTIP_VERTEX_IDS: tuple[int, ...] = (745, 317, 444, 556, 673)
"""Fingertip vertex ids of the licensed 778-vertex MANO mesh (thumb, index, middle, ring, pinky)."""

MANO_NUM_VERTICES: int = 778
"""Vertex count of the licensed MANO mesh (before the wrist is closed)."""

MANO_KINTREE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
"""Parent of each of the 16 MANO joints (MANO joint order: wrist, index x3, middle x3,
pinky x3, ring x3, thumb x3)."""
