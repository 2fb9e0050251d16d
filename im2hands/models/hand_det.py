"""The hand detector of the per-hand crop pipeline as a trainable stage (``hand_det``).

MediaPipe's palm detector (:class:`~im2hands.models.mediapipe.palm.PalmDetector`, ported to
torch, trained on real photos) with a new **side head**: a 1 x 1 convolution on each of the two
feature maps its score head reads, giving every anchor a right-hand logit. Fine-tuned with the
one trainer on whole images (:class:`~im2hands.data.det_batch.HandDetBatch`):

- ``det_images`` (B, 3, 192, 192) in [0, 1]; ``det_palm`` (B, 2, 7, 2) and ``det_box`` (B, 2,
  4) input pixels; ``det_valid`` (B, 2) (slot 0 left, slot 1 right).

Anchors are matched to hands by position (SSD with unit anchors, as MediaPipe's): an anchor
whose centre lies within ``positive_radius`` x a hand's box side of the box centre (per axis)
is that hand's positive (the nearest hand's when several), and every hand's nearest anchor is
one. Losses: binary cross-entropy of the scores over the positives and the hardest
``negatives_per_positive`` negatives per positive, normalised by the positives (SSD's mining);
L1 of the 18 regression values (box centre offset and size, 7 palm points, fractions of the
input) and binary cross-entropy of the side, both on positives; optionally ``anchor_weight`` x
the squared distance to MediaPipe's weights (L2-SP).

Checkpoints hold the palm detector's weights as differences to MediaPipe's, the side head as
it is (:class:`~im2hands.models.finetune.FromOrigin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.models.base import HandsModel
from im2hands.models.finetune import FromOrigin
from im2hands.models.mediapipe.palm import INPUT_SIZE, PalmDetections, PalmDetector, anchors_per_cell, decode
from im2hands.registry import MODELS
from im2hands.typing import Float, Tensor

__all__ = ["HandDetModel", "HandDetOutput"]


@dataclass
class HandDetOutput:
    """Raw outputs for B images: ``raw`` (B, 2016, 18) regressions in input pixels relative to
    the anchors, ``logits`` (B, 2016) hand scores, ``side_logits`` (B, 2016) right-hand logits."""

    raw: Float[Tensor, "B A 18"]
    logits: Float[Tensor, "B A"]
    side_logits: Float[Tensor, "B A"]


@MODELS.register("hand_det")
class HandDetModel(FromOrigin, HandsModel):
    """MediaPipe's palm detector with a side head as a fine-tunable stage (module docstring).

    Args:
        palm: the palm detector (its current weights are the starting point).
        positive_radius, negatives_per_positive: anchor matching and mining (``model.hand_det``).
        loss_score, loss_box, loss_side: loss weights.
        anchor_weight: L2-SP weight.
        head_lr_scale: learning rate of the new side head / ``train.lr``.
    """

    stage = "hand_det"
    val_metric = "f1"
    val_mode = "max"
    data_fields = ("image", "masks")
    """Dataset fields to load (masks tell which hands are seen and let one be painted over)."""
    uses_image = True
    input_size = INPUT_SIZE

    def __init__(
        self,
        *,
        palm: PalmDetector,
        positive_radius: float = 0.3,
        negatives_per_positive: float = 3.0,
        loss_score: float = 1.0,
        loss_box: float = 10.0,
        loss_side: float = 1.0,
        anchor_weight: float = 0.0,
        head_lr_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.palm = palm
        with torch.no_grad():
            _, _, features = palm.forward_features(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
        per_cell = anchors_per_cell()
        self.side_heads = nn.ModuleList(nn.Conv2d(f.shape[1], n, 1) for f, n in zip(features, per_cell))
        for head in self.side_heads:  # start undecided: probability 0.5 everywhere
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.positive_radius, self.negatives_per_positive = float(positive_radius), float(negatives_per_positive)
        self.loss_score, self.loss_box, self.loss_side = float(loss_score), float(loss_box), float(loss_side)
        self.anchor_weight, self.head_lr_scale = float(anchor_weight), float(head_lr_scale)
        self.keep_origin("palm")

    def trainable_parameters(self) -> list[dict[str, Any]]:
        """The detector's weights at ``train.lr``, the new side head at ``head_lr_scale`` x it."""
        return [{"params": [p for p in self.palm.parameters() if p.requires_grad]},
                {"params": list(self.side_heads.parameters()), "lr_scale": self.head_lr_scale}]  # fmt: skip

    @property
    def image_size(self) -> Optional[int]:
        return INPUT_SIZE

    def run(self, images: Float[Tensor, "B 3 192 192"]) -> HandDetOutput:
        """The detector and side head on letterboxed RGB images in [0, 1]."""
        raw, logits, features = self.palm.forward_features(images)
        side = [head(f).permute(0, 2, 3, 1).reshape(len(f), -1) for head, f in zip(self.side_heads, features)]
        return HandDetOutput(raw, logits, torch.cat(side, 1))

    def forward(self, batch: dict[str, Any]) -> HandDetOutput:
        """:meth:`run` on ``batch["det_images"]``."""
        return self.run(batch["det_images"])

    # ------------------------------------------------------------------ targets

    def match(self, box: Float[Tensor, "B 2 4"], valid: Tensor) -> tuple[Tensor, Tensor]:
        """Each anchor's hand: ``hand`` (B, A) long in {0, 1} (the nearest valid hand, relative
        to its box side) and ``positive`` (B, A) bool (module docstring)."""
        a = self.palm.anchors.to(box) * INPUT_SIZE  # (A, 2)
        d = (a[None, None] - box[:, :, None, :2]).abs() / box[:, :, None, 2:3].clamp_min(1.0)  # (B, 2, A, 2)
        d = d.amax(-1).masked_fill(~valid[..., None], float("inf"))  # (B, 2, A)
        near, hand = d.min(1)
        positive = near <= self.positive_radius
        nearest = d.argmin(-1)  # (B, 2): every valid hand's nearest anchor is positive
        for h in range(2):
            b = torch.nonzero(valid[:, h])[:, 0]
            positive[b, nearest[b, h]] = True
            hand[b, nearest[b, h]] = h
        return hand, positive

    def targets(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """``hand`` and ``positive`` of :meth:`match` and the raw regression targets (B, A, 18)."""
        box, palm, valid = batch["det_box"], batch["det_palm"], batch["det_valid"].bool()
        hand, positive = self.match(box, valid)
        a = self.palm.anchors.to(box) * INPUT_SIZE
        idx = hand[..., None]
        b = torch.gather(box, 1, idx.expand(-1, -1, 4))  # (B, A, 4)
        p = torch.gather(palm.flatten(2), 1, idx.expand(-1, -1, 14)).view(len(box), -1, 7, 2)
        raw = torch.cat([b[..., :2] - a, b[..., 2:], (p - a[:, None]).flatten(2)], -1)
        return hand, positive, raw

    # ------------------------------------------------------------------ losses

    def compute_loss(self, batch: dict[str, Any], outputs: HandDetOutput) -> dict[str, Tensor]:
        hand, positive, raw = self.targets(batch)
        pos = positive.float()
        n_pos = pos.sum().clamp_min(1.0)
        bce = F.binary_cross_entropy_with_logits(outputs.logits.float(), pos, reduction="none")
        neg_loss = bce.masked_fill(positive, -1.0).flatten()
        k = int(min(len(neg_loss), max(16, round(self.negatives_per_positive * float(pos.sum())))))
        mined = neg_loss.topk(k).values.clamp_min(0.0).sum()
        score = ((bce * pos).sum() + mined) / n_pos
        box = ((outputs.raw.float() - raw).abs().mean(-1) / INPUT_SIZE * pos).sum() / n_pos
        right = (hand == 1).float()
        side = (F.binary_cross_entropy_with_logits(outputs.side_logits.float(), right, reduction="none") * pos).sum() / n_pos
        total = self.loss_score * score + self.loss_box * box + self.loss_side * side
        out = {"loss_score": score, "loss_box": box, "loss_side": side}
        if self.anchor_weight > 0:
            out["loss_anchor"] = self.origin_distance()
            total = total + self.anchor_weight * out["loss_anchor"]
        out["loss"] = total
        return out

    # ------------------------------------------------------------------ detection

    def decode(self, out: HandDetOutput, score_threshold: float = 0.5, iou_threshold: float = 0.3) -> list[PalmDetections]:
        """Hands of each image: boxes, palm points (input fractions), scores and ``right_prob``
        (score-weighted over each NMS cluster, as MediaPipe averages boxes)."""
        return decode(out.raw, out.logits, self.palm.anchors, score_threshold, iou_threshold, side_logits=out.side_logits)

    @torch.no_grad()
    def detect(self, images: Float[Tensor, "B 3 192 192"], score_threshold: float = 0.5,
               iou_threshold: float = 0.3) -> list[PalmDetections]:  # fmt: skip
        """Hands and sides of letterboxed images (:meth:`decode` of :meth:`run`)."""
        return self.decode(self.run(images), score_threshold, iou_threshold)

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: HandDetOutput) -> dict[str, float]:
        """Detections at score 0.5 matched to the hands (a detection's box centre within half
        the hand's box side, greedily by score): ``recall``, ``false_per_image`` (unmatched
        detections), ``side_acc`` of matched hands, ``centre_px`` (matched, input pixels), ``f1``
        = 2 TP / (2 TP + FP + FN) of the matches and ``side_f1``, the same where a true positive
        also has the right side."""
        box, valid = batch["det_box"], batch["det_valid"].bool()
        tp = matched = fp = 0
        err: list[float] = []
        for b, det in enumerate(self.decode(outputs)):
            centre = (det.boxes[:, :2] + det.boxes[:, 2:]) / 2 * INPUT_SIZE
            free = [h for h in range(2) if bool(valid[b, h])]
            for i in range(len(det.scores)):  # best first
                dist = {h: float((centre[i] - box[b, h, :2]).norm()) for h in free}
                h = min(dist, key=dist.get) if dist else None
                if h is None or dist[h] > 0.5 * float(box[b, h, 2]):
                    fp += 1
                    continue
                free.remove(h)
                matched += 1
                err.append(dist[h])
                tp += int((float(det.right_prob[i]) >= 0.5) == (h == 1))
        n = int(valid.sum())
        nan = float("nan")
        return {"recall": matched / n if n else nan, "false_per_image": fp / len(box),
                "side_acc": tp / matched if matched else nan, "centre_px": sum(err) / len(err) if err else nan,
                "f1": 2 * matched / (2 * matched + fp + (n - matched)) if (n + fp) else nan,
                "side_f1": 2 * tp / (2 * tp + fp + (n - tp)) if (n + fp) else nan}  # fmt: skip

    @classmethod
    def from_config(cls, cfg: Any) -> "HandDetModel":
        """Build from an :class:`~im2hands.config.schema.ExperimentConfig` (``model.hand_det``)."""
        hc = cfg.model.hand_det
        return cls(
            palm=PalmDetector(hc.palm_file), positive_radius=hc.positive_radius,
            negatives_per_positive=hc.negatives_per_positive, loss_score=hc.loss_score, loss_box=hc.loss_box,
            loss_side=hc.loss_side, anchor_weight=hc.anchor_weight, head_lr_scale=hc.head_lr_scale,
        )  # fmt: skip
