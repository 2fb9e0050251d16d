"""Config schemas of the image stages that start from MediaPipe's real-photo networks:
``crop_net`` (the hand-landmark network on per-hand crops) and ``hand_det`` (the palm detector
with a side head on whole images). Nested into :class:`~im2hands.config.schema.ModelConfig`;
the conventions are :mod:`im2hands.config.schema`'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from im2hands.config.fields import _list_range, _range


@dataclass
class CropNetConfig:
    """Fine-tuning MediaPipe's hand-landmark network on per-hand crops (``crop_net``;
    docs/estimator.md). Training crops are framed on the ground-truth 2D keypoints as the
    pipeline's second pass frames them, then jittered."""

    landmark_file: Optional[str] = None
    """The ``.tflite`` to start from; None: the verified cached ``hand_landmark_full.tflite``."""
    crop_scale: float = _range(2.0, 0.5, 8.0)
    """Crop side / the keypoints' longer extent in the upright frame (the pipeline's ``crop_scale``)."""
    aug_scale_range: List[float] = _list_range([0.8, 1.3], 0.1, 10.0, ascending=True)
    """Crop side factors (log-uniform; training only)."""
    aug_rotation_deg: float = _range(25.0, 0.0, 180.0)
    """Largest crop rotation away from upright, degrees (training only)."""
    aug_shift: float = _range(0.1, 0.0, 1.0)
    """Largest crop-centre shift per axis, fraction of the crop side (training only)."""
    aug_color: float = _range(0.3, 0.0, 1.0)
    """Brightness, contrast and saturation factors in [1 - aug_color, 1 + aug_color]."""
    aug_hue: float = _range(0.05, 0.0, 0.5)
    """Largest hue rotation, fraction of a turn."""
    aug_blur_prob: float = _range(0.3, 0.0, 1.0)
    """Probability of a Gaussian blur of a crop."""
    aug_noise_std: float = _range(0.03, 0.0, 1.0)
    """Largest standard deviation of additive pixel noise."""
    negative_ratio: float = _range(0.3, 0.0, 1.0)
    """Extra crops without a hand (both hands painted over), per hand crop; presence target 0."""
    loss_2d: float = _range(1.0, 0.0, None)
    """Weight of the 2D loss (L1, fractions of the crop side)."""
    loss_3d: float = _range(5.0, 0.0, None)
    """Weight of the wrist-relative 3D loss (L1, metres, crop orientation)."""
    loss_side: float = _range(0.05, 0.0, None)
    """Weight of the handedness loss (binary cross-entropy)."""
    loss_presence: float = _range(0.05, 0.0, None)
    """Weight of the presence loss (binary cross-entropy; hand crops 1, negatives 0)."""
    anchor_weight: float = _range(0.0, 0.0, None)
    """Weight of the squared distance of the weights to the starting ones (L2-SP, summed), which
    keeps what the network learnt from real photos."""


@dataclass
class HandDetConfig:
    """Fine-tuning MediaPipe's palm detector, with a new side head, into a detector of hands
    and their sides on whole images (``hand_det``; docs/estimator.md). Targets come from the
    ground-truth 2D keypoints: each hand's 7 palm points (wrist, the four finger bases, the
    thumb's CMC and MCP) and a square box around them."""

    palm_file: Optional[str] = None
    """The ``.tflite`` to start from; None: the verified cached ``palm_detection_full.tflite``."""
    aug_scale_range: List[float] = _list_range([0.45, 1.2], 0.05, 10.0, ascending=True)
    """Zoom factors of the whole image (log-uniform; training only): below 1 the hands get
    smaller, as in photos where they fill less of the frame."""
    aug_rotation_deg: float = _range(60.0, 0.0, 180.0)
    """Largest in-plane rotation of the whole image, degrees (training only)."""
    aug_translate: float = _range(0.25, 0.0, 1.0)
    """Largest shift per axis, fraction of the image side (training only)."""
    aug_flip_prob: float = _range(0.5, 0.0, 1.0)
    """Probability of mirroring an image left-right, which swaps its hands' sides (training
    only): the side must then come from the hand's shape, not from where it is."""
    aug_color: float = _range(0.4, 0.0, 1.0)
    """Brightness, contrast and saturation factors in [1 - aug_color, 1 + aug_color]."""
    aug_hue: float = _range(0.08, 0.0, 0.5)
    """Largest hue rotation, fraction of a turn."""
    aug_blur_prob: float = _range(0.3, 0.0, 1.0)
    """Probability of a Gaussian blur."""
    aug_noise_std: float = _range(0.03, 0.0, 1.0)
    """Largest standard deviation of additive pixel noise (images in [0, 1])."""
    aug_erase_prob: float = _range(0.15, 0.0, 1.0)
    """Probability of painting over one hand (it then counts as absent): one-hand images."""
    positive_radius: float = _range(0.3, 0.01, 1.0)
    """Anchors whose centre lies within this fraction of a hand's box side of the box centre
    (per axis) are that hand's positives; all others are negatives."""
    negatives_per_positive: float = _range(3.0, 0.0, None)
    """Hardest negative anchors kept per positive in the score loss (SSD's mining)."""
    loss_score: float = _range(1.0, 0.0, None)
    """Weight of the score loss (binary cross-entropy, positives + mined negatives)."""
    loss_box: float = _range(10.0, 0.0, None)
    """Weight of the box and palm-point loss (L1, fractions of the 192-pixel input)."""
    loss_side: float = _range(1.0, 0.0, None)
    """Weight of the side loss (binary cross-entropy of right = 1 on positive anchors)."""
    anchor_weight: float = _range(0.0, 0.0, None)
    """Weight of the squared distance of the detector's weights to MediaPipe's (L2-SP)."""
    head_lr_scale: float = _range(10.0, 0.0, None)
    """Learning rate of the new side head / ``train.lr`` (it starts from zeros, the rest from
    MediaPipe's weights)."""
