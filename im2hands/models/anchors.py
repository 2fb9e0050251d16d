"""Anchor points for stage 2: points on the threshold surface of a per-hand occupancy field.

:class:`AnchorFinder` finds ``num_anchors`` points per hand on the surface of a field (in
stage 2, the frozen stage-1 occupancy, :mod:`im2hands.models.ref_occ`) directly from the field:
no mesh extraction, so no pass over the training set first (reference section 7). Rays are cast
from points on each hand's keypoint skeleton; the first threshold crossing along each ray is
bracketed by a coarse march, refined by bisection and a final secant step; farthest point
sampling keeps ``num_anchors`` of the crossings.

Frames and units: keypoints, ray start points and anchors are camera-frame points in metres
(``2`` is the hand axis, left first; keypoints in ``standard`` joint order). The field is any
callable mapping hand ``h``'s camera-frame points (slot ``h`` of a ``(B, 2, n, 3)`` tensor) to
hand ``h``'s occupancy probabilities ``(B, 2, n)``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from im2hands.geometry.rotations import random_rotation_matrix
from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.models.point_transformer import farthest_point_sample
from im2hands.typing import Float, Int, Tensor

__all__ = ["SEGMENTS", "AnchorFinder"]

SEGMENTS: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(STANDARD_PARENTS) if p >= 0) + (
    (5, 9), (9, 13), (13, 17),
)
"""Skeleton segments the anchor rays start from, as ``(parent, child)`` keypoint indices in
``standard`` order: the 20 bones, then 3 palm segments between neighbouring finger bases
(index-middle, middle-ring, ring-pinky)."""


def _fibonacci_sphere(n: int) -> Tensor:
    """``(n, 3)`` unit vectors spread evenly over the sphere (float64)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = (1.0 - z**2).clamp(min=0).sqrt()
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * phi.cos(), r * phi.sin(), z], -1)  # (n, 3)


