"""Mirroring hand poses between the left and the right hand (reflection x -> -x).

Reflecting a rotation by ``S = diag(-1, 1, 1)`` gives ``S R S``; for an axis-angle vector
``(ax, ay, az)`` that is ``(ax, -ay, -az)``. Applied to all 16 joint rotations of a MANO pose,
it expresses "the same pose" on the other hand: with the left model the x-mirror of the right
one (as MANO's two files are), ``left(mirror_pose(p)).vertices`` is the x-mirror of
``right(p).vertices`` (given x-mirrored translations and equal shape coefficients).
"""

from __future__ import annotations

import numpy as np
import torch

from im2hands.hands.constants import NUM_POSE
from im2hands.typing import Float, Tensor

_SIGNS = (1.0, -1.0, -1.0) * (NUM_POSE // 3)


def mirror_pose(pose: Float[Tensor, "... 48"] | np.ndarray) -> Float[Tensor, "... 48"] | np.ndarray:
    """Mirror axis-angle hand poses by the reflection x -> -x.

    Args:
        pose: ``(..., 48)`` axis-angle pose (radians): global rotation, then 15 joints x 3,
            as a tensor (any device/dtype, differentiable) or a numpy array.

    Returns:
        The mirrored pose, same type, shape, device and dtype.

    Example:
        >>> mirror_pose(np.arange(48.0))[:6].tolist()
        [0.0, -1.0, -2.0, 3.0, -4.0, -5.0]
    """
    if pose.shape[-1] != NUM_POSE:
        raise ValueError(f"expected a pose of shape (..., {NUM_POSE}), got {tuple(pose.shape)}")
    if isinstance(pose, torch.Tensor):
        return pose * pose.new_tensor(_SIGNS)
    pose = np.asarray(pose)
    return pose * np.asarray(_SIGNS, dtype=pose.dtype if pose.dtype.kind == "f" else np.float64)
