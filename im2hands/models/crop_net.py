"""The crop network of the per-hand crop pipeline as a trainable stage (``crop_net``).

MediaPipe's hand-landmark network (:class:`~im2hands.models.mediapipe.hand_landmark.HandLandmarkNet`,
ported to torch, trained on real hand photos) fine-tuned on per-hand crops with the one trainer.
Its batches are crops cut by the trainer's batch transform
(:class:`~im2hands.data.crop_batch.HandCropBatch`):

- ``crops`` (N, 3, 224, 224) RGB in [0, 1]; ``crop_uv`` (N, 21, 2) crop pixels; ``crop_xyz``
  (N, 21, 3) wrist-relative metres in crop orientation; ``crop_right`` (N,), ``crop_hand`` (N,)
  in {0, 1}.

Losses (keypoint terms on hand crops only): L1 of the 2D keypoints in fractions of the crop
side, L1 of the wrist-relative 3D keypoints (the network's metric "world" output re-centred on
its wrist) in metres, binary cross-entropy of the handedness (right = 1) and of the presence
(negatives 0), and optionally ``anchor_weight`` x the squared distance of the weights to the
starting ones (L2-SP), which holds the network near what it learnt from real photos.

**Checkpoints hold only what fine-tuning changed**: the network's entries of ``state_dict()``
are the differences to the starting weights (read from the ``.tflite`` at construction), and
loading adds them back. A checkpoint or shipped weights file of this stage therefore contains
no third-party weights (MediaPipe's are fetched at set-up and checked by SHA-256), and float16
files keep the small differences precisely.

``im2hands extract --estimator RUN`` with a ``crop_net`` run (or weights file) runs the per-hand
crop pipeline with this network giving the keypoints (docs/estimator.md).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from im2hands.geometry.frames import WRIST
from im2hands.models.base import HandsModel
from im2hands.models.finetune import FromOrigin
from im2hands.models.measures import masked_mean
from im2hands.models.mediapipe.hand_landmark import CROP_SIZE, HandLandmarkNet, HandLandmarks
from im2hands.registry import MODELS
from im2hands.typing import Tensor

__all__ = ["CropNetModel"]

_EPS = 1e-6


def _bce(p: Tensor, target: Tensor) -> Tensor:
    """Per-element binary cross-entropy of probabilities ``p`` (float32, safe under autocast)."""
    p = p.float().clamp(_EPS, 1.0 - _EPS)
    t = target.float()
    return -(t * p.log() + (1.0 - t) * (1.0 - p).log())


@MODELS.register("crop_net")
class CropNetModel(FromOrigin, HandsModel):
    """MediaPipe's landmark network as a fine-tunable stage (module docstring).

    Args:
        landmarks: the network (its current weights are the starting point).
        loss_2d, loss_3d, loss_side, loss_presence: loss weights (``model.crop_net``).
        anchor_weight: L2-SP weight (the starting weights are kept as non-persistent buffers).
    """

    stage = "crop_net"
    val_metric = "err_2d_px"
    val_mode = "min"
    data_fields = ("image", "masks")
    """Dataset fields to load (the crops come from the images; masks make the negatives)."""
    uses_image = True
    input_size = CROP_SIZE

    def __init__(
        self,
        *,
        landmarks: HandLandmarkNet,
        loss_2d: float = 1.0,
        loss_3d: float = 5.0,
        loss_side: float = 0.05,
        loss_presence: float = 0.05,
        anchor_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.landmarks = landmarks
        self.loss_2d, self.loss_3d = float(loss_2d), float(loss_3d)
        self.loss_side, self.loss_presence = float(loss_side), float(loss_presence)
        self.anchor_weight = float(anchor_weight)
        self.keep_origin("landmarks")

    @property
    def image_size(self) -> Optional[int]:
        return CROP_SIZE

    def forward(self, batch: dict[str, Any]) -> HandLandmarks:
        """The network on ``batch["crops"]`` (N, 3, 224, 224)."""
        return self.landmarks(batch["crops"])

    def _wrist_relative(self, out: HandLandmarks) -> Tensor:
        return out.world - out.world[:, WRIST : WRIST + 1]

    def compute_loss(self, batch: dict[str, Any], outputs: HandLandmarks) -> dict[str, Tensor]:
        hand = batch["crop_hand"] > 0.5
        l2d = masked_mean((outputs.keypoints_2d - batch["crop_uv"]).abs().mean((1, 2)) / CROP_SIZE, hand)
        l3d = masked_mean((self._wrist_relative(outputs) - batch["crop_xyz"]).abs().mean((1, 2)), hand)
        side = masked_mean(_bce(outputs.handedness, batch["crop_right"]), hand)
        presence = _bce(outputs.presence, batch["crop_hand"]).mean()
        total = self.loss_2d * l2d + self.loss_3d * l3d + self.loss_side * side + self.loss_presence * presence
        out = {"loss_2d": l2d, "loss_3d": l3d, "loss_side": side, "loss_presence": presence}
        if self.anchor_weight > 0:
            anchor = self.origin_distance()
            out["loss_anchor"] = anchor
            total = total + self.anchor_weight * anchor
        out["loss"] = total
        return out

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: HandLandmarks) -> dict[str, float]:
        """``err_2d_px`` (mean 2D error, crop pixels), ``mpjpe_mm`` (wrist-relative), ``side_acc``
        (handedness on the right side of 0.5) over hand crops; ``presence_acc`` over all crops
        (threshold 0.5) and ``negative_presence`` (mean presence of the negatives)."""
        hand = batch["crop_hand"] > 0.5
        nan = float("nan")
        out = {"presence_acc": float(((outputs.presence >= 0.5) == hand).float().mean())}
        out["negative_presence"] = float(outputs.presence[~hand].mean()) if bool((~hand).any()) else nan
        if bool(hand.any()):
            err = (outputs.keypoints_2d - batch["crop_uv"]).norm(dim=-1)[hand]
            mpjpe = (self._wrist_relative(outputs) - batch["crop_xyz"]).norm(dim=-1)[hand]
            side_ok = (outputs.handedness[hand] >= 0.5) == (batch["crop_right"][hand] > 0.5)
            out.update(err_2d_px=float(err.mean()), mpjpe_mm=1000.0 * float(mpjpe.mean()),
                       side_acc=float(side_ok.float().mean()))  # fmt: skip
        else:
            out.update(err_2d_px=nan, mpjpe_mm=nan, side_acc=nan)
        return out

    @classmethod
    def from_config(cls, cfg: Any) -> "CropNetModel":
        """Build from an :class:`~im2hands.config.schema.ExperimentConfig` (``model.crop_net``)."""
        cc = cfg.model.crop_net
        return cls(
            landmarks=HandLandmarkNet(cc.landmark_file), loss_2d=cc.loss_2d, loss_3d=cc.loss_3d,
            loss_side=cc.loss_side, loss_presence=cc.loss_presence, anchor_weight=cc.anchor_weight,
        )  # fmt: skip
