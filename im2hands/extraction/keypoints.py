"""Image (any size) -> both hands' absolute 3D keypoints: the image-to-keypoints path of
``im2hands extract`` (``--keypoints auto`` or images alone) and of ``im2hands bench``.

:class:`KeypointPipeline` runs a :class:`~im2hands.models.base.KeypointEstimator` (the
``kpts_est`` stage) on whole images (two passes: the whole image, then a crop around the hands
found), places the hands for the image's intrinsics (or a default focal length) and optionally
refines the keypoints with a :class:`~im2hands.models.base.KeypointRefinement` (``kpts_ref``).
It uses the models through those declared interfaces only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


import numpy as np
import torch

from im2hands.extraction.inputs import crop_square
from im2hands.geometry.crops import Roi, crop_to_image, square_crop_intrinsics_np, square_roi
from im2hands.geometry.frames import project_np
from im2hands.geometry.placement import default_intrinsics
from im2hands.hands.constants import NUM_KEYPOINTS, SIDES
from im2hands.models.base import KeypointEstimator, KeypointRefinement

__all__ = ["KeypointPipeline", "EstimatedHands", "MIN_DEPTH_M", "MAX_DEPTH_M"]

MIN_DEPTH_M: float = 0.05
"""Placed hands closer to the camera than this (metres) are rejected by :class:`KeypointPipeline`."""
MAX_DEPTH_M: float = 20.0
"""Placed hands farther than this (metres) are rejected by :class:`KeypointPipeline`."""

@dataclass
class EstimatedHands:
    """Keypoints estimated from one image by :class:`KeypointPipeline`.

    Attributes:
        joints: side -> ``(21, 3)`` float64 camera-frame metres, ``standard`` order, for the
            hands judged present and placed plausibly (may be empty).
        K: ``(3, 3)`` intrinsics used for the image (given, or the default).
        keypoints: ``(2, 21, 3)`` both hands' placed keypoints (absent hands: a guess).
        keypoints_2d: ``(2, 21, 2)`` pixels of the input image.
        presence: ``(2,)`` presence probabilities.
        reprojection_px: ``(2,)`` RMS reprojection error of the placement (NaN: not fitted).
        refined: whether a stage-3 model refined the keypoints.
    """

    joints: dict[str, np.ndarray]
    K: np.ndarray
    keypoints: np.ndarray
    keypoints_2d: np.ndarray
    presence: np.ndarray
    reprojection_px: np.ndarray
    refined: bool = False
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """Per side found, the image region the hand was found in: ``(center_u, center_v, size,
    angle)`` (pixels, radians; :class:`~im2hands.geometry.crops.Roi`); empty for the whole-image
    estimator."""


def _crop(image: np.ndarray, K: np.ndarray, x0: float, y0: float, side: float,
          size: int) -> tuple[torch.Tensor, np.ndarray, Roi]:
    """Square crop ``[x0, x0 + side)^2`` of ``image``, snapped outwards to whole pixels (zeros
    outside), resized to ``size``: the ``(3, size, size)`` float image, its intrinsics for the
    image's intrinsics ``K``, and its :class:`~im2hands.geometry.crops.Roi`."""
    x0i, y0i, s = int(math.floor(x0)), int(math.floor(y0)), max(1, int(math.ceil(side)))
    return crop_square(image, x0i, y0i, s, size), square_crop_intrinsics_np(K, x0i, y0i, s, size), square_roi(x0i, y0i, s)


