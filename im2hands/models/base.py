"""The one interface every stage implements, so one trainer and one extractor serve them all.

Batches are dicts of tensors as produced by :class:`im2hands.data.dataset.HandsDataset` and
collated by torch's default collate (a leading batch axis ``B``; ``2`` is the hand axis with
``LEFT = 0``, ``RIGHT = 1``; camera frame, metres):

- ``image`` (B, 3, H, W) in [0, 1]; ``K`` (B, 3, 3); ``keypoints`` (B, 2, 21, 3)
- ``points`` (B, 2, N, 3) and ``occupancy`` (B, 2, N) (occupancy stages)
- ``masks_amodal`` / ``masks_visible`` (B, 2, H, W), ``hand_valid`` (B, 2), ...

Models never read configs in ``__init__``: constructors take keyword-only typed arguments, and
the classmethod ``from_config`` is the one place that turns the config into those arguments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class HandsModel(nn.Module):
    """Base class of every stage.

    Subclasses implement:

    - ``encode(batch) -> features``: everything that depends on the image and keypoints only
      (run once per image, e.g. by the mesh extractor);
    - ``decode(points, features) -> Tensor``: occupancy probabilities ``(B, 2, N)`` for
      camera-frame query points ``(B, 2, N, 3)`` (occupancy stages; keypoint stages may
      leave it unimplemented);
    - ``forward(batch) -> dict[str, Tensor]``: the training/validation outputs;
    - ``compute_loss(batch, outputs) -> dict[str, Tensor]``: must hold ``"loss"``, the total
      to minimise; other entries are logged;
    - ``metrics(batch, outputs) -> dict[str, float]``: validation numbers (e.g. ``iou``,
      ``mpjpe_mm``); the trainer averages them over the validation set;
    - ``from_config(cfg)`` (classmethod): build from an ``ExperimentConfig``.

    Class attributes:
        stage: short name (``init_occ``, ``ref_occ``, ``kpts_ref``...).
        val_metric: the metric that selects the best checkpoint; ``val_mode``: ``max`` or ``min``.
    """

    stage: str = "base"
    val_metric: str = "loss"
    val_mode: str = "min"

    def encode(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def decode(self, points: torch.Tensor, features: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not decode occupancy")

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def metrics(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def trainable_parameters(self):
        """Parameters the optimizer updates (frozen sub-models excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @classmethod
    def from_config(cls, cfg: Any) -> "HandsModel":
        raise NotImplementedError

    def initialize_from_config(self, cfg: Any) -> list[str]:
        """Training-time initialisation from other trained weights named in the config (e.g.
        stage 1's decoders from a keypoint-only run). The trainer calls it for a fresh run only:
        never on resume, and never when a trained model is rebuilt from its checkpoint, so a run
        does not depend on the files it started from. Returns what was loaded, one line each.
        The default loads nothing."""
        return []
