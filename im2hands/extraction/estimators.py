"""The image -> keypoints pipeline of ``im2hands extract --images`` / ``--keypoints auto``:
MediaPipe's per-hand crop pipeline, or a whole-image keypoint estimator, each with an optional
stage-3 refiner, loaded from run folders, checkpoints or given objects."""

from __future__ import annotations

import os
from typing import Any

import torch

from im2hands.config import config_to_yaml
from im2hands.extraction.hand_crops import HandCropPipeline
from im2hands.extraction.keypoints import KeypointPipeline
from im2hands.loading import load_model
from im2hands.models.base import KeypointEstimator, KeypointRefinement
from im2hands.utils.errors import Im2HandsError

MEDIAPIPE_ESTIMATOR = "mediapipe"
"""``--estimator mediapipe``: the per-hand crop pipeline with MediaPipe's palm detector and
hand-landmark network (:mod:`im2hands.extraction.mediapipe_hands`; docs/estimator.md)."""


def load_estimator(
    estimator: Any, refiner: Any, device: torch.device, focal: float | None
) -> tuple[KeypointPipeline | HandCropPipeline, dict[str, str]]:
    """The image -> keypoints pipeline from run folders / checkpoints (or given objects), and
    the resolved configs (YAML text) of those loaded from files: ``{"estimator", "refiner"}``."""
    configs: dict[str, str] = {}
    if isinstance(estimator, (KeypointPipeline, HandCropPipeline)):
        return estimator, configs
    crops = isinstance(estimator, str) and estimator == MEDIAPIPE_ESTIMATOR
    if isinstance(estimator, (str, os.PathLike)) and not crops:
        estimator, cfg = load_model(estimator, which="best", device=device)
        if not isinstance(estimator, KeypointEstimator):
            raise Im2HandsError(f"--estimator: model.type '{cfg.model.type}' is not a keypoint estimator (kpts_est)")
        configs["estimator"] = config_to_yaml(cfg)
    if isinstance(refiner, (str, os.PathLike)):
        refiner, cfg = load_model(refiner, which="best", device=device)
        if not isinstance(refiner, KeypointRefinement):
            raise Im2HandsError(f"--refiner: model.type '{cfg.model.type}' is not a keypoint refinement (kpts_ref)")
        configs["refiner"] = config_to_yaml(cfg)
    refiner = None if refiner is None else refiner.to(device)
    if crops:
        from im2hands.extraction.mediapipe_hands import mediapipe_pipeline

        return mediapipe_pipeline(device, focal=focal, refiner=refiner), configs
    return KeypointPipeline(estimator.to(device), refiner=refiner, focal=focal), configs