class KeypointPipeline:
    """Image (any size) -> both hands' absolute 3D keypoints, with a trained keypoint estimator.

    1. Pass 1: the whole image, padded to a centred square, resized to the encoder's side.
    2. Pass 2 (``passes`` 2): a square crop around the joints of the hands found (they cover
       ``fill`` of its side, as in the training crops); its outputs are kept. This needs joints
       that span the hands: an unconverged estimator's joints huddle near the hands' centre,
       the crop then zooms into part of the hands and the placement runs away (the shipped
       CPU estimator: 1.24 m mean wrist error with 2 passes, 0.14 m with 1).
    3. Placement (:func:`~im2hands.geometry.placement.place_hands`) for the image's ``K``, or
       :func:`~im2hands.geometry.placement.default_intrinsics` with ``focal`` pixels or
       ``focal_factor`` (default: the estimator's ``default_focal_factor``) x the longer side.
    4. Optional stage-3 refinement with ``refiner``'s ``encode(batch)`` and
       ``refine(keypoints, features, hand_valid)`` (:class:`~im2hands.models.base.KeypointRefinement`),
       run on a crop around the placed keypoints.

    Args:
        estimator: a trained :class:`~im2hands.models.base.KeypointEstimator` (e.g.
            :class:`~im2hands.models.kpts_est.KptsEstModel`; put in eval mode here).
        refiner: optional stage-3 :class:`~im2hands.models.base.KeypointRefinement`.
        focal: focal length in pixels for images without a camera.
        focal_factor: else this times the longer side.
        passes: 1 or 2; None: the estimator's ``passes`` (``model.kpts_est.passes``).
        fill: fraction of the crop side covered by the hands in pass 2 and refinement.
    """

    def __init__(
        self,
        estimator: KeypointEstimator,
        *,
        refiner: KeypointRefinement | None = None,
        focal: float | None = None,
        focal_factor: float | None = None,
        passes: int | None = None,
        fill: float = 0.8,
    ) -> None:
        passes = estimator.passes if passes is None else passes
        if passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {passes}")
        self.estimator = estimator.eval()
        self.refiner = refiner.eval() if refiner is not None else None
        self.focal = focal
        self.focal_factor = estimator.default_focal_factor if focal_factor is None else float(focal_factor)
        self.passes, self.fill = passes, float(fill)

    @property
    def keypoint_convention(self) -> str | None:
        """Where the output's PIP and DIP keypoints sit (:mod:`im2hands.hands.conventions`): the
        refiner's training data's when there is one, else the estimator's."""
        if self.refiner is not None:
            return self.refiner.keypoint_convention
        return getattr(self.estimator, "keypoint_convention", None)

    @property
    def device(self) -> torch.device:
        return self.estimator.device

    def _run(self, image: np.ndarray, K: np.ndarray, x0: float, y0: float, side: float) -> dict[str, np.ndarray]:
        size = self.estimator.image_size
        tensor, Kc, roi = _crop(image, K, x0, y0, side, size)
        batch = {"image": tensor[None].to(self.device), "K": torch.as_tensor(Kc, dtype=torch.float32)[None].to(self.device)}
        est = self.estimator.estimate(batch)
        uv_crop = est.keypoints_2d[0].double().cpu().reshape(1, -1, 2)  # (1, 2 * 21, 2)
        return {
            "uv": crop_to_image(uv_crop, roi, size).reshape(2, NUM_KEYPOINTS, 2).numpy(),  # image pixels
            "keypoints": est.keypoints[0].double().cpu().numpy(),
            "presence": torch.sigmoid(est.presence_logits[0].float()).cpu().numpy(),
            "rel_translation": est.rel_translation[0].double().cpu().numpy(),
            "side": np.array(side),
        }

    @torch.no_grad()
    def __call__(self, image: np.ndarray, K: np.ndarray | None = None) -> EstimatedHands:
        """Estimate both hands in an ``(H, W, 3)`` uint8 image with intrinsics ``K`` (or the default)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        h, w = image.shape[:2]
        K = default_intrinsics(h, w, self.focal_factor, focal=self.focal, dtype=torch.float64).numpy() if K is None else np.asarray(K, np.float64)
        side = float(max(h, w))
        r = self._run(image, K, (w - side) / 2.0, (h - side) / 2.0, side)
        present = r["presence"] > self.estimator.presence_threshold
        if self.passes == 2 and present.any():
            pts = r["uv"][present].reshape(-1, 2)
            lo, hi = pts.min(0), pts.max(0)
            side2 = max(float((hi - lo).max()) / self.fill, 16.0)
            c = (lo + hi) / 2.0
            r = self._run(image, K, c[0] - side2 / 2.0, c[1] - side2 / 2.0, side2)
            present = r["presence"] > self.estimator.presence_threshold
        keypoints = r["keypoints"]
        present &= self._plausible(keypoints, K, h, w)
        refined = False
        if self.refiner is not None and present.any():
            keypoints = self._refine(image, K, keypoints, present)
            refined = True
            present &= self._plausible(keypoints, K, h, w)
        reproj = np.linalg.norm(project_np(keypoints.reshape(-1, 3), K) - r["uv"].reshape(-1, 2), axis=-1)
        reproj = reproj.reshape(2, NUM_KEYPOINTS)
        rms = np.where(present, np.sqrt((reproj**2).mean(-1)), np.nan)
        joints = {SIDES[i]: keypoints[i].copy() for i in range(2) if present[i]}
        return EstimatedHands(joints=joints, K=K, keypoints=keypoints, keypoints_2d=r["uv"], presence=r["presence"],
                              reprojection_px=rms, refined=refined)  # fmt: skip

    @staticmethod
    def _plausible(keypoints: np.ndarray, K: np.ndarray, h: int, w: int) -> np.ndarray:
        """(2,) hands whose placed joints lie in front of the camera (``MIN_DEPTH_M`` to
        ``MAX_DEPTH_M``) and project near the image (within one image size of it); others are
        dropped (an untrained or confused estimator)."""
        z = keypoints[..., 2]
        ok = (z.min(-1) > MIN_DEPTH_M) & (z.max(-1) < MAX_DEPTH_M)
        uv = project_np(keypoints.reshape(-1, 3), K, min_depth=1e-6).reshape(2, NUM_KEYPOINTS, 2)
        near = (uv > -np.array([w, h])) & (uv < 2 * np.array([w, h]))
        return ok & near.all(-1).all(-1)

    def _refine(self, image: np.ndarray, K: np.ndarray, keypoints: np.ndarray, present: np.ndarray) -> np.ndarray:
        return refine_keypoints(self.refiner, image, K, keypoints, present, fill=self.fill)


def refine_keypoints(refiner: KeypointRefinement, image: np.ndarray, K: np.ndarray, keypoints: np.ndarray, present: np.ndarray,
                     fill: float = 0.8) -> np.ndarray:  # fmt: skip
    """Stage-3 refinement of placed keypoints: ``refiner`` (a keypoint-refinement model) sees a
    square crop around the present hands' projections (they cover ``fill`` of its side).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        K: ``(3, 3)`` intrinsics of ``image``.
        keypoints: ``(2, 21, 3)`` left, right camera-frame metres (an absent hand: any stand-in).
        present: ``(2,)`` bool, which hands are there (at least one).

    Returns:
        ``(2, 21, 3)`` refined keypoints, float64.
    """
    size = int(refiner.image_size)
    uv = project_np(keypoints[present].reshape(-1, 3), K, min_depth=1e-6)
    lo, hi = uv.min(0), uv.max(0)
    side = max(float((hi - lo).max()) / fill, 16.0)
    c = (lo + hi) / 2.0
    tensor, Kc, _ = _crop(image, K, c[0] - side / 2.0, c[1] - side / 2.0, side, size)
    dev = refiner.device
    batch = {"image": tensor[None].to(dev), "K": torch.as_tensor(Kc, dtype=torch.float32)[None].to(dev)}
    features = refiner.encode(batch)
    kp = torch.as_tensor(keypoints, dtype=torch.float32)[None].to(dev)
    valid = torch.as_tensor(present)[None].to(dev)
    return refiner.refine(kp, features, valid)[0].double().cpu().numpy()
