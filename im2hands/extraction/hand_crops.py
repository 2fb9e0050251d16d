"""Image -> both hands' 3D keypoints through per-hand crops (InterWild's design).

1. **Find hands**: a detector proposes regions (:class:`~im2hands.geometry.crops.Roi`, score, side if known).
2. **Crop network, twice per hand**: each region cut out upright (mirrored when the network
   wants right hands and the side is known) gives 21 keypoints in crop pixels, root-relative
   metric 3D keypoints, a presence and a right-hand probability; a second crop is framed on
   them (side ``scale`` x their extent, as MediaPipe's tracking) and its outputs kept.
3. **Search again** while fewer than two hands were found: (a) the crop network on
   overlapping square windows (sides ``scan`` x the shorter image side; presence at least
   ``scan_presence``); (b) the detector again with the found hands painted over (HDR's idea);
   (c) rotated crops around a hand found alone, for a hand of the other side.
4. **Hands and sides**: hands below ``min_presence`` or smaller than ``min_size_ratio`` x the
   largest are dropped, duplicates (boxes overlapping more than ``dedup_iou``) merged; with a
   ``keypoint_net`` (e.g. one fine-tuned on our renders) each hand is cropped once more on its
   keypoints, also read ``keypoint_tta`` turned and scaled (median in image terms), and that
   network's keypoints and side replace the first's; at most one left and one right hand
   are kept, the pair agreeing best with the right-hand probabilities.
5. **Placement**: each hand turned into the camera's orientation and placed from its 2D
   keypoints and the intrinsics; a pair gets the size and PIP depth of the better fitting
   hand (``pair_scale="best"``, ``pair_depth``; :func:`~im2hands.geometry.placement.place_pair`).

Networks: :class:`HandDetector`, :class:`CropNet` (:mod:`im2hands.extraction.mediapipe_hands`
wraps MediaPipe's). Result: :class:`HandsFound`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from im2hands.geometry.crops import (
    KEYPOINT_CROP_SHIFT, Roi, box_iou, crop_images, crop_to_camera_orientation, crop_to_image, paint_over_boxes,
    square_windows, upright_roi,
)
from im2hands.extraction.inputs import placeholder_hand
from im2hands.extraction.keypoints import EstimatedHands, refine_keypoints
from im2hands.geometry.frames import WRIST
from im2hands.geometry.placement import HAND_SIZE_MEASURES, SHARED_SCALE_MEANS, default_intrinsics, place_pair
from im2hands.hands.constants import SIDES
from im2hands.models.base import KeypointRefinement
from im2hands.typing import Float, Tensor

__all__ = ["CropNet", "CropPrediction", "Detections", "HandCropPipeline", "HandDetector", "HandsFound",
           "KEYPOINT_TTA", "PAIR_SCALES", "assign_sides"]

KEYPOINT_TTA: tuple[tuple[float, float], ...] = ((10.0, 1.0), (-10.0, 1.0))
"""Extra reads of each found hand by ``keypoint_net``: (degrees turned, side x), docs/estimator.md."""
PAIR_SCALES: tuple[str, ...] = ("own",) + SHARED_SCALE_MEANS
"""Values of ``pair_scale``: ``own`` (each hand its own size) or a shared size (:func:`~im2hands.geometry.placement.place_pair`)."""


@dataclass
class Detections:
    """Hand regions proposed in one image: ``roi`` (N regions, image pixels), ``scores`` (N,)
    in [0, 1], and ``right_prob`` (N,) when the detector tells the side (else None).
    ``pred``: the crop network's outputs on exactly these regions (as the pipeline's
    ``_predict`` gives them, with ``roi.mirror``) when a search already ran it (the scan, the
    probes); the first crop pass reuses them instead of running the same crops again."""

    roi: Roi
    scores: Float[Tensor, "N"]
    right_prob: Float[Tensor, "N"] | None = None
    pred: dict[str, Tensor] | None = None
    detector_side: bool = False
    """True when ``right_prob`` and ``scores`` come from a detector that tells sides (used by
    ``detector_side`` / ``detector_presence``); False for the crop network's own searches."""

    @staticmethod
    def empty() -> "Detections":
        none = torch.zeros(0, dtype=torch.float64)
        return Detections(Roi(torch.zeros(0, 2, dtype=torch.float64), none, none), none)


