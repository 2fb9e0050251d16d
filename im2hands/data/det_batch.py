"""Whole-image batches of the hand detector (``hand_det``).

:class:`HandDetBatch` is the trainer's batch transform for ``hand_det``
(:mod:`im2hands.data.transforms`). From a collated batch of whole images

- ``image`` (B, 3, H, W) in [0, 1], ``K`` (B, 3, 3), ``keypoints_2d`` (B, 2, 21, 2) pixels
  (``standard`` order), ``hand_valid`` (B, 2) bool, optionally ``masks_visible`` /
  ``masks_amodal`` (B, 2, H, W) (for the hand erasing and for presence),

it makes the detector's inputs and targets. In training the images are first augmented as a
whole (zoom, rotation, shift, colour, blur, noise, one hand painted over;
:class:`~im2hands.data.augment.Augment`) and mirrored left-right with ``flip_prob`` (the
hands' sides swap with the mirror). Each image is then letterboxed to the detector's square
input as the detector sees photos (:func:`~im2hands.geometry.crops.square_windows` ``whole``).
The output batch (other keys dropped):

- ``det_images`` (B, 3, S, S) RGB in [0, 1];
- ``det_palm`` (B, 2, 7, 2) each hand's palm points (:data:`PALM_JOINTS`) in input pixels;
- ``det_box`` (B, 2, 4) each hand's square palm box as (centre x, centre y, side, side),
  input pixels (:func:`palm_boxes`);
- ``det_valid`` (B, 2) bool: the hand is there to be found (valid, seen, its box centre inside
  the input, its box at least ``min_box`` pixels); slot 0 is the left hand, slot 1 the right.

Randomness comes from torch's global generator (the trainer seeds validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from im2hands.data.augment import Augment, presence_from_batch
from im2hands.geometry.crops import crop_images, image_to_crop, square_windows
from im2hands.geometry.frames import MIDDLE_MCP, WRIST
from im2hands.typing import Float, Tensor

__all__ = ["HandDetBatch", "PALM_JOINTS", "palm_boxes"]

PALM_JOINTS: tuple[int, ...] = (0, 5, 9, 13, 17, 1, 2)
"""The palm detector's 7 points as ``standard`` keypoints: wrist, index, middle, ring and
little finger bases (MCP), thumb CMC and thumb MCP (matched on our renders: each of MediaPipe's
detected points lies nearest to this joint)."""
BOX_PER_PALM = 0.87
"""Box side / the wrist -> middle-MCP length in the image: MediaPipe's boxes on our renders
(median over 66 detections of 200 test images)."""
FORESHORTENED = 0.55
"""Floor of the wrist -> middle-MCP length as a fraction of the 21 keypoints' extent, for hands
pointing at the camera (about the lower quartile of that ratio on our renders)."""


def palm_boxes(uv: Float[Tensor, "... 21 2"]) -> Float[Tensor, "... 4"]:
    """Square palm boxes (centre x, centre y, side, side) of hands with 2D keypoints ``uv``:
    centred on the mean of the :data:`PALM_JOINTS`, side ``BOX_PER_PALM`` x the wrist ->
    middle-MCP length (at least ``FORESHORTENED`` x the keypoints' longer extent)."""
    centre = uv[..., PALM_JOINTS, :].mean(-2)
    palm = (uv[..., MIDDLE_MCP, :] - uv[..., WRIST, :]).norm(dim=-1)
    extent = (uv.amax(-2) - uv.amin(-2)).amax(-1)
    side = BOX_PER_PALM * torch.maximum(palm, FORESHORTENED * extent)
    return torch.cat([centre, side[..., None], side[..., None]], -1)


def flip_batch(batch: dict[str, Any], flip: Tensor) -> dict[str, Any]:
    """Mirror the images with ``flip`` (B,) left-right: pixels, 2D keypoints (``u -> W - u``),
    and the hand slots (a mirrored left hand is a right hand). Keys used by the detector only."""
    out = dict(batch)
    W = batch["image"].shape[-1]
    f4 = flip[:, None, None, None]
    out["image"] = torch.where(f4, batch["image"].flip(-1), batch["image"])
    uv = batch["keypoints_2d"].clone()
    uv[..., 0] = W - uv[..., 0]
    uv = uv.flip(1)  # slots swap
    out["keypoints_2d"] = torch.where(f4, uv, batch["keypoints_2d"])
    for key in ("presence", "hand_valid"):
        if key in batch:
            out[key] = torch.where(flip[:, None], batch[key].flip(1), batch[key])
    return out


@dataclass
class HandDetBatch:
    """The ``hand_det`` batch transform (module docstring).

    Args:
        size: the detector's input side, pixels (192 for MediaPipe's palm detector).
        augment: the whole-image augmentation (training); None: none.
        flip_prob: probability of mirroring an image (training).
        min_box: smallest palm box (input pixels) a hand must have to be a target.
    """

    size: int = 192
    augment: Augment | None = None
    flip_prob: float = 0.5
    min_box: float = 4.0

    def __call__(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]:
        if training and self.augment is not None:
            batch = self.augment(batch)
        else:
            batch = {**batch, "presence": presence_from_batch(batch)}
        image = batch["image"]
        B, _, H, W = image.shape
        if training and self.flip_prob > 0:
            batch = flip_batch(batch, torch.rand(B, device=image.device) < self.flip_prob)
        window = square_windows(H, W, (), whole=True)
        roi = window[torch.zeros(B, dtype=torch.long)]
        roi.center, roi.size, roi.angle = (t.to(image.device, image.dtype) for t in (roi.center, roi.size, roi.angle))
        images = crop_images(batch["image"], roi, self.size)
        uv = image_to_crop(batch["keypoints_2d"].to(image.dtype).flatten(1, 2), roi, self.size).view(B, 2, 21, 2)
        box = palm_boxes(uv)
        inside = ((box[..., :2] >= 0) & (box[..., :2] < self.size)).all(-1)
        valid = batch["presence"].bool() & inside & (box[..., 2] >= self.min_box)
        return {"det_images": images.clamp(0, 1), "det_palm": uv[:, :, PALM_JOINTS], "det_box": box, "det_valid": valid}
