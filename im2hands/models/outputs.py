"""Typed training outputs of the keypoint stages: what ``forward`` returns and ``compute_loss`` /
``metrics`` read, instead of string-keyed dicts such as ``out[f"heatmaps_it{t}"]``.

Shapes use ``2`` for the hand axis (``LEFT = 0``, ``RIGHT = 1``), ``21`` for the ``standard``
joints, ``h x w`` for the estimator's heatmap resolution (``S/4``); camera frame, metres, pixels
of the input image. Loss and metric names stay strings (they are logged), and the parameters
and state dicts do not change with these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from im2hands.typing import Float, Tensor

__all__ = ["EstimatorIteration", "EstimatorOutputs", "RefinerOutputs"]


@dataclass
class EstimatorIteration:
    """One iteration ``t`` of the keypoint estimator (``t = 0``: the encoder's own heads, which
    predict no 3D joints, presence or relative translation: those are None there).

    Attributes:
        heatmaps: ``(B, 2, 21, h, w)`` logits.
        keypoints_2d: ``(B, 2, 21, 2)`` soft-argmax joints, input pixels.
        masks_amodal_logits, masks_visible_logits: ``(B, 2, h, w)``.
        keypoints_3d: ``(B, 2, 21, 3)`` wrist-relative joints, camera orientation, metres.
        presence_logits: ``(B, 2)``.
        rel_translation: ``(B, 3)`` left wrist minus right wrist, metres.
    """

    heatmaps: Float[Tensor, "B 2 21 h w"]
    keypoints_2d: Float[Tensor, "B 2 21 2"]
    masks_amodal_logits: Float[Tensor, "B 2 h w"]
    masks_visible_logits: Float[Tensor, "B 2 h w"]
    keypoints_3d: Optional[Float[Tensor, "B 2 21 3"]] = None
    presence_logits: Optional[Float[Tensor, "B 2"]] = None
    rel_translation: Optional[Float[Tensor, "B 3"]] = None


@dataclass
class EstimatorOutputs:
    """The keypoint estimator's ``forward``: every iteration (``iterations[0]`` .. ``iterations[T]``)
    and, in eval mode with the batch's ``K``, the placed keypoints. The final iteration's values
    are also properties (``out.keypoints_2d`` is ``out.iterations[-1].keypoints_2d``).

    Attributes:
        iterations: ``T + 1`` :class:`EstimatorIteration`.
        keypoints: ``(B, 2, 21, 3)`` absolute camera-frame keypoints (placed), or None.
        wrist: ``(B, 2, 3)`` the placed wrists, or None.
    """

    iterations: list[EstimatorIteration] = field(default_factory=list)
    keypoints: Optional[Float[Tensor, "B 2 21 3"]] = None
    wrist: Optional[Float[Tensor, "B 2 3"]] = None

    @property
    def final(self) -> EstimatorIteration:
        return self.iterations[-1]

    @property
    def keypoints_2d(self) -> Float[Tensor, "B 2 21 2"]:
        return self.final.keypoints_2d

    @property
    def keypoints_3d(self) -> Float[Tensor, "B 2 21 3"]:
        return self.final.keypoints_3d

    @property
    def presence_logits(self) -> Float[Tensor, "B 2"]:
        return self.final.presence_logits

    @property
    def rel_translation(self) -> Float[Tensor, "B 3"]:
        return self.final.rel_translation

    @property
    def masks_amodal_logits(self) -> Float[Tensor, "B 2 h w"]:
        return self.final.masks_amodal_logits

    @property
    def masks_visible_logits(self) -> Float[Tensor, "B 2 h w"]:
        return self.final.masks_visible_logits


@dataclass
class RefinerOutputs:
    """The keypoint refiner's ``forward``: ``keypoints`` (refined) and ``keypoints_noisy`` (its
    input), both ``(B, 2, 21, 3)`` camera-frame metres."""

    keypoints: Float[Tensor, "B 2 21 3"]
    keypoints_noisy: Float[Tensor, "B 2 21 3"]
