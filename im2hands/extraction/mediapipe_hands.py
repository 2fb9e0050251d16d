"""MediaPipe's hand networks behind the per-hand crop pipeline's interfaces.

- :class:`MediaPipePalmDetector` (:class:`~im2hands.extraction.hand_crops.HandDetector`): the
  whole image letterboxed to 192 x 192, palms detected, and each palm turned into a hand
  region as MediaPipe frames it: rotated so the wrist -> middle-finger-base direction of the
  palm keypoints points up, moved half a palm towards the fingers, side 2.6 x the palm box.
- :class:`MediaPipeCropNet` (:class:`~im2hands.extraction.hand_crops.CropNet`): the landmark
  network on 224-pixel upright crops. Its handedness output is the probability of a right hand
  in the (unmirrored) crop: measured on the real photos of eval/real_photos with
  ground-truth-centred crops, 6 of 6 hands on the right side with ``handedness > 0.5``, and
  71 % of 80 hands of our renders (docs/mediapipe.md). Its metric "world" keypoints are in
  the crop's orientation (rotating them back halves their error on our renders).
"""

from __future__ import annotations

import torch
from torch import nn

from im2hands.extraction.hand_crops import CropPrediction, Detections, HandCropPipeline
from im2hands.geometry.crops import Roi, crop_images, crop_to_image, roi_angle, square_windows, suppress_overlaps
from im2hands.models.mediapipe.hand_landmark import CROP_SIZE, HandLandmarkNet
from im2hands.models.mediapipe.palm import INPUT_SIZE, PalmDetector
from im2hands.typing import Float, Tensor

PALM_WRIST, PALM_MIDDLE = 0, 2
"""Palm keypoints that give a hand's direction (wrist centre, middle-finger base)."""


class MediaPipePalmDetector(nn.Module):
    """Hand regions from MediaPipe's palm detector (module docstring).

    The detector sees the whole image letterboxed, and square tiles of each side in ``tiles``
    (fractions of the image's shorter side, overlapping by half), all in one batch: hands that
    are small in the whole image are larger in a tile. Regions found more than once (their
    boxes overlapping more than ``merge_iou``) are merged, keeping the best score.

    Args:
        net: the palm detector (default: loaded from the verified cached file), or a detector
            that also tells sides (:class:`~im2hands.models.hand_det.HandDetModel`: its
            right-hand probabilities come with the regions).
        score_threshold: palms below this score are dropped.
        scale: region side / the palm box's longer side (MediaPipe: 2.6).
        shift: move towards the fingers, in palm-box heights (MediaPipe: 0.5).
        tiles: tile sides as fractions of the shorter image side (``()``: the whole image only).
        merge_iou: regions overlapping more are one.
        merge_on: what overlaps: ``region`` (the hand regions, 2.6 x the palm box: two hands
            close together, interacting or praying, become one) or ``palm`` (the palm boxes).
    """

    def __init__(self, net: nn.Module | None = None, *, score_threshold: float = 0.5, scale: float = 2.6,
                 shift: float = 0.5, tiles: tuple[float, ...] = (), merge_iou: float = 0.4,
                 merge_on: str = "region") -> None:  # fmt: skip
        super().__init__()
        self.net = net if net is not None else PalmDetector()
        self.score_threshold, self.scale, self.shift = float(score_threshold), float(scale), float(shift)
        self.tiles, self.merge_iou = tuple(float(t) for t in tiles), float(merge_iou)
        if merge_on not in ("region", "palm"):
            raise ValueError(f"merge_on must be 'region' or 'palm', got {merge_on!r}")
        self.merge_on = merge_on

    @torch.no_grad()
    def forward(self, image: Float[Tensor, "3 H W"]) -> Detections:
        dev = next(self.net.parameters()).device
        H, W = image.shape[1:]
        windows = square_windows(H, W, self.tiles, whole=True)
        x = crop_images(image.to(dev), windows, INPUT_SIZE)
        rois, scores, sides, palms = [], [], [], []
        for w, det in enumerate(self.net.detect(x, score_threshold=self.score_threshold)):
            n = len(det.scores)
            if n == 0:
                continue
            window = windows[w]
            to_image = lambda p: crop_to_image(p.double().cpu().reshape(1, -1, 2) * INPUT_SIZE, window, INPUT_SIZE)  # noqa: E731
            corners = to_image(det.boxes).reshape(n, 2, 2)  # (N, [min, max], 2) image pixels
            kps = to_image(det.keypoints).reshape(n, -1, 2)
            wh = corners[:, 1] - corners[:, 0]
            angle = roi_angle(kps[:, PALM_WRIST], kps[:, PALM_MIDDLE])
            up = torch.stack([torch.sin(angle), -torch.cos(angle)], -1)  # the region's up in the image
            rois.append(torch.cat([corners.mean(1) + up * (self.shift * wh[:, 1:2]),
                                   (wh.max(-1).values * self.scale)[:, None], angle[:, None]], -1))  # fmt: skip
            scores.append(det.scores.double().cpu())
            palms.append(corners.reshape(n, 4))
            sides.append(None if det.right_prob is None else det.right_prob.double().cpu())
        if not rois:
            return Detections.empty()
        roi, score = torch.cat(rois), torch.cat(scores)
        half = roi[:, 2:3] / 2.0
        boxes = torch.cat(palms) if self.merge_on == "palm" else torch.cat([roi[:, :2] - half, roi[:, :2] + half], -1)
        keep = suppress_overlaps(boxes, score, self.merge_iou)
        right = None if any(s is None for s in sides) else torch.cat(sides)[keep]
        return Detections(Roi(roi[keep, :2], roi[keep, 2], roi[keep, 3]), score[keep], right, detector_side=right is not None)