@dataclass
class CropPrediction:
    """A crop network's outputs for B crops.

    Attributes:
        keypoints_2d: (B, 21, 2) crop pixels, ``standard`` order.
        keypoints_3d: (B, 21, 3) metres in the crop's orientation (x right, y down, z forward;
            mirrored with the crop), relative to any point of the hand.
        presence: (B,) probability that the crop holds a hand.
        right_prob: (B,) probability of a right hand as seen in the crop (the pipeline turns it
            around for mirrored crops).
    """

    keypoints_2d: Float[Tensor, "B 21 2"]
    keypoints_3d: Float[Tensor, "B 21 3"]
    presence: Float[Tensor, "B"]
    right_prob: Float[Tensor, "B"]


class HandDetector(Protocol):
    def __call__(self, image: Float[Tensor, "3 H W"]) -> Detections:
        """Hand regions of one RGB image in [0, 1]."""


class CropNet(Protocol):
    input_size: int
    """Side of the square input crop, pixels."""
    mirrors_left: bool
    """True: left hands must be given mirrored (the network knows right hands only)."""

    def __call__(self, crops: Float[Tensor, "B 3 S S"]) -> CropPrediction:
        """Predictions for upright RGB crops in [0, 1]."""


@dataclass
class HandsFound(EstimatedHands):
    """What :class:`HandCropPipeline` found in one image: :class:`EstimatedHands` (absent hands:
    NaN keypoints, presence 0; ``boxes``: each hand's final crop), ``right_prob`` (2,) of the
    hands kept (NaN: none) and ``candidates``, the number of hand candidates looked at."""

    right_prob: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    candidates: int = 0


def assign_sides(presence: Tensor, right_prob: Tensor) -> tuple[int | None, int | None]:
    """Indices of the (left, right) hands among N candidates that passed the presence
    threshold (None: no hand on that side). One candidate goes to its likelier side; of
    several, the pair ``(l, r)`` maximising ``presence_l presence_r (1 - p_l) p_r`` is kept (an
    image shows at most one left and one right hand of a person)."""
    n = len(presence)
    if n == 0:
        return None, None
    if n == 1:
        return (None, 0) if float(right_prob[0]) >= 0.5 else (0, None)
    score = (presence * (1 - right_prob))[:, None] * (presence * right_prob)[None, :]  # (left, right)
    score.fill_diagonal_(-1.0)
    l, r = divmod(int(torch.argmax(score)), n)
    return l, r


