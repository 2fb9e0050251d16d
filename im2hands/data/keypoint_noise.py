"""A noise model that makes ground-truth keypoints look like a keypoint estimator's output.

Keypoint refinement (stage 3) learns to correct an estimator's errors. Without such an
estimator's predictions on our data, we train on ground truth perturbed by this model. Each
hand ``(21, 3)`` (camera frame, metres, ``standard`` order) gets, in this order:

1. **Hand scale** (``scale_std``): the whole hand is scaled about its own middle MCP
   (standard index 9) by ``1 + s``, ``s ~ N(0, scale_std^2)``. Estimators misjudge the size of
   a hand from one view, so all bones come out a few percent too long or too short.
2. **Finger drift** (``finger_drift_prob``, ``finger_drift_mm``): each finger, independently
   with probability ``finger_drift_prob``, gets one random direction error
   ``d ~ N(0, finger_drift_mm^2 I)``; its joints above the base get ``d * k / 3`` (``k = 1, 2, 3``
   for PIP, DIP, tip; thumb: MCP, IP, tip). The base joint stays. This mimics a finger
   estimated with the wrong flexion/abduction: an error that grows along the chain.
3. **Finger swap** (``swap_prob``): with probability ``swap_prob`` per hand, the four keypoints
   of one pair of neighbouring fingers (thumb-index, index-middle, middle-ring or ring-pinky,
   uniform) exchange places: the estimator confused which finger is which.
4. **Per-joint jitter** (``jitter_mm``, ``tip_growth``): independent Gaussian noise with standard
   deviation ``jitter_mm * (1 + tip_growth * max(level - 1, 0) / 3)`` per axis, where ``level`` is
   0 for the wrist, 1 for the finger bases, ..., 4 for the tips. The wrist and bases have
   ``jitter_mm``; tips ``jitter_mm * (1 + tip_growth)``: tips are small, often occluded and have
   the largest errors in practice.
5. **Depth bias** (``depth_bias_mm``, ``depth_along_rays``): one offset ``dz ~ N(0,
   depth_bias_mm^2)`` per hand along the camera z axis, the same for all 21 joints. Monocular
   estimators place a hand at the wrong distance but in the right place in the image, so by
   default each joint moves along its camera ray: ``p <- p (z + dz) / z``. The z coordinate of
   every joint then changes by exactly ``dz`` while the 2D projection is kept. With
   ``depth_along_rays=False`` (or for points within 1 mm of the camera plane) ``dz`` is simply
   added to z.

Random numbers are drawn on the CPU from a :class:`torch.Generator` (the global one when
None), always the same draws in the same order whatever the settings, so a seeded generator
gives the same noise on any device and for any probability values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from im2hands.geometry.frames import MIDDLE_MCP, mm_to_m
from im2hands.typing import Bool, Float, Int, Tensor

__all__ = ["KeypointNoise", "NoiseInfo", "JOINT_LEVEL", "FINGER_JOINTS", "SWAP_PAIRS"]


FINGER_JOINTS: tuple[tuple[int, int, int, int], ...] = tuple(
    tuple(1 + 4 * f + j for j in range(4)) for f in range(5)
)  # type: ignore[assignment]
"""Standard indices of each finger's keypoints (thumb, index, middle, ring, pinky), base to tip."""

JOINT_LEVEL: tuple[int, ...] = (0,) + tuple(j + 1 for _ in range(5) for j in range(4))
"""Chain depth of each standard keypoint: 0 wrist, 1 finger base, ..., 4 tip."""

SWAP_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (2, 3), (3, 4))
"""Neighbouring finger pairs that a swap can exchange (finger indices, thumb = 0)."""

_RAY_MIN_DEPTH = 1e-3  # metres; closer to the camera plane, the depth bias is a plain z shift


@dataclass(frozen=True)
class NoiseInfo:
    """What :class:`KeypointNoise` drew for each hand (for tests and analysis).

    Attributes:
        scale: ``(B, 2)`` hand scale factors ``1 + s``.
        drifted: ``(B, 2, 5)`` which fingers drifted.
        swap_pair: ``(B, 2)`` index into :data:`SWAP_PAIRS` of the swapped pair, -1 for none.
        depth_bias: ``(B, 2)`` z offsets, metres.
    """

    scale: Float[Tensor, "B 2"]
    drifted: Bool[Tensor, "B 2 5"]
    swap_pair: Int[Tensor, "B 2"]
    depth_bias: Float[Tensor, "B 2"]


