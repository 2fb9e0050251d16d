"""Two tiny HandsModels for the trainer tests, registered under test-only names.

:func:`register` adds them to ``MODELS`` and :func:`unregister` removes them again (the engine
tests' conftest does both around each test), so other test folders never see them.

- ``test_tiny_occ``: a per-point MLP on wrist-relative query points (``points`` ->
  ``occupancy``), MSE per hand on probabilities, IoU at 0.5 (``val_mode`` max). It has dropout,
  so an exact resume also needs the RNG states restored.
- ``test_tiny_kpts``: keypoints corrupted with random noise (global torch RNG) and corrected by
  a linear map of the mean image colour plus a learned per-joint offset; MSE loss, MPJPE in mm
  (``val_mode`` min). Needs only the image field, so it trains in milliseconds. It holds a
  frozen sub-module, which the optimizer and DDP must skip.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from im2hands.models.base import HandsModel
from im2hands.registry import MODELS


class TinyOcc(HandsModel):
    stage = "test_occ"
    val_metric = "iou"
    val_mode = "max"
    data_fields = ("occupancy",)

    def __init__(self, *, hidden: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        p = (batch["points"] - batch["keypoints"][:, :, :1]) * 10.0  # (B, 2, N, 3), wrist-relative, dm
        return {"occ": torch.sigmoid(self.net(p).squeeze(-1))}  # (B, 2, N)

    def compute_loss(self, batch, outputs):
        err = (outputs["occ"].float() - batch["occupancy"]) ** 2  # (B, 2, N)
        left, right = err[:, 0].mean(), err[:, 1].mean()
        return {"loss": left + right, "mse_left": left, "mse_right": right}

    def metrics(self, batch, outputs):
        pred, gt = outputs["occ"] > 0.5, batch["occupancy"] > 0.5
        inter, union = (pred & gt).sum(-1).float(), (pred | gt).sum(-1).float()
        return {"iou": float((inter / union.clamp(min=1)).mean())}

    @classmethod
    def from_config(cls, cfg):
        return cls(hidden=cfg.model.init_occ.hidden, dropout=cfg.model.init_occ.dropout)


class TinyKpts(HandsModel):
    stage = "test_kpts"
    val_metric = "mpjpe_mm"
    val_mode = "min"
    data_fields = ("image",)

    def __init__(self, *, noise: float = 0.01) -> None:
        super().__init__()
        self.noise = noise
        self.color = nn.Linear(3, 2 * 21 * 3)
        self.offset = nn.Parameter(torch.randn(2, 21, 3) * 0.05)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, batch):
        kp = batch["keypoints"]  # (B, 2, 21, 3)
        noisy = kp + self.noise * torch.randn(kp.shape, device=kp.device)
        color = self.frozen(batch["image"].mean(dim=(2, 3)))  # (B, 3)
        delta = self.color(color).view(-1, 2, 21, 3) * 0.01  # (B, 2, 21, 3)
        return {"keypoints": noisy + delta + self.offset}

    def compute_loss(self, batch, outputs):
        return {"loss": ((outputs["keypoints"] - batch["keypoints"]) * 100.0).pow(2).mean()}

    def metrics(self, batch, outputs):
        return {"mpjpe_mm": float((outputs["keypoints"] - batch["keypoints"]).norm(dim=-1).mean() * 1000.0)}

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    @classmethod
    def from_config(cls, cfg):
        return cls()


TEST_MODELS = {"test_tiny_occ": TinyOcc, "test_tiny_kpts": TinyKpts}


def register() -> None:
    """Add the test models to ``MODELS`` (idempotent)."""
    for name, cls in TEST_MODELS.items():
        if name not in MODELS:
            MODELS.register(name)(cls)


def unregister() -> None:
    """Remove the test models from ``MODELS``."""
    for name in TEST_MODELS:
        MODELS._table.pop(name, None)  # the registry has no public removal (tests only)