class HandCropPipeline:
    """Image -> both hands' keypoints through per-hand crops (module docstring).

    Args:
        detector: proposes hand regions (:class:`HandDetector`).
        crop_net: keypoints of one hand per crop (:class:`CropNet`).
        focal: focal length in pixels for images without a camera; else ``focal_factor`` x
            the longer side (:func:`~im2hands.geometry.placement.default_intrinsics`).
        passes: crop-network passes per hand (1, or 2: the second on a crop framed by the
            first's keypoints).
        crop_scale: crop side / the keypoints' extent for the second pass (MediaPipe: 2.0).
        min_presence: hands below this presence are dropped.
        max_candidates: detector regions looked at per search.
        scan: window sides of the crop-network scan, as fractions of the shorter image side
            (``()``: no scan).
        scan_presence: scan windows with at least this presence become candidates.
        probe_angles: rotations (degrees, added to the found hand's) of the crops that look for
            the other hand of a pair around a hand found alone (``()``: none).
        repaint: look again with the found hands painted over.
        dedup_iou: two hands whose keypoint boxes overlap more are one.
        min_size_ratio: a hand whose keypoint box is smaller than this x the largest found one's
            (longer sides) is dropped and the search goes on (0: never; 0.3 measured in docs/estimator.md).
        crop_batch: at most this many crops per crop-network call (a search's crops run in
            even batches of at most this size: on the CPU one call on 26 crops took about 1.5x
            the time per crop of calls on 1-13; docs/benchmarks.md).
        pair_scale: ``own``: each hand is placed with its own predicted metric size; else both
            hands of a pair get one size: the ``geometric`` or ``arithmetic`` mean of theirs, or
            (``best``, the default) that of the hand whose 3D shape fits its 2D keypoints
            better (:func:`~im2hands.geometry.placement.place_pair`; measured in
            docs/estimator.md: with ``pair_depth`` it cuts MRRPE on renders and real photos,
            at the cost of the moved hand's 2D fit).
        pair_depth: with ``pair_scale``, also put the pair's PIP joints at one depth (the better
            fitting hand's for ``best``), each on its own ray.
        pair_depth_range: with ``pair_depth``, move a hand only until within this depth (m) of the other (None: all the way).
        size_measure: the size ``pair_scale`` compares (``palm`` or ``bones``,
            :func:`~im2hands.geometry.placement.hand_size`).
        refiner: optional stage-3 keypoint refinement of the placed keypoints
            (:func:`~im2hands.extraction.keypoints.refine_keypoints`).
        keypoint_net: optional second crop network that gives the final keypoints and sides:
            once the hands are found (by ``crop_net``'s presence, searches and duplicates), each
            is cropped again on its keypoints and this network's keypoints and right-hand
            probability replace ``crop_net``'s (the shipped crop network fine-tuned on our
            renders behind MediaPipe's original, docs/estimator.md).
        flip_average: also read the final crop mirrored and average the two right-hand probabilities.
        keypoint_tta: ``keypoint_net`` also reads the final crop turned by a (degrees) and scaled
            by s for each ``(a, s)``; the keypoints are the reads' per-coordinate median in image terms.
        detector_side: for hands proposed by a detector that tells sides (``Detections.right_prob``,
            e.g. :class:`~im2hands.models.hand_det.HandDetModel`), the weight of its right-hand
            probability in the hand's side; the crop network's gets ``1 - detector_side``.
        detector_presence: hands proposed by such a detector with a score of at least this are
            kept even when the crop network's presence is lower (their presence becomes the
            detector's score); None: the crop network alone decides.
        fallback_detector: a second detector, run after ``detector`` while fewer than two hands
            were found, before the other searches (e.g. MediaPipe's palm detector behind one
            fine-tuned on our renders).
        detector_keypoints: hands the side-telling detector scores at least ``detector_presence``
            are cropped and read by ``keypoint_net`` from the first pass on (``crop_net`` frames
            the others).
    """

    def __init__(
        self,
        detector: HandDetector,
        crop_net: CropNet,
        *,
        focal: float | None = None,
        focal_factor: float = 1.2,
        passes: int = 2,
        crop_scale: float = 2.0,
        min_presence: float = 0.5,
        max_candidates: int = 4,
        scan: tuple[float, ...] = (0.5, 0.75),
        scan_presence: float = 0.3,
        probe_angles: tuple[float, ...] = (60.0, 90.0, 120.0, 180.0, 240.0, 270.0, 300.0),
        repaint: bool = True,
        dedup_iou: float = 0.3,
        min_size_ratio: float = 0.3,
        crop_batch: int = 8,
        pair_scale: str = "best",
        pair_depth: bool = True,
        pair_depth_range: float | None = None,
        size_measure: str = "bones",
        refiner: KeypointRefinement | None = None,
        keypoint_net: CropNet | None = None,
        flip_average: bool = True,
        keypoint_tta: tuple[tuple[float, float], ...] = KEYPOINT_TTA,
        detector_side: float = 0.0,
        detector_presence: float | None = None,
        fallback_detector: HandDetector | None = None,
        detector_keypoints: bool = False,
    ) -> None:
        if passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {passes}")
        if int(crop_batch) < 1:
            raise ValueError(f"crop_batch must be at least 1, got {crop_batch}")
        self.crop_batch = int(crop_batch)
        self.set_pair_scale(pair_scale)
        if size_measure not in HAND_SIZE_MEASURES:
            raise ValueError(f"size_measure must be one of {HAND_SIZE_MEASURES}, got {size_measure!r}")
        self.pair_depth, self.size_measure = bool(pair_depth), size_measure
        self.pair_depth_range = None if pair_depth_range is None else float(pair_depth_range)  # place_pair checks it
        self.detector, self.crop_net = detector, crop_net
        self.focal, self.focal_factor = focal, float(focal_factor)
        self.passes, self.crop_scale = int(passes), float(crop_scale)
        self.min_presence, self.max_candidates = float(min_presence), int(max_candidates)
        self.scan, self.scan_presence = tuple(float(f) for f in scan), float(scan_presence)
        self.probe_angles = tuple(float(a) for a in probe_angles)
        if not 0.0 <= float(min_size_ratio) <= 1.0:
            raise ValueError(f"min_size_ratio must lie in [0, 1], got {min_size_ratio}")
        self.repaint, self.dedup_iou, self.min_size_ratio = bool(repaint), float(dedup_iou), float(min_size_ratio)
        self.refiner = refiner.eval() if refiner is not None else None
        self.keypoint_net, self.flip_average = keypoint_net, bool(flip_average)
        self.keypoint_tta = tuple((float(a), float(f)) for a, f in keypoint_tta)
        self.detector_source: str | None = None  # what found the hands, for the run's record (set by the loader)
        if not 0.0 <= float(detector_side) <= 1.0:
            raise ValueError(f"detector_side must lie in [0, 1], got {detector_side}")
        self.detector_side = float(detector_side)
        self.detector_presence = None if detector_presence is None else float(detector_presence)
        self.fallback_detector = fallback_detector
        self.detector_keypoints = bool(detector_keypoints)

    def set_pair_scale(self, pair_scale: str) -> None:
        """How the two hands of a pair are sized: one of :data:`PAIR_SCALES`."""
        if pair_scale not in PAIR_SCALES:
            raise ValueError(f"pair_scale must be one of {PAIR_SCALES}, got {pair_scale!r}")
        self.pair_scale = pair_scale

    @property
    def keypoint_convention(self) -> str | None:
        """Where the output's PIP and DIP keypoints sit (:mod:`im2hands.hands.conventions`): the
        refiner's training data's when there is one, else that of the network giving the keypoints."""
        if self.refiner is not None:
            return self.refiner.keypoint_convention
        net = self.keypoint_net if self.keypoint_net is not None else self.crop_net
        return getattr(net, "keypoint_convention", None)

    # ------------------------------------------------------------------ steps

    def _predict(self, image: Tensor, roi: Roi, net: CropNet | None = None) -> dict[str, Tensor]:
        """The crop network (or ``net``) on ``roi``, in image terms: ``uv`` (B, 21, 2) pixels, ``rel`` (B, 21,
        3) metres in the camera's orientation relative to the wrist, ``presence`` (B,),
        ``right_prob`` (B,) of the image's hand (mirrored crops turned around)."""
        net = self.crop_net if net is None else net
        size = int(net.input_size)
        n, calls = len(roi), -(-len(roi) // self.crop_batch)
        bounds = [round(i * n / calls) for i in range(calls + 1)]  # even batches
        parts = [net(crop_images(image, roi[torch.arange(a, b)], size)) for a, b in zip(bounds[:-1], bounds[1:])]
        pred = parts[0] if len(parts) == 1 else CropPrediction(*(torch.cat(t) for t in zip(*(
            (p.keypoints_2d, p.keypoints_3d, p.presence, p.right_prob) for p in parts))))  # fmt: skip
        dt = roi.center.dtype
        uv = crop_to_image(pred.keypoints_2d.to(dt), roi, size)
        rel = crop_to_camera_orientation(pred.keypoints_3d.to(dt), roi)
        right = pred.right_prob.to(dt)
        return {"uv": uv, "rel": rel - rel[:, WRIST : WRIST + 1], "presence": pred.presence.to(dt),
                "right_prob": torch.where(roi.flips(), 1.0 - right, right)}  # fmt: skip

    def _reframe(self, image: Tensor, hands: dict[str, Tensor], net: CropNet | None = None) -> tuple[Roi, dict[str, Tensor]]:
        """Crops framed on ``hands``' keypoints (``uv``; side ``crop_scale`` x their extent, mirrored
        by their ``right_prob`` where the network wants it) and ``net``'s (default: the crop
        network's) predictions on them."""
        roi = upright_roi(hands["uv"], scale=self.crop_scale, shift=KEYPOINT_CROP_SHIFT,
                          mirror=self._mirror(hands["right_prob"], len(hands["uv"]), image.device))  # fmt: skip
        return roi, self._predict(image, roi, net)

    def _mirror(self, right_prob: Tensor | None, n: int, device) -> Tensor | None:
        if not self.crop_net.mirrors_left:
            return None
        if right_prob is None:
            return torch.zeros(n, dtype=torch.bool, device=device)
        return right_prob < 0.5

    def _passes(self, image: Tensor, roi: Roi, net: CropNet | None = None) -> tuple[Roi, dict[str, Tensor]]:
        """``net``'s (default: the crop network's) predictions on ``roi``, reframed once on their
        keypoints when ``passes`` is 2."""
        out = self._predict(image, roi, net)
        return self._reframe(image, out, net) if self.passes == 2 else (roi, out)

    def _hands_in(self, image: Tensor, det: Detections) -> dict[str, Tensor]:
        order = torch.argsort(det.scores, descending=True)[: self.max_candidates]
        roi = det.roi[order]
        side = None if det.right_prob is None else det.right_prob[order]
        roi.mirror = self._mirror(side, len(roi), image.device)
        vouched = torch.zeros(len(order), dtype=torch.bool)  # candidates the detector vouches for
        if det.detector_side and self.detector_keypoints and None not in (self.detector_presence, self.keypoint_net):
            vouched = det.scores[order] >= self.detector_presence
        if bool(vouched.any()):  # the keypoint network frames and reads these from the start
            groups = [(torch.nonzero(m)[:, 0], net) for m, net in ((~vouched, None), (vouched, self.keypoint_net)) if bool(m.any())]
            done = [(idx, *self._passes(image, roi[idx], net)) for idx, net in groups]
            back = torch.argsort(torch.cat([idx for idx, _, _ in done]))
            out = {k: torch.cat([o[k] for _, _, o in done])[back] for k in done[0][2]}
            roi = Roi(*(torch.cat([getattr(r, f) for _, r, _ in done])[back] for f in ("center", "size", "angle")))
        else:
            if det.pred is not None and torch.equal(roi.flips(), det.roi[order].flips()):
                out = {k: v[order] for k, v in det.pred.items()}  # the search ran these very crops
            else:
                out = self._predict(image, roi)
            if self.passes == 2:
                roi, out = self._reframe(image, out)
        told = side is not None and det.detector_side
        out["det_right"] = side.to(out["right_prob"]) if told else torch.full_like(out["right_prob"], float("nan"))
        if told and self.detector_presence is not None:
            score = det.scores[order].to(out["presence"])
            out["presence"] = torch.where(score >= self.detector_presence, torch.maximum(out["presence"], score), out["presence"])
        out["right_prob"] = self._with_detector_side(out)
        uv = out["uv"]
        out["box"] = torch.cat([uv.min(1).values, uv.max(1).values], -1)  # (N, 4)
        out["roi"] = torch.cat([roi.center, roi.size[:, None], roi.angle[:, None]], -1)
        return out

    def _with_detector_side(self, hands: dict[str, Tensor]) -> Tensor:
        """The hands' right-hand probabilities with the detector's mixed in (``detector_side``)."""
        det = hands["det_right"]
        if self.detector_side == 0.0:
            return hands["right_prob"]
        mixed = (1.0 - self.detector_side) * hands["right_prob"] + self.detector_side * det
        return torch.where(torch.isnan(det), hands["right_prob"], mixed)

    @staticmethod
    def _cat(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _dedup(self, hands: dict[str, Tensor]) -> dict[str, Tensor]:
        """Hands above ``min_presence`` and at least ``min_size_ratio`` x the largest's size, each
        once: of two whose boxes overlap more than ``dedup_iou`` the less present goes, unless they
        are confidently of different sides with wrists apart by more than a third of the hand
        (interlocked or praying hands)."""
        hands = {k: v[hands["presence"] >= self.min_presence] for k, v in hands.items()}
        extent = (hands["box"][:, 2:] - hands["box"][:, :2]).max(-1).values
        if len(extent):
            big = extent >= self.min_size_ratio * extent.max()
            hands, extent = {k: v[big] for k, v in hands.items()}, extent[big]
        iou = box_iou(hands["box"], hands["box"])
        wrist = hands["uv"][:, WRIST]
        side = hands["right_prob"] - 0.5
        keep: list[int] = []
        for i in torch.argsort(hands["presence"], descending=True).tolist():
            def same(j: int) -> bool:
                distinct = side[i] * side[j] < -0.16 and (wrist[i] - wrist[j]).norm() > extent[j] / 3.0
                return bool(iou[i, j] > self.dedup_iou) and not distinct
            if not any(same(j) for j in keep):
                keep.append(i)
        idx = torch.as_tensor(keep, dtype=torch.long)
        return {k: v[idx] for k, v in hands.items()}

    def _probe(self, image: Tensor, found: dict[str, Tensor]) -> Detections:
        """Candidates for the other hand of a pair, where one was found: the found hand's region
        (1.2x) at ``probe_angles`` more rotations; crops whose hand passes ``scan_presence`` and
        is of the other side. The crop network looks for an upright hand, so turning the crop
        makes it pick a hand pointing another way (interlocked fingers, a hand over the other)."""
        if len(found["presence"]) != 1 or not self.probe_angles:
            return Detections.empty()
        c, size, angle = found["roi"][0, :2], found["roi"][0, 2] * 1.2, found["roi"][0, 3]
        angles = angle + torch.tensor(self.probe_angles, dtype=c.dtype) * (np.pi / 180.0)
        n = len(angles)
        roi = Roi(c.expand(n, 2).clone(), size.expand(n).clone(), angles)
        roi.mirror = self._mirror(None, n, image.device)
        out = self._predict(image, roi)
        other = (out["right_prob"] - 0.5) * (found["right_prob"][0] - 0.5) < 0
        keep = torch.nonzero((out["presence"] >= self.scan_presence) & other)[:, 0]
        return Detections(roi[keep], out["presence"][keep], out["right_prob"][keep], {k: v[keep] for k, v in out.items()})

    def _scan(self, image: Tensor) -> Detections:
        """Candidates from the crop network on overlapping axis-aligned windows (``scan``)."""
        roi = square_windows(image.shape[1], image.shape[2], self.scan)
        if len(roi) == 0:
            return Detections.empty()
        roi.mirror = self._mirror(None, len(roi), image.device)
        out = self._predict(image, roi)
        keep = torch.nonzero(out["presence"] >= self.scan_presence)[:, 0]
        return Detections(roi[keep], out["presence"][keep], None, {k: v[keep] for k, v in out.items()})

    def place(self, keypoints_2d: np.ndarray, rel: np.ndarray, K: np.ndarray, valid: np.ndarray):
        """Both hands in the camera frame (step 5): ``keypoints_2d`` (2, 21, 2) pixels, ``rel``
        (2, 21, 3) wrist-relative metres in the camera's orientation, ``valid`` (2,); a pair
        consistently (``pair_scale``, ``pair_depth``, ``pair_depth_range``). Returns the batch-1
        :class:`~im2hands.geometry.placement.Placement`."""
        rel_t, ok = torch.from_numpy(np.asarray(rel, np.float64))[None], torch.from_numpy(np.asarray(valid, bool))[None]
        uv = torch.from_numpy(np.nan_to_num(np.asarray(keypoints_2d, np.float64)))[None]
        return place_pair(uv, rel_t, torch.from_numpy(np.asarray(K, np.float64))[None], valid=ok, scale=self.pair_scale,
                          same_depth=self.pair_depth, depth_range=self.pair_depth_range,
                          measure=self.size_measure)  # fmt: skip

    def _keypoints_again(self, image: Tensor, found: dict[str, Tensor]) -> dict[str, Tensor]:
        """The hands found, their keypoints and right-hand probabilities from ``keypoint_net`` on
        crops framed by the found keypoints (which hands there are stays ``crop_net``'s)."""
        roi, out = self._reframe(image, found, self.keypoint_net)
        if self.flip_average:
            flipped = self._predict(image, Roi(roi.center, roi.size, roi.angle, ~roi.flips()), self.keypoint_net)
            out = {**out, "right_prob": (out["right_prob"] + flipped["right_prob"]) / 2}
        if self.keypoint_tta:  # the same crop turned and scaled, in one batch; per-coordinate median in image terms
            a, f = (torch.tensor(v, dtype=roi.size.dtype) for v in zip(*self.keypoint_tta))
            n, k = len(roi), len(a)
            more = self._predict(image, Roi(roi.center.repeat(k, 1), (roi.size[None] * f[:, None]).reshape(-1), (
                roi.angle[None] + a[:, None] * (np.pi / 180.0)).reshape(-1), roi.flips().repeat(k)), self.keypoint_net)
            out = {**out, **{q: torch.cat([out[q][None], more[q].reshape(k, n, 21, -1)]).median(0).values for q in ("uv", "rel")}}
        again = {**found, "uv": out["uv"], "rel": out["rel"], "right_prob": out["right_prob"]}
        return {**again, "right_prob": self._with_detector_side(again)}

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(self, image: np.ndarray, K: np.ndarray | None = None) -> HandsFound:
        """Hands in an ``(H, W, 3)`` uint8 RGB image with intrinsics ``K`` (or the default)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        h, w = image.shape[:2]
        if K is None:
            K = default_intrinsics(h, w, self.focal_factor, focal=self.focal, dtype=torch.float64).numpy()
        K = np.asarray(K, np.float64)
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        parts: list[dict[str, Tensor]] = []
        found: dict[str, Tensor] = {"presence": torch.zeros(0)}
        searches = [lambda: self.detector(t)]
        if self.fallback_detector is not None:
            searches.append(lambda: self.fallback_detector(t))
        if self.scan:
            searches.append(lambda: self._scan(t))
        searches.append(lambda: self._probe(t, found))
        if self.repaint:  # only when something was found: painting nothing repeats the first search
            searches.append(lambda: self.detector(paint_over_boxes(t, found["box"])) if "box" in found else Detections.empty())
        for search in searches:
            det = search()
            if len(det.roi) > 0:
                parts.append(self._hands_in(t, det))
                found = self._dedup(self._cat(parts))
            if len(found["presence"]) >= 2:
                break
        candidates = sum(len(p["presence"]) for p in parts)
        keypoints_2d = np.full((2, 21, 2), np.nan)
        rel = np.zeros((2, 21, 3))
        presence, right_prob = np.zeros(2), np.full(2, np.nan)
        boxes: dict[str, tuple[float, float, float, float]] = {}
        if len(found["presence"]) and self.keypoint_net is not None:
            found = self._keypoints_again(t, found)
        if len(found["presence"]):
            sides = assign_sides(found["presence"], found["right_prob"])
            for s, i in enumerate(sides):
                if i is None:
                    continue
                keypoints_2d[s] = found["uv"][i].double().numpy()
                rel[s] = found["rel"][i].double().numpy()
                presence[s] = float(found["presence"][i])
                right_prob[s] = float(found["right_prob"][i])
                boxes[SIDES[s]] = tuple(float(x) for x in found["roi"][i])
        valid = presence > 0
        keypoints = np.full((2, 21, 3), np.nan)
        reproj = np.full(2, np.nan)
        if valid.any():
            placed = self.place(keypoints_2d, rel, K, valid)
            keypoints = np.where(valid[:, None, None], placed.keypoints[0].numpy(), np.nan)
            reproj = np.where(valid, placed.reprojection_px[0].numpy(), np.nan)
        refined = self.refiner is not None and bool(valid.any())
        if refined:
            stand_in = keypoints.copy()
            for s in range(2):
                if not valid[s]:
                    stand_in[s] = placeholder_hand(keypoints[1 - s], SIDES[s])
            keypoints = np.where(valid[:, None, None], refine_keypoints(self.refiner, image, K, stand_in, valid), np.nan)
        joints = {SIDES[s]: keypoints[s].copy() for s in range(2) if valid[s]}
        return HandsFound(joints=joints, K=K, keypoints=keypoints, keypoints_2d=keypoints_2d, presence=presence,
                          right_prob=right_prob, boxes=boxes, reprojection_px=reproj, candidates=candidates,
                          refined=refined)  # fmt: skip