class KeypointNoise:
    """Perturbs ground-truth keypoints of both hands like a keypoint estimator would.

    See the module docstring for each term. All lengths are in millimetres; keypoints are in
    metres.

    Args:
        jitter_mm: per-axis standard deviation of per-joint jitter at the wrist and finger bases.
        tip_growth: relative jitter increase from the finger bases to the tips (0: uniform).
        depth_bias_mm: standard deviation of the per-hand depth (camera z) offset.
        depth_along_rays: move joints along their camera rays (keeps the 2D projection).
        swap_prob: probability per hand that two neighbouring fingers are swapped.
        finger_drift_prob: probability per finger of a drift error.
        finger_drift_mm: per-axis standard deviation of a drift at the fingertip.
        scale_std: standard deviation of the relative hand-scale error.
    """

    def __init__(
        self,
        *,
        jitter_mm: float = 8.0,
        tip_growth: float = 0.5,
        depth_bias_mm: float = 15.0,
        depth_along_rays: bool = True,
        swap_prob: float = 0.05,
        finger_drift_prob: float = 0.1,
        finger_drift_mm: float = 10.0,
        scale_std: float = 0.03,
    ) -> None:
        for name, value in (("jitter_mm", jitter_mm), ("tip_growth", tip_growth), ("depth_bias_mm", depth_bias_mm),
                            ("finger_drift_mm", finger_drift_mm), ("scale_std", scale_std)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name, value in (("swap_prob", swap_prob), ("finger_drift_prob", finger_drift_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.jitter_mm = float(jitter_mm)
        self.tip_growth = float(tip_growth)
        self.depth_bias_mm = float(depth_bias_mm)
        self.depth_along_rays = bool(depth_along_rays)
        self.swap_prob = float(swap_prob)
        self.finger_drift_prob = float(finger_drift_prob)
        self.finger_drift_mm = float(finger_drift_mm)
        self.scale_std = float(scale_std)

    def jitter_std_mm(self) -> Float[Tensor, "21"]:
        """Per-joint jitter standard deviation (per axis), mm, ``standard`` order."""
        level = torch.tensor(JOINT_LEVEL, dtype=torch.float64)
        return self.jitter_mm * (1.0 + self.tip_growth * (level - 1.0).clamp(min=0.0) / 3.0)

    def __call__(
        self,
        keypoints: Float[Tensor, "B 2 21 3"],
        generator: torch.Generator | None = None,
        return_info: bool = False,
    ) -> Float[Tensor, "B 2 21 3"] | tuple[Float[Tensor, "B 2 21 3"], NoiseInfo]:
        """Perturb keypoints.

        Args:
            keypoints: ``(B, 2, 21, 3)`` ground truth, camera frame, metres, ``standard`` order.
            generator: a CPU :class:`torch.Generator`; None uses torch's global RNG.
            return_info: also return a :class:`NoiseInfo`.

        Returns:
            ``(B, 2, 21, 3)`` noisy keypoints (same dtype and device), and the info if asked.
        """
        if keypoints.dim() != 4 or keypoints.shape[1:] != (2, 21, 3):
            raise ValueError(f"expected keypoints of shape (B, 2, 21, 3), got {tuple(keypoints.shape)}")
        B = keypoints.shape[0]
        dev, dt = keypoints.device, keypoints.dtype
        g = dict(generator=generator)
        # Every draw, always, in a fixed order (CPU, float64): determinism independent of settings.
        z_scale = torch.randn(B, 2, **g, dtype=torch.float64)
        u_drift = torch.rand(B, 2, 5, **g, dtype=torch.float64)
        z_drift = torch.randn(B, 2, 5, 3, **g, dtype=torch.float64)
        u_swap = torch.rand(B, 2, **g, dtype=torch.float64)
        pair = torch.randint(len(SWAP_PAIRS), (B, 2), **g)
        z_jitter = torch.randn(B, 2, 21, 3, **g, dtype=torch.float64)
        z_depth = torch.randn(B, 2, **g, dtype=torch.float64)

        kp = keypoints.detach().to(torch.float64).cpu()  # (B, 2, 21, 3)

        # 1. hand scale about the middle MCP
        scale = 1.0 + self.scale_std * z_scale  # (B, 2)
        centre = kp[:, :, MIDDLE_MCP : MIDDLE_MCP + 1]  # (B, 2, 1, 3)
        kp = centre + scale[..., None, None] * (kp - centre)

        # 2. finger drift, growing linearly from the base (0) to the tip (1)
        drifted = u_drift < self.finger_drift_prob  # (B, 2, 5)
        drift = mm_to_m(self.finger_drift_mm * z_drift) * drifted[..., None]  # (B, 2, 5, 3)
        ramp = torch.tensor([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0], dtype=torch.float64)  # base..tip
        finger_offsets = drift[:, :, :, None, :] * ramp[:, None]  # (B, 2, 5, 4, 3)
        kp = kp + torch.cat([kp.new_zeros(B, 2, 1, 3), finger_offsets.flatten(2, 3)], dim=2)

        # 3. swap two neighbouring fingers' keypoints
        swap = u_swap < self.swap_prob  # (B, 2)
        perm = _swap_permutations(pair)  # (B, 2, 21)
        perm = torch.where(swap[..., None], perm, torch.arange(21).expand(B, 2, 21))
        kp = torch.gather(kp, 2, perm[..., None].expand(B, 2, 21, 3))  # (B, 2, 21, 3)

        # 4. per-joint jitter, larger toward the tips
        kp = kp + mm_to_m(self.jitter_std_mm()[:, None] * z_jitter)

        # 5. per-hand depth bias along the camera z axis
        dz = mm_to_m(self.depth_bias_mm * z_depth)  # (B, 2)
        z = kp[..., 2]  # (B, 2, 21)
        dz_j = dz[..., None].expand_as(z)
        if self.depth_along_rays:
            on_rays = z.abs() > _RAY_MIN_DEPTH
            ratio = torch.where(on_rays, (z + dz_j) / torch.where(on_rays, z, torch.ones_like(z)), torch.ones_like(z))
            xy = kp[..., :2] * ratio[..., None]
            kp = torch.cat([xy, (z + dz_j)[..., None]], dim=-1)
        else:
            kp = torch.cat([kp[..., :2], (z + dz_j)[..., None]], dim=-1)

        out = kp.to(device=dev, dtype=dt)
        if not return_info:
            return out
        info = NoiseInfo(
            scale=scale.to(device=dev, dtype=dt),
            drifted=drifted.to(dev),
            swap_pair=torch.where(swap, pair, torch.full_like(pair, -1)).to(dev),
            depth_bias=dz.to(device=dev, dtype=dt),
        )
        return out, info

    def seeded(self, keypoints: Float[Tensor, "B 2 21 3"], seeds: Sequence[int] | Int[Tensor, "B"]) -> Float[Tensor, "B 2 21 3"]:
        """Noise that depends on each item's own seed only (e.g. ``base_seed + dataset index``).

        Item ``b`` gets exactly ``self(keypoints[b:b+1], Generator().manual_seed(seeds[b]))``,
        so a validation item gets the same noise whatever its batch, position or run.

        Args:
            keypoints: ``(B, 2, 21, 3)`` ground truth, camera frame, metres.
            seeds: ``B`` non-negative integer seeds.

        Returns:
            ``(B, 2, 21, 3)`` noisy keypoints.
        """
        seeds = [int(s) for s in (seeds.tolist() if isinstance(seeds, Tensor) else seeds)]
        if len(seeds) != keypoints.shape[0]:
            raise ValueError(f"expected {keypoints.shape[0]} seeds, got {len(seeds)}")
        outs = [self(keypoints[b : b + 1], torch.Generator().manual_seed(s)) for b, s in enumerate(seeds)]
        return torch.cat(outs, dim=0) if outs else keypoints.clone()


def _swap_permutations(pair: Int[Tensor, "B 2"]) -> Int[Tensor, "B 2 21"]:
    """For each hand, the keypoint permutation exchanging the two fingers of ``SWAP_PAIRS[pair]``."""
    table = torch.arange(21).repeat(len(SWAP_PAIRS), 1)  # (P, 21)
    for p, (fa, fb) in enumerate(SWAP_PAIRS):
        a, b = list(FINGER_JOINTS[fa]), list(FINGER_JOINTS[fb])
        table[p, a], table[p, b] = torch.tensor(b), torch.tensor(a)
    return table[pair]  # (B, 2, 21)
