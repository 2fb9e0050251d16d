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

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import nn

from im2hands.geometry.placement import DEFAULT_FOCAL_FACTOR
from im2hands.typing import Bool, Float, Tensor

DEFAULT_DECODE_BYTES_PER_POINT = 4096
"""Decode memory per query point (bytes) assumed for a model that declares no other."""


class HandsModel(nn.Module):
    """Base class of every stage: what the trainer, the extractor and the loaders may ask of a model.

    Subclasses implement:

    - ``encode(batch) -> features``: everything that depends on the image and keypoints only
      (run once per image, e.g. by the mesh extractor);
    - ``decode(points, features) -> Tensor``: occupancy probabilities ``(B, 2, N)`` for
      camera-frame query points ``(B, 2, N, 3)`` (occupancy stages, which also set
      ``decodes_occupancy = True``; keypoint stages leave it unimplemented);
    - ``forward(batch)``: the training/validation outputs, which only the model's own
      ``compute_loss`` and ``metrics`` read: a dict of tensors (occupancy stages) or a typed
      dataclass (the keypoint stages: :mod:`im2hands.models.outputs`);
    - ``compute_loss(batch, outputs) -> dict[str, Tensor]``: must hold ``"loss"``, the total
      to minimise; other entries are logged;
    - ``metrics(batch, outputs) -> dict[str, float]``: validation numbers (e.g. ``iou``,
      ``mpjpe_mm``); the trainer averages them over the validation set;
    - ``from_config(cfg)`` (classmethod): build from an ``ExperimentConfig``;
      ``from_checkpoint(cfg, state)`` (classmethod) rebuilds from a checkpoint and defaults to
      ``from_config(cfg)``.

    Declared capabilities (class attributes, or properties where they depend on the instance);
    nothing outside the models probes a model for anything else:

    Attributes:
        stage: short name (``init_occ``, ``ref_occ``, ``kpts_ref``...).
        val_metric: the metric that selects the best checkpoint; ``val_mode``: ``max`` or ``min``.
        data_fields: dataset fields training needs (``image``, ``masks``, ``mesh``,
            ``occupancy``...); None: all of them.
        uses_image: whether ``encode`` / ``forward`` read ``batch["image"]``.
        image_size: the side (pixels) of the square input image the model expects; None
            without an image.
        decodes_occupancy: whether ``decode`` gives occupancy (the model can make meshes).
        threshold: the occupancy iso-level of the surface.
        decode_bytes_per_point: decode memory per query point, for the extractor's memory cap.
        needs_ground_truth: ``encode`` reads the batch's ground-truth meshes (``vertices``,
            ``faces``): the extraction stand-ins only.
        find_unused_parameters: ``forward`` leaves some trainable parameters unused in some
            steps (distributed training then searches for them).
        init_occ_config: the resolved config (YAML text) of a frozen stage-1 model inside this
            one, written beside extraction outputs; None: there is none.
        keypoint_convention: where the PIP and DIP keypoints of the training data sit
            (``"mano"`` or ``"annotation"``, :mod:`im2hands.hands.conventions`); set from the
            checkpoint's recorded hand model by :func:`im2hands.loading.load_model`; the
            extraction moves its input keypoints to it. None (a model not loaded from a
            checkpoint, e.g. the ground-truth stand-ins): keypoints are used as they come.
    """

    stage: ClassVar[str] = "base"
    val_metric: ClassVar[str] = "loss"
    val_mode: ClassVar[str] = "min"
    data_fields: ClassVar[Optional[tuple[str, ...]]] = None
    uses_image: bool = False
    decodes_occupancy: ClassVar[bool] = False
    threshold: float = 0.5
    decode_bytes_per_point: float = DEFAULT_DECODE_BYTES_PER_POINT
    needs_ground_truth: ClassVar[bool] = False
    find_unused_parameters: ClassVar[bool] = False
    init_occ_config: Optional[str] = None
    keypoint_convention: Optional[str] = None

    @property
    def image_size(self) -> Optional[int]:
        """Side of the square input image, pixels (None: the model reads no image)."""
        return None

    def encode(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def decode(self, points: torch.Tensor, features: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not decode occupancy")

    def compute_loss(self, batch: dict[str, Any], outputs: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def metrics(self, batch: dict[str, Any], outputs: Any) -> dict[str, float]:
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

    @classmethod
    def from_checkpoint(cls, cfg: Any, state: Mapping[str, Any]) -> "HandsModel":
        """The untrained model a checkpoint holds, before its weights are loaded.

        Args:
            cfg: the ExperimentConfig stored in the checkpoint.
            state: the checkpoint's ``model`` state_dict (a model whose architecture needs more
                than its config reads it here; stage 2 reads its stage-1 config).

        The default is ``from_config(cfg)``.
        """
        return cls.from_config(cfg)

    def initialize_from_config(self, cfg: Any) -> list[str]:
        """Training-time initialisation from other trained weights named in the config (e.g.
        stage 1's decoders from a keypoint-only run). The trainer calls it for a fresh run only:
        never on resume, and never when a trained model is rebuilt from its checkpoint, so a run
        does not depend on the files it started from. Returns what was loaded, one line each.
        The default loads nothing."""
        return []


# --------------------------------------------------------------------------- keypoint stages


@dataclass
class KeypointEstimate:
    """What a keypoint estimator finds in a batch of images (``2``: hand axis, left first).

    Attributes:
        keypoints_2d: ``(B, 2, 21, 2)`` joints, pixels of the input image.
        keypoints_3d: ``(B, 2, 21, 3)`` joints relative to each hand's wrist, camera orientation, metres.
        presence_logits: ``(B, 2)`` hand presence logits.
        rel_translation: ``(B, 3)`` left wrist minus right wrist, camera frame, metres.
        keypoints: ``(B, 2, 21, 3)`` absolute camera-frame keypoints, metres (placed for the
            batch's ``K``); None when the batch has no ``K``.
    """

    keypoints_2d: Float[Tensor, "B 2 21 2"]
    keypoints_3d: Float[Tensor, "B 2 21 3"]
    presence_logits: Float[Tensor, "B 2"]
    rel_translation: Float[Tensor, "B 3"]
    keypoints: Optional[Float[Tensor, "B 2 21 3"]] = None


class KeypointEstimator(HandsModel):
    """Interface of an image -> keypoints model (the ``kpts_est`` stage), as the image-to-keypoints
    pipeline (:class:`~im2hands.extraction.keypoints.KeypointPipeline`) uses it.

    Subclasses implement ``estimate(batch) -> KeypointEstimate`` for ``image`` ``(B, 3, S, S)``
    in [0, 1] and ``K`` ``(B, 3, 3)`` of that image, and set:

    Attributes:
        presence_threshold: presence probability above which a hand counts as found.
        default_focal_factor: focal length of an image without a camera, times its longer side.
        passes: image passes of the pipeline (1: the whole image; 2: then a crop around the hands).
    """

    uses_image = True
    presence_threshold: float = 0.5
    default_focal_factor: float = DEFAULT_FOCAL_FACTOR
    passes: int = 1

    def estimate(self, batch: dict[str, Any]) -> KeypointEstimate:
        raise NotImplementedError


class KeypointRefinement(HandsModel):
    """Interface of a keypoint refinement model (the ``kpts_ref`` stage): ``encode(batch)`` reads
    ``image`` ``(B, 3, S, S)`` and ``K`` ``(B, 3, 3)``; ``refine(keypoints, features, hand_valid)``
    maps ``(B, 2, 21, 3)`` camera-frame keypoints (metres, ``standard`` order) to refined ones."""

    uses_image = True

    def refine(
        self,
        keypoints: Float[Tensor, "B 2 21 3"],
        features: Any,
        hand_valid: Optional[Bool[Tensor, "B 2"]] = None,
    ) -> Float[Tensor, "B 2 21 3"]:
        raise NotImplementedError
