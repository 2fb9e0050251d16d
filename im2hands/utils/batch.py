"""Conventions of collated batches shared by the data transforms and the models (pure torch).

A batch is a dict of tensors with a leading batch axis ``B`` and the hand axis ``2``
(``LEFT = 0``, ``RIGHT = 1``); see :mod:`im2hands.models.base`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from im2hands.typing import Bool, Tensor

__all__ = ["hand_valid", "presence_from_batch", "select_item"]


def hand_valid(batch: dict[str, Any], like: Tensor) -> Bool[Tensor, "B 2"]:
    """``batch["hand_valid"]`` as a bool ``(B, 2)`` on ``like``'s device; all True when absent
    (``like``: any tensor whose first two axes are ``(B, 2)``)."""
    valid = batch.get("hand_valid")
    if valid is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return valid.to(device=like.device, dtype=torch.bool)


def presence_from_batch(batch: dict[str, Any]) -> Bool[Tensor, "B 2"]:
    """``(B, 2)`` bool: the hand is valid and seen in the image (a visible-mask pixel, or
    without masks a 2D keypoint inside the image)."""
    kp2 = batch["keypoints_2d"]
    B = kp2.shape[0]
    valid = batch.get("hand_valid")
    valid = torch.ones(B, 2, dtype=torch.bool, device=kp2.device) if valid is None else valid.bool()
    if "masks_visible" in batch:
        seen = batch["masks_visible"].flatten(2).any(-1)
    else:
        H, W = batch["image"].shape[-2:]
        inside = (kp2[..., 0] >= 0) & (kp2[..., 0] < W) & (kp2[..., 1] >= 0) & (kp2[..., 1] < H)
        seen = inside.any(-1)
    return valid & seen


def select_item(tree: Any, index: int, batch_size: int) -> Any:
    """Item ``index`` of a batched structure, keeping its batch axis (``t[index:index + 1]``):
    tensors whose first axis is ``batch_size`` are sliced; dataclasses, dicts, lists and tuples
    are walked; anything else (sizes, flags, None) is kept as it is. Turns the encoder output
    of B stacked items into B single-item outputs; relies on the batch-first convention of
    model outputs (module docstring): an unbatched tensor whose first axis happens to equal
    ``batch_size`` would be sliced too."""
    if isinstance(tree, Tensor):
        return tree[index : index + 1] if tree.dim() > 0 and tree.shape[0] == batch_size else tree
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(tree, **{f.name: select_item(getattr(tree, f.name), index, batch_size)
                                            for f in dataclasses.fields(tree) if f.init})  # fmt: skip
    if isinstance(tree, dict):
        return {k: select_item(v, index, batch_size) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(select_item(v, index, batch_size) for v in tree)
    return tree
