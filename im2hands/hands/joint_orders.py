"""Every 21-keypoint order used in the field, and the permutations between them.

Orders (per hand, 21 keypoints):

``standard`` (the library's own order, and the order of keypoint JSON files)
    0 wrist; 1-4 thumb; 5-8 index; 9-12 middle; 13-16 ring; 17-20 pinky; each finger from its
    base joint to its tip (thumb: CMC, MCP, IP, tip; others: MCP, PIP, DIP, tip).
``interhand`` (InterHand2.6M native, one hand)
    0-3 thumb tip to base; 4-7 index tip to base; 8-11 middle; 12-15 ring; 16-19 pinky; 20 wrist.
``mano`` (MANO / manopth / HALO: the 16 model joints, then the 5 tips)
    0 wrist; 1-3 index; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb; 16 thumb tip,
    17 index tip, 18 middle tip, 19 ring tip, 20 pinky tip.
``biomech`` (HALO's converter)
    0 wrist; 1-5 base joints (thumb CMC, index/middle/ring/pinky MCP); 6-10 the next joints;
    11-15 the next; 16-20 tips; fingers in thumb, index, middle, ring, pinky order.

A permutation ``P = permutation(src, dst)`` satisfies ``x_dst = x_src[..., P, :]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ORDERS: tuple[str, ...] = ("standard", "interhand", "mano", "biomech")

# For each order, the standard index held at each of its positions: x_order = x_standard[TO[order]].
_FROM_STANDARD: dict[str, tuple[int, ...]] = {
    "standard": tuple(range(21)),
    "interhand": (4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17, 0),
    "mano": (0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20),
    "biomech": (0, 1, 5, 9, 13, 17, 2, 6, 10, 14, 18, 3, 7, 11, 15, 19, 4, 8, 12, 16, 20),
}

STANDARD_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}_{j}" for finger in ("thumb", "index", "middle", "ring", "pinky") for j in (1, 2, 3, 4)
)
"""Keypoint names in ``standard`` order (``<finger>_4`` is the tip)."""

STANDARD_PARENTS: tuple[int, ...] = (-1,) + tuple(
    0 if j == 0 else 1 + 4 * f + j - 1 for f in range(5) for j in range(4)
)
"""Parent of each ``standard`` keypoint (-1 for the wrist); the skeleton's 20 bones."""

MANO_JOINT_TO_STANDARD: tuple[int, ...] = _FROM_STANDARD["mano"][:16]
"""Standard index of each of the 16 hand-model joints (MANO joint order)."""

FINGERTIPS_STANDARD: tuple[int, ...] = (4, 8, 12, 16, 20)
"""Standard indices of the five tips (thumb, index, middle, ring, pinky)."""


def _check(order: str) -> None:
    if order not in _FROM_STANDARD:
        raise ValueError(f"unknown keypoint order {order!r}; expected one of {', '.join(ORDERS)}")


def permutation(src: str, dst: str) -> tuple[int, ...]:
    """Indices ``P`` with ``x_dst = x_src[..., P, :]`` for 21-keypoint arrays.

    Example:
        >>> permutation("mano", "standard")[:5]
        (0, 13, 14, 15, 16)
    """
    _check(src)
    _check(dst)
    src_pos = {s: i for i, s in enumerate(_FROM_STANDARD[src])}  # standard index -> position in src
    return tuple(src_pos[s] for s in _FROM_STANDARD[dst])


def convert(keypoints, src: str, dst: str):
    """Reorder keypoints from order ``src`` to ``dst``.

    Args:
        keypoints: array or tensor of shape ``(..., 21, D)``.
        src, dst: names from :data:`ORDERS`.

    Returns:
        The same kind of array, shape ``(..., 21, D)``, in order ``dst``.
    """
    if keypoints.shape[-2] != 21:
        raise ValueError(f"expected keypoints of shape (..., 21, D), got {tuple(keypoints.shape)}")
    perm = list(permutation(src, dst))
    if isinstance(keypoints, torch.Tensor):
        return keypoints[..., perm, :]
    return np.asarray(keypoints)[..., perm, :]


def compose(perms: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Compose permutations applied left to right: ``x[p0][p1] == x[compose([p0, p1])]``."""
    out = list(range(len(perms[0])))
    for p in perms:
        out = [out[i] for i in p]
    return tuple(out)