class AnchorFinder(nn.Module):
    """Points on the threshold surface of an occupancy field, near each hand's skeleton.

    Start points: ``bone_samples`` evenly spaced points on each of the 23 skeleton segments
    (20 bones + 3 palm segments). From each, ``rays`` rays of length ``ray_length`` (a
    Fibonacci set of directions, rotated by a fixed random rotation per start point). The field
    is evaluated at the start and ``ray_steps`` even steps along every ray; the first pair of
    samples straddling ``threshold`` is refined by ``bisections`` bisection steps and a final
    secant step. Farthest point sampling keeps ``num_anchors`` crossings per hand (repeated
    cyclically when fewer were found); a hand with no crossing at all takes the ``num_anchors``
    march samples closest to the threshold.

    Cost, field evaluations per hand: ``S (1 + rays ray_steps) + S rays bisections`` with
    ``S = 23 bone_samples`` start points (:attr:`evaluations_per_hand`; 8349 with the config
    defaults 3 / 12 / 6 / 4). On ground-truth hand meshes (the synthetic data), 512 anchors from
    these settings put 82% of the mesh vertices within 5 mm of an anchor and 97% within 8 mm
    (farthest point sampling of the vertices themselves: 83% / 100%).

    Args:
        num_anchors: anchors per hand.
        threshold: occupancy probability of the surface.
        bone_samples, rays, ray_length (metres), ray_steps, bisections: see above.
        seed: seed of the per-start-point rotations (fixed, not the global RNG).
    """

    def __init__(
        self,
        *,
        num_anchors: int,
        threshold: float = 0.5,
        bone_samples: int = 3,
        rays: int = 12,
        ray_length: float = 0.04,
        ray_steps: int = 6,
        bisections: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_anchors, self.threshold = num_anchors, threshold
        self.ray_length, self.ray_steps, self.bisections = ray_length, ray_steps, bisections
        seg = torch.tensor(SEGMENTS)  # (G, 2)
        frac = (torch.arange(bone_samples, dtype=torch.float64) + 0.5) / bone_samples  # (T,)
        S = len(SEGMENTS) * bone_samples
        rot = random_rotation_matrix(S, torch.Generator().manual_seed(seed))  # (S, 3, 3)
        dirs = torch.einsum("sij,dj->sdi", rot, _fibonacci_sphere(rays))  # (S, D, 3)
        self.register_buffer("segments", seg, persistent=False)
        self.register_buffer("fractions", frac.float(), persistent=False)
        self.register_buffer("directions", dirs.float(), persistent=False)
        self.evaluations_per_hand = S * (1 + rays * ray_steps) + S * rays * bisections
        """Field evaluations per hand and image."""

    def start_points(self, keypoints: Float[Tensor, "B 2 21 3"]) -> Float[Tensor, "B 2 S 3"]:
        """Ray start points on the skeleton segments, ``(B, 2, S, 3)``."""
        a, b = keypoints[:, :, self.segments[:, 0]], keypoints[:, :, self.segments[:, 1]]  # (B, 2, G, 3)
        t = self.fractions.to(keypoints.dtype).view(1, 1, 1, -1, 1)
        pts = a[:, :, :, None] + t * (b - a)[:, :, :, None]  # (B, 2, G, T, 3)
        return pts.flatten(2, 3)  # (B, 2, S, 3)

    @torch.no_grad()
    def forward(
        self, field: Callable[[Tensor], Tensor], keypoints: Float[Tensor, "B 2 21 3"]
    ) -> tuple[Float[Tensor, "B 2 M 3"], Int[Tensor, "B 2"]]:
        """Find anchors.

        Args:
            field: maps camera-frame points ``(B, 2, n, 3)`` (hand ``h``'s points in slot ``h``)
                to occupancy probabilities ``(B, 2, n)`` of hand ``h``.
            keypoints: ``(B, 2, 21, 3)`` camera frame, metres, ``standard`` order.

        Returns:
            ``(anchors (B, 2, M, 3) camera frame, crossings found per hand (B, 2))``.
        """
        B = keypoints.shape[0]
        kp = keypoints.float()
        start = self.start_points(kp)  # (B, 2, S, 3)
        S, D, T, thr = start.shape[2], self.directions.shape[1], self.ray_steps, self.threshold
        dirs = self.directions[None, None]  # (1, 1, S, D, 3)
        dist = torch.arange(1, T + 1, device=kp.device, dtype=kp.dtype) * (self.ray_length / T)  # (T,)

        def along(t: Tensor) -> Tensor:  # points at distances t (B, 2, S, D[, T]) along the rays
            if t.dim() == 5:
                return start[:, :, :, None, None] + dirs[..., None, :] * t[..., None]  # (B, 2, S, D, T, 3)
            return start[:, :, :, None] + dirs * t[..., None]  # (B, 2, S, D, 3)

        def evaluate(p: Tensor) -> Tensor:
            return field(p.reshape(B, 2, -1, 3)).float().view(p.shape[:-1])

        march = along(dist.expand(B, 2, S, D, T))  # (B, 2, S, D, T, 3)
        p_start = evaluate(start)[:, :, :, None, None].expand(B, 2, S, D, 1)
        prob = torch.cat([p_start, evaluate(march)], -1)  # (B, 2, S, D, T + 1)
        inside = prob >= thr
        change = inside[..., 1:] != inside[..., :-1]  # (B, 2, S, D, T)
        found = change.any(-1)  # (B, 2, S, D)
        k = change.float().argmax(-1, keepdim=True)  # (B, 2, S, D, 1) first crossing interval
        t_lo, t_hi = (k.squeeze(-1) * (self.ray_length / T)), ((k.squeeze(-1) + 1) * (self.ray_length / T))
        p_lo, p_hi = prob.gather(-1, k).squeeze(-1), prob.gather(-1, k + 1).squeeze(-1)  # (B, 2, S, D)
        in_lo = p_lo >= thr
        for _ in range(self.bisections):
            t_mid = 0.5 * (t_lo + t_hi)
            p_mid = evaluate(along(t_mid))  # (B, 2, S, D)
            same = (p_mid >= thr) == in_lo
            t_lo, p_lo = torch.where(same, t_mid, t_lo), torch.where(same, p_mid, p_lo)
            t_hi, p_hi = torch.where(same, t_hi, t_mid), torch.where(same, p_hi, p_mid)
        frac = ((thr - p_lo) / (p_hi - p_lo)).nan_to_num(0.5).clamp(0.0, 1.0)  # secant step
        crossings = along(t_lo + frac * (t_hi - t_lo)).reshape(2 * B, S * D, 3)  # (2 B, S D, 3)
        valid = found.reshape(2 * B, S * D)
        M = self.num_anchors
        idx = farthest_point_sample(crossings, M, valid)  # (2 B, M)
        anchors = crossings.gather(1, idx[..., None].expand(2 * B, M, 3))  # (2 B, M, 3)
        none = ~valid.any(1)  # (2 B,)
        if bool(none.any()):  # degenerate field: the march samples closest to the threshold
            score = (prob[..., 1:] - thr).abs().reshape(2 * B, -1)  # (2 B, S D T)
            near = score.topk(min(M, score.shape[1]), dim=1, largest=False).indices  # (2 B, m)
            near = near[:, torch.arange(M, device=near.device) % near.shape[1]]  # (2 B, M)
            fallback = march.reshape(2 * B, -1, 3).gather(1, near[..., None].expand(2 * B, M, 3))
            anchors = torch.where(none[:, None, None], fallback, anchors)
        return anchors.view(B, 2, M, 3).to(keypoints.dtype), valid.sum(1).view(B, 2)