class MediaPipeCropNet(nn.Module):
    """MediaPipe's landmark network as a crop network (module docstring).

    Args:
        net: the network (default: the original, from the verified cached file); a fine-tuned
            one is a ``crop_net`` model's ``landmarks`` (:mod:`im2hands.models.crop_net`).
        keypoint_convention: where its PIP and DIP keypoints sit (:mod:`im2hands.hands.conventions`):
            ``annotation`` for the original (trained on manually annotated photos); a network
            fine-tuned on our data has that data's (``mano``).
    """

    input_size = CROP_SIZE
    mirrors_left = False

    def __init__(self, net: HandLandmarkNet | None = None, keypoint_convention: str | None = "annotation") -> None:
        super().__init__()
        self.net = net if net is not None else HandLandmarkNet()
        self.keypoint_convention = keypoint_convention

    def forward(self, crops: Float[Tensor, "B 3 224 224"]) -> CropPrediction:
        dev = next(self.net.parameters()).device
        out = self.net(crops.to(dev).float())
        return CropPrediction(keypoints_2d=out.keypoints_2d.cpu(), keypoints_3d=out.world.cpu(),
                              presence=out.presence.cpu(), right_prob=out.handedness.cpu())  # fmt: skip


def mediapipe_pipeline(device: str | torch.device = "cpu", crop_net: MediaPipeCropNet | None = None,
                       keypoint_net: MediaPipeCropNet | None = None, detector: MediaPipePalmDetector | None = None,
                       **kwargs) -> HandCropPipeline:  # fmt: skip
    """A :class:`~im2hands.extraction.hand_crops.HandCropPipeline` of MediaPipe's palm
    detector and ``crop_net`` (default: MediaPipe's landmark network; both from the verified
    cached files) on ``device``; ``keypoint_net`` (e.g. the landmark network fine-tuned here,
    a ``crop_net`` model's) gives the final keypoints and sides; ``detector`` replaces the palm
    detector (e.g. one wrapping a ``hand_det`` model); ``kwargs`` go to the pipeline."""
    detector = (detector if detector is not None else MediaPipePalmDetector()).to(device).eval()
    crop_net = (crop_net if crop_net is not None else MediaPipeCropNet()).to(device).eval()
    if keypoint_net is not None:
        kwargs["keypoint_net"] = keypoint_net.to(device).eval()
    return HandCropPipeline(detector, crop_net, **kwargs)
