"""MediaPipe's palm detector (``palm_detection_full.tflite``) as a torch module, with its SSD decode.

The network sees a ``(B, 3, 192, 192)`` RGB image in [0, 1] (the caller letterboxes the photo to a
square) and scores 2016 anchors: a 24 x 24 grid with 2 anchors per cell (stride 8), then a 12 x 12
grid with 6 per cell (three stride-16 layers), cells row by row, anchors inside a cell last. Each
anchor has 18 regression values: box centre offset (x, y) and size (w, h), then 7 palm keypoints
(x, y), all in input pixels relative to the anchor centre; anchors have unit size
(MediaPipe's ``fixed_anchor_size``). Keypoint 0 is the wrist centre and keypoint 2 the middle
finger's base: the two MediaPipe uses to rotate the hand crop upright.

:func:`decode` turns raw outputs into boxes, keypoints and scores (sigmoid of the clipped logit),
then removes overlaps with weighted NMS (MediaPipe's choice: overlapping boxes are averaged,
weighted by score, keeping the best score) or plain NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from im2hands.geometry.crops import box_iou
from im2hands.models.mediapipe.fetch import model_path
from im2hands.models.mediapipe.tflite_graph import read_tflite
from im2hands.models.mediapipe.torch_graph import TFLiteModule
from im2hands.utils.errors import Im2HandsError

PALM_FILE = "palm_detection_full.tflite"
INPUT_SIZE = 192
"""Side of the detector's square input, pixels."""
STRIDES: tuple[int, ...] = (8, 16, 16, 16)
"""Feature strides of the four SSD layers (consecutive equal strides share one grid)."""
NUM_KEYPOINTS = 7


def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES,
                anchors_per_layer: int = 2, offset: float = 0.5) -> Float[Tensor, "N 2"]:
    """Anchor centres (N, 2) as (x, y) in [0, 1] of the input, in the network's output order.

    Layers with the same stride share a grid and put their anchors together in each cell.
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = -(-input_size // strides[i])  # cells per side (rounded up, as MediaPipe)
        per_cell = anchors_per_layer * (j - i)
        c = (torch.arange(n, dtype=torch.float32) + offset) / n
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        grid = torch.stack([xx, yy], dim=-1).reshape(-1, 1, 2).expand(-1, per_cell, 2)
        centres.append(grid.reshape(-1, 2))
        i = j
    return torch.cat(centres, dim=0)


def anchors_per_cell(strides: tuple[int, ...] = STRIDES, anchors_per_layer: int = 2) -> tuple[int, ...]:
    """Anchors per cell of each grid (consecutive layers of one stride share a grid): (2, 6)."""
    counts: list[int] = []
    for i, s in enumerate(strides):
        if i and s == strides[i - 1]:
            counts[-1] += anchors_per_layer
        else:
            counts.append(anchors_per_layer)
    return tuple(counts)


@dataclass
class PalmDetections:
    """Palms found in one image; coordinates are fractions [0, 1] of the 192 x 192 input (x right, y down).

    Attributes:
        boxes: (N, 4) as (x_min, y_min, x_max, y_max).
        keypoints: (N, 7, 2) palm keypoints (0: wrist centre, 2: middle-finger base).
        scores: (N,) probabilities, best first.
        right_prob: (N,) probability of a right hand, from detectors that tell the side
            (:class:`~im2hands.models.hand_det.HandDetModel`); None for MediaPipe's.
    """

    boxes: Float[Tensor, "N 4"]
    keypoints: Float[Tensor, "N 7 2"]
    scores: Float[Tensor, " N"]
    right_prob: Float[Tensor, " N"] | None = None


def decode_raw(raw: Float[Tensor, "A 18"], anchors: Float[Tensor, "A 2"],
               input_size: int = INPUT_SIZE) -> tuple[Float[Tensor, "A 4"], Float[Tensor, "A 7 2"]]:
    """Boxes (x_min, y_min, x_max, y_max) and keypoints of every anchor, as input fractions."""
    d = raw / input_size
    centre = d[:, 0:2] + anchors
    half = d[:, 2:4] / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    keypoints = d[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return boxes, keypoints


def nms(boxes: Tensor, keypoints: Tensor, scores: Tensor, iou_threshold: float = 0.3,
        weighted: bool = True) -> PalmDetections:
    """Non-maximum suppression of candidate palms (already above the score threshold).

    Highest score first: the candidate and every remaining box with IoU > ``iou_threshold`` with it
    form a cluster; ``weighted`` averages the cluster's boxes and keypoints by score (the result
    keeps the candidate's score), plain NMS keeps the candidate alone. The cluster is removed.
    """
    order = torch.argsort(scores, descending=True)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    iou = box_iou(boxes, boxes)
    out_b, out_k, out_s = [], [], []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (iou[i] > iou_threshold)
        cluster[i] = True
        if weighted:
            w = scores[cluster] / scores[cluster].sum()
            out_b.append((boxes[cluster] * w[:, None]).sum(0))
            out_k.append((keypoints[cluster] * w[:, None, None]).sum(0))
        else:
            out_b.append(boxes[i])
            out_k.append(keypoints[i])
        out_s.append(scores[i])
        remaining &= ~cluster
    if not out_s:
        return PalmDetections(boxes.new_zeros(0, 4), keypoints.new_zeros(0, NUM_KEYPOINTS, 2), scores.new_zeros(0))
    return PalmDetections(torch.stack(out_b), torch.stack(out_k), torch.stack(out_s))


def decode(raw: Float[Tensor, "B A 18"], logits: Float[Tensor, "B A"], anchors: Float[Tensor, "A 2"],
           score_threshold: float = 0.5, iou_threshold: float = 0.3, weighted: bool = True,
           input_size: int = INPUT_SIZE, side_logits: Float[Tensor, "B A"] | None = None) -> list[PalmDetections]:
    """Palms of each image from the raw outputs: sigmoid scores of the logits clipped to [-100, 100],
    anchors at ``score_threshold`` or above, then :func:`nms`. With ``side_logits`` (a detector
    that tells sides) each palm's ``right_prob`` is averaged over its NMS cluster as its box is."""
    scores = torch.sigmoid(logits.clamp(-100.0, 100.0))
    sides = [None] * len(scores) if side_logits is None else torch.sigmoid(side_logits)
    result = []
    for r, s, p in zip(raw, scores, sides):
        keep = s >= score_threshold
        boxes, keypoints = decode_raw(r[keep], anchors.to(r)[keep], input_size)
        if p is None:
            result.append(nms(boxes, keypoints, s[keep], iou_threshold, weighted))
            continue
        with_side = torch.cat([keypoints, p[keep][:, None, None].expand(-1, 1, 2)], 1)  # the side rides along as a point
        det = nms(boxes, with_side, s[keep], iou_threshold, weighted)
        result.append(PalmDetections(det.boxes, det.keypoints[:, :-1], det.scores, right_prob=det.keypoints[:, -1, 0]))
    return result


