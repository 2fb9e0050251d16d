"""Batch transforms: what the trainer does to a collated batch before the model's ``forward``.

Models never augment or perturb their inputs themselves (they do not import :mod:`im2hands.data`):
the engine builds a transform from the config (:func:`im2hands.engine.builders.build_batch_transform`)
and the trainer calls it on every batch, ``training=True`` for training steps and
``training=False`` for validation, inside the same autocast region as ``forward``. The
transformed batch is what ``forward``, ``compute_loss`` and ``metrics`` see.

- :class:`AugmentBatch` (``kpts_est``): :class:`~im2hands.data.augment.Augment` in training,
  nothing in validation.
- :class:`~im2hands.data.crop_batch.HandCropBatch` (``crop_net``): per-hand crops of the images
  with their targets (jittered and recoloured in training), negatives included.
- :class:`NoisyKeypoints` (``kpts_ref``): adds ``keypoints_noisy`` (B, 2, 21, 3), the ground truth
  perturbed by :class:`~im2hands.data.keypoint_noise.KeypointNoise`: fresh noise (torch's global
  RNG) in training, and in validation noise seeded per item with ``val_seed + batch["index"]``
  (``val_seed + position in the batch`` without ``index``), so validation numbers are
  comparable across runs. A batch that already holds ``keypoints_noisy`` is left as it is.
  A batch with a keypoint estimator's predictions (``keypoints_pred`` (B, 2, 21, 3) and
  ``keypoints_pred_valid`` (B, 2), from ``data.predicted_keypoints``) takes them for every hand
  they are valid for, and the noisy ground truth only for the others (the original trained
  its stage 3 on IntagHand's predictions on the training images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from im2hands.data.augment import Augment
from im2hands.data.keypoint_noise import KeypointNoise

__all__ = ["BatchTransform", "AugmentBatch", "NoisyKeypoints"]


class BatchTransform(Protocol):
    def __call__(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]: ...


@dataclass
class AugmentBatch:
    """Training augmentation of image batches (identity when ``training`` is False)."""

    augment: Augment

    def __call__(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]:
        return self.augment(batch) if training else batch


@dataclass
class NoisyKeypoints:
    """Adds ``keypoints_noisy`` to a batch (see the module docstring)."""

    noise: KeypointNoise
    val_seed: int = 0

    def __call__(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]:
        if "keypoints_noisy" in batch:
            return batch
        gt = batch["keypoints"]
        if training:
            noisy = self.noise(gt)
        else:
            index = batch.get("index")
            index = torch.arange(gt.shape[0]) if index is None else torch.as_tensor(index).reshape(-1)
            noisy = self.noise.seeded(gt, (int(self.val_seed) + index.cpu().long()).tolist())
        if "keypoints_pred" in batch:
            use = batch["keypoints_pred_valid"].to(torch.bool)[..., None, None]
            noisy = torch.where(use.to(noisy.device), batch["keypoints_pred"].to(noisy), noisy)
        return {**batch, "keypoints_noisy": noisy}
