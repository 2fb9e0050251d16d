"""The image -> keypoints pipeline of ``im2hands extract --images`` / ``--keypoints auto``:
MediaPipe's per-hand crop pipeline (with MediaPipe's landmark network, or one fine-tuned here: a
``crop_net`` run), or a whole-image keypoint estimator, each with an optional stage-3 refiner,
loaded from run folders, checkpoints or given objects."""

from __future__ import annotations

import os
from typing import Any

import torch

from im2hands.config import config_to_yaml
from im2hands.extraction.hand_crops import PAIR_SCALES, HandCropPipeline
from im2hands.extraction.keypoints import KeypointPipeline
from im2hands.loading import load_model, shipped_path
from im2hands.models.base import KeypointEstimator, KeypointRefinement
from im2hands.utils.errors import Im2HandsError

MEDIAPIPE_ESTIMATOR = "mediapipe"
"""``--estimator mediapipe``: the per-hand crop pipeline with MediaPipe's palm detector and
hand-landmark network (:mod:`im2hands.extraction.mediapipe_hands`; docs/estimator.md)."""


def default_estimator() -> str:
    """What ``extract --images`` uses without ``--estimator``: the shipped fine-tuned crop network
    (``crop_net.pt``: MediaPipe's networks find the hands and sides, the fine-tuned one gives the
    keypoints; docs/estimator.md), or ``"mediapipe"`` in an installation without it."""
    try:
        return str(shipped_path("crop_net"))
    except Im2HandsError:
        return MEDIAPIPE_ESTIMATOR


def default_detector() -> str:
    """What the per-hand crop pipeline of a ``crop_net`` estimator finds hands with when no
    ``detector`` is given: the shipped hand detector (``hand_det.pt``: MediaPipe's palm detector
    fine-tuned here, with sides; docs/estimator.md), or ``"mediapipe"`` without it."""
    try:
        return str(shipped_path("hand_det"))
    except Im2HandsError:
        return MEDIAPIPE_ESTIMATOR


DETECTOR_SETTINGS: dict[str, Any] = {"detector_side": 0.0, "detector_presence": 0.9, "detector_keypoints": False}
"""How the per-hand crop pipeline uses a ``hand_det`` detector's sides and scores
(:class:`HandCropPipeline`; measured in docs/estimator.md)."""
DETECTOR_FALLBACK = True
"""With a ``hand_det`` detector, MediaPipe's palm detector searches next while a hand is missing."""
DETECTOR_MERGE = "palm"
"""With a ``hand_det`` detector, both detectors merge overlapping palms, not overlapping hand
regions (two interacting hands' regions overlap; ``MediaPipePalmDetector(merge_on=...)``)."""


def load_detector(detector: Any, device: torch.device, configs: dict[str, str]):
    """A hand detector (:class:`~im2hands.extraction.mediapipe_hands.MediaPipePalmDetector`) from
    ``"mediapipe"`` (MediaPipe's palm detector), a ``hand_det`` run folder / checkpoint / model;
    the loaded config's YAML goes into ``configs["detector"]``."""
    from im2hands.extraction.mediapipe_hands import MediaPipePalmDetector
    from im2hands.models.hand_det import HandDetModel

    if isinstance(detector, (str, os.PathLike)) and str(detector) == MEDIAPIPE_ESTIMATOR:
        return MediaPipePalmDetector().to(device).eval()
    if isinstance(detector, (str, os.PathLike)):
        detector, cfg = load_model(detector, which="best", device=device)
        if not isinstance(detector, HandDetModel):
            raise Im2HandsError(f"--detector: model.type '{cfg.model.type}' is not a hand detector (hand_det)")
        configs["detector"] = config_to_yaml(cfg)
    if not isinstance(detector, HandDetModel):
        raise Im2HandsError(f"detector: expected 'mediapipe' or a hand_det run, got {type(detector).__name__}")
    return MediaPipePalmDetector(detector.to(device).eval(), merge_on=DETECTOR_MERGE)


