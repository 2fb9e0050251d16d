"""Per-hand crops of whole-image batches: the training batches of the crop network (``crop_net``).

:class:`HandCropBatch` is the trainer's batch transform for ``crop_net``
(:mod:`im2hands.data.transforms`). From a collated batch of whole images

- ``image`` (B, 3, H, W) in [0, 1], ``keypoints`` (B, 2, 21, 3) camera frame, metres,
  ``keypoints_2d`` (B, 2, 21, 2) pixels, ``hand_valid`` (B, 2) bool, and optionally
  ``masks_amodal`` (B, 2, H, W) (needed for negatives)

it cuts one upright square crop per valid hand, framed as the crop pipeline's second pass
frames its crops (:class:`~im2hands.extraction.hand_crops.HandCropPipeline`: the wrist ->
middle-MCP direction up, the keypoints' box moved 10 % up, side ``crop_scale`` x its longer
side; :func:`~im2hands.geometry.crops.roi_from_points`). In training each crop is jittered
(rotation, side, centre) and its appearance augmented (:meth:`~im2hands.data.augment.Augment.appearance`);
validation crops are exact. Negatives (``negative_ratio`` per hand crop, items with masks only)
are random square windows of an image whose hands are painted over with its mean background
colour: crops with no hand. The output batch (``N`` crops; other keys dropped):

- ``crops`` (N, 3, S, S) RGB in [0, 1];
- ``crop_uv`` (N, 21, 2) keypoints in crop pixels;
- ``crop_xyz`` (N, 21, 3) wrist-relative keypoints in the crop's orientation (x right, y down,
  z forward: the camera orientation turned by the crop's angle), metres;
- ``crop_right`` (N,) 1.0 for a right hand, 0.0 for a left one;
- ``crop_hand`` (N,) 1.0 for a hand crop, 0.0 for a negative (whose keypoint targets are zeros);
- ``crop_px`` (N,) image pixels per crop pixel (to report errors in image pixels).

Randomness comes from torch's global generator (the trainer seeds validation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from im2hands.data.augment import Augment
from im2hands.geometry.crops import KEYPOINT_CROP_SHIFT, Roi, crop_images, image_to_crop, roi_angle, roi_from_points, rotate_xy
from im2hands.geometry.frames import MIDDLE_MCP, WRIST
from im2hands.hands.constants import RIGHT
from im2hands.typing import Float, Tensor

__all__ = ["HandCropBatch"]


def _uniform(n: int, lo: float, hi: float, like: Tensor) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, dtype=like.dtype, device=like.device)


@dataclass
class HandCropBatch:
    """The ``crop_net`` batch transform (module docstring).

    Args:
        size: crop side, pixels (the network's input, 224 for MediaPipe's).
        crop_scale: crop side / the keypoints' longer extent.
        scale_range: ``(lo, hi)`` side factors, log-uniform (training).
        rotation_deg: largest rotation away from upright, degrees (training).
        shift: largest centre shift per axis, fraction of the crop side (training).
        appearance: colour, blur and noise of the crops (training); None: none.
        negative_ratio: negative crops per hand crop (rounded down, at least one when > 0 and
            the batch has masks).
    """

    size: int = 224
    crop_scale: float = 2.0
    scale_range: Sequence[float] = (0.8, 1.3)
    rotation_deg: float = 25.0
    shift: float = 0.1
    appearance: Augment | None = None
    negative_ratio: float = 0.3

    def rois(self, uv: Float[Tensor, "N 21 2"], *, training: bool) -> Roi:
        """The crops of hands with 2D keypoints ``uv`` (image pixels), jittered in training."""
        angle = roi_angle(uv[:, WRIST], uv[:, MIDDLE_MCP])
        n = len(uv)
        if training and self.rotation_deg > 0:
            angle = angle + _uniform(n, -1.0, 1.0, uv) * math.radians(self.rotation_deg)
        roi = roi_from_points(uv, angle, scale=self.crop_scale, shift=KEYPOINT_CROP_SHIFT)
        if training:
            lo, hi = (math.log(float(v)) for v in self.scale_range)
            roi.size = roi.size * torch.exp(_uniform(n, lo, hi, uv))
            roi.center = roi.center + (torch.rand(n, 2, dtype=uv.dtype, device=uv.device) * 2 - 1) * (self.shift * roi.size[:, None])
        return roi

    def negatives(self, image: Tensor, masks: Tensor, count: int) -> tuple[Tensor, Roi]:
        """``count`` crops of random images of the batch with both hands painted over: the
        images (count, 3, H, W) and their random square windows (side 0.3-0.7 of the shorter
        image side, any angle)."""
        B, _, H, W = image.shape
        pick = torch.randint(0, B, (count,), device=image.device)
        hands = masks[pick].any(1, keepdim=True).float()  # (count, 1, H, W)
        hands = F.max_pool2d(hands, 7, stride=1, padding=3) > 0  # 3 px margin
        src = image[pick]
        background = (~hands).float()
        fill = (src * background).sum((2, 3)) / background.sum((2, 3)).clamp_min(1.0)  # (count, 3)
        src = torch.where(hands, fill[:, :, None, None], src)
        side = _uniform(count, 0.3, 0.7, image) * min(H, W)
        center = torch.stack([_uniform(count, 0, 1, image) * W, _uniform(count, 0, 1, image) * H], -1)
        return src, Roi(center, side, _uniform(count, -math.pi, math.pi, image))

    def __call__(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]:
        image = batch["image"]
        valid = batch["hand_valid"].bool()
        b_idx, s_idx = torch.nonzero(valid, as_tuple=True)
        uv = batch["keypoints_2d"][b_idx, s_idx].to(image.dtype)  # (N, 21, 2)
        kp = batch["keypoints"][b_idx, s_idx].to(image.dtype)  # (N, 21, 3)
        roi = self.rois(uv, training=training)
        crops = crop_images(image[b_idx], roi, self.size) if len(roi) else image.new_zeros(0, 3, self.size, self.size)
        crop_uv = image_to_crop(uv, roi, self.size)
        crop_xyz = rotate_xy(kp - kp[:, WRIST : WRIST + 1], -roi.angle)  # camera orientation -> the crop's
        right = (s_idx == RIGHT).to(image.dtype)
        hand = torch.ones_like(right)
        px = roi.size.to(image.dtype) / self.size
        if self.negative_ratio > 0 and "masks_amodal" in batch and len(roi):
            n_neg = max(1, int(self.negative_ratio * len(roi)))
            src, neg_roi = self.negatives(image, batch["masks_amodal"], n_neg)
            crops = torch.cat([crops, crop_images(src, neg_roi, self.size)])
            crop_uv = torch.cat([crop_uv, crop_uv.new_zeros(n_neg, 21, 2)])
            crop_xyz = torch.cat([crop_xyz, crop_xyz.new_zeros(n_neg, 21, 3)])
            right = torch.cat([right, right.new_zeros(n_neg)])
            hand = torch.cat([hand, hand.new_zeros(n_neg)])
            px = torch.cat([px, neg_roi.size.to(px.dtype) / self.size])
        if training and self.appearance is not None and len(crops):
            crops = self.appearance.appearance(crops)
        return {"crops": crops, "crop_uv": crop_uv, "crop_xyz": crop_xyz, "crop_right": right, "crop_hand": hand,
                "crop_px": px}