class PalmDetector(nn.Module):
    """MediaPipe palm detection (full model) with fine-tunable float32 weights.

    Args:
        path: the ``.tflite`` file (default: the verified cached copy).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.net = TFLiteModule(read_tflite(path if path is not None else model_path(PALM_FILE)))
        names = self.net.output_names
        if names != ("Identity", "Identity_1"):
            raise Im2HandsError(f"{path or PALM_FILE} has outputs {names}; is it palm_detection_full?")
        self.register_buffer("anchors", ssd_anchors(), persistent=False)
        self.feature_tensors = self._score_inputs()

    def _score_inputs(self) -> tuple[int, ...]:
        """The feature maps the score head reads, in anchor order: each part of the score
        output's concatenation is a reshaped 1 x 1 convolution of one of them."""
        concat = self.net.producer(self.net.output_indices[1])
        found = []
        for part in concat.inputs if concat is not None and concat.kind == "CONCATENATION" else ():
            reshape = self.net.producer(part)
            conv = self.net.producer(reshape.inputs[0]) if reshape is not None and reshape.kind == "RESHAPE" else None
            if conv is None or conv.kind != "CONV_2D":
                raise Im2HandsError("the palm detector's score head is not reshaped 1x1 convolutions")
            found.append(conv.inputs[0])
        if not found:
            raise Im2HandsError("the palm detector's score output is not a concatenation")
        return tuple(found)

    def forward_features(self, images: Float[Tensor, "B 3 192 192"]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """:meth:`forward`'s raw regressions and score logits, and the feature maps (NCHW) the
        score head reads (:attr:`feature_tensors`: 128 x 24 x 24 and 256 x 12 x 12)."""
        self._check(images)
        raw, logits, *features = self.net(images, extra=self.feature_tensors)
        return raw, logits[..., 0], features

    def _check(self, images: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise Im2HandsError(f"PalmDetector expects images of shape (B, 3, 192, 192), got {tuple(images.shape)}")

    def forward(self, images: Float[Tensor, "B 3 192 192"]) -> tuple[Float[Tensor, "B 2016 18"], Float[Tensor, "B 2016"]]:
        """Raw regressions (B, 2016, 18) and score logits (B, 2016) of RGB images in [0, 1]."""
        self._check(images)
        raw, logits = self.net(images)
        if raw.shape[1] != len(self.anchors):
            raise Im2HandsError(f"palm detector gives {raw.shape[1]} anchors, the SSD layout has {len(self.anchors)}")
        return raw, logits[..., 0]

    @torch.no_grad()
    def detect(self, images: Float[Tensor, "B 3 192 192"], score_threshold: float = 0.5,
               iou_threshold: float = 0.3, weighted: bool = True) -> list[PalmDetections]:
        """Palms of each image (:func:`decode` of :meth:`forward`)."""
        raw, logits = self(images)
        return decode(raw, logits, self.anchors, score_threshold, iou_threshold, weighted)