def load_estimator(
    estimator: Any, refiner: Any, device: torch.device, focal: float | None, pair_scale: str | None = None,
    detector: Any = None,
) -> tuple[KeypointPipeline | HandCropPipeline, dict[str, str]]:
    """The image -> keypoints pipeline from run folders / checkpoints (or given objects), and
    the resolved configs (YAML text) of those loaded from files: ``{"estimator", "refiner"}``.

    ``pair_scale`` (``own``, ``geometric``, ``arithmetic`` or ``best``; None: the pipeline's
    default, ``best``) sets how the per-hand crop pipeline sizes the two hands of a pair
    (:class:`HandCropPipeline`); the whole-image estimator has no such step.

    ``estimator``: ``"mediapipe"``, a run folder or checkpoint of a ``kpts_est`` model (the
    whole-image pipeline) or of a ``crop_net`` model (the per-hand crop pipeline with that crop
    network), or a built pipeline.

    ``detector`` (per-hand crop pipeline only): ``"mediapipe"`` (MediaPipe's palm detector) or a
    ``hand_det`` run / checkpoint; None: :func:`default_detector` for a ``crop_net`` estimator,
    MediaPipe's for ``"mediapipe"``."""
    if pair_scale is not None and pair_scale not in PAIR_SCALES:
        raise Im2HandsError(f"pair_scale must be one of {PAIR_SCALES}, got {pair_scale!r}")
    configs: dict[str, str] = {}
    if isinstance(estimator, (str, os.PathLike)) and str(estimator) != MEDIAPIPE_ESTIMATOR:
        estimator, cfg = load_model(estimator, which="best", device=device)
        if not isinstance(estimator, (KeypointEstimator, _crop_net_class())):
            raise Im2HandsError(f"--estimator: model.type '{cfg.model.type}' is neither a keypoint estimator "
                                "(kpts_est) nor a crop network (crop_net)")  # fmt: skip
        configs["estimator"] = config_to_yaml(cfg)
    crops = estimator == MEDIAPIPE_ESTIMATOR or isinstance(estimator, (_crop_net_class(), HandCropPipeline))
    for flag, value in (("--pair-scale", pair_scale), ("--detector", detector)):
        if value is not None and not crops:
            raise Im2HandsError(f"{flag} applies to the per-hand crop pipeline (--estimator mediapipe or a crop_net run) only")
    if isinstance(estimator, (KeypointPipeline, HandCropPipeline)):
        pipeline = estimator
    else:
        if detector is None and isinstance(estimator, _crop_net_class()):
            detector = default_detector()
        pipeline = _build(estimator, refiner, device, focal, configs, detector)
    if pair_scale is not None:
        pipeline.set_pair_scale(pair_scale)
    return pipeline, configs


def _crop_net_class() -> type:
    from im2hands.models.crop_net import CropNetModel

    return CropNetModel


def _build(estimator: Any, refiner: Any, device: torch.device, focal: float | None,
           configs: dict[str, str], detector: Any = None) -> KeypointPipeline | HandCropPipeline:
    """The pipeline of :func:`load_estimator` from ``"mediapipe"`` or a model (a loaded
    ``kpts_est`` or ``crop_net``); a refiner from a name, file or model, whose YAML goes into
    ``configs``."""
    if isinstance(refiner, (str, os.PathLike)):
        refiner, cfg = load_model(refiner, which="best", device=device)
        if not isinstance(refiner, KeypointRefinement):
            raise Im2HandsError(f"--refiner: model.type '{cfg.model.type}' is not a keypoint refinement (kpts_ref)")
        configs["refiner"] = config_to_yaml(cfg)
    refiner = None if refiner is None else refiner.to(device)
    if isinstance(estimator, KeypointEstimator):
        return KeypointPipeline(estimator.to(device), refiner=refiner, focal=focal)
    from im2hands.extraction.mediapipe_hands import MediaPipeCropNet, MediaPipePalmDetector, mediapipe_pipeline

    keypoint_net = None
    if isinstance(estimator, _crop_net_class()):  # its fine-tuned landmark network gives the keypoints
        keypoint_net = MediaPipeCropNet(estimator.landmarks, keypoint_convention=estimator.keypoint_convention)
    elif estimator != MEDIAPIPE_ESTIMATOR:
        raise Im2HandsError(f"estimator: expected 'mediapipe', a keypoint estimator or a crop network, got {type(estimator).__name__}")
    kwargs: dict[str, Any] = {}
    if detector is not None and str(detector) != MEDIAPIPE_ESTIMATOR:
        kwargs = {"detector": load_detector(detector, device, configs), **DETECTOR_SETTINGS}
        if DETECTOR_FALLBACK:
            kwargs["fallback_detector"] = MediaPipePalmDetector(merge_on=DETECTOR_MERGE).to(device).eval()
    pipeline = mediapipe_pipeline(device, keypoint_net=keypoint_net, focal=focal, refiner=refiner, **kwargs)
    pipeline.detector_source = MEDIAPIPE_ESTIMATOR if "detector" not in kwargs else (
        str(detector) if isinstance(detector, (str, os.PathLike)) else type(detector).__name__)  # fmt: skip
    return pipeline
