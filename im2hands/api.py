"""The Python API: one import, one call from an image to two hands.

```python
from im2hands import HandReconstructor

rec = HandReconstructor.from_pretrained(device="cpu")   # shipped weights, MediaPipe's hand networks
out = rec("photo.jpg", K=None)          # path, PIL image or (H, W, 3) uint8 array; K (3, 3) or None
out.left.mesh, out.right.mesh           # trimesh.Trimesh in the camera frame, metres (None: no hand)
out.left.keypoints                      # (21, 3) standard order, camera frame, metres (None: no hand)
out.overlay()                           # PIL image: the input | the meshes drawn over it
rec("photo.jpg", keypoints=kp)          # given keypoints (a dict like a keypoint file) skip the estimator
rec.batch(["a.jpg", "b.jpg"])           # several images, the encoder run once on all
```

It runs what ``im2hands extract`` runs per item (the same functions: image reading, hand
finding, placement, stage 1/2, MISE + marching cubes) and writes no file. ``K`` defaults to a
focal length of 1.2 x the longer image side with the principal point at the image centre
(``focal=`` at construction sets another focal length). Bad inputs raise
:class:`~im2hands.utils.errors.Im2HandsError` subclasses with the CLI's messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from im2hands.hands.constants import SIDES
from im2hands.utils.errors import DataError, Im2HandsError

__all__ = ["Hand", "HandReconstructor", "Reconstruction"]


@dataclass
class Hand:
    """One hand of a :class:`Reconstruction`; both fields None when the hand was not found."""

    mesh: Any = None
    """``trimesh.Trimesh``, camera frame (OpenCV), metres; watertight."""
    keypoints: np.ndarray | None = None
    """``(21, 3)`` float64, ``standard`` order, camera frame, metres."""


@dataclass
class Reconstruction:
    """Both hands of one image, and what they were made from."""

    left: Hand
    right: Hand
    K: np.ndarray
    """``(3, 3)`` intrinsics used (given or the default)."""
    image: np.ndarray = field(repr=False)
    """``(H, W, 3)`` uint8 RGB input, upright."""
    keypoints_source: str = "estimator"
    """``estimator`` (found in the image), ``refined`` or ``given``."""
    regions: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """Per side found: ``(center_u, center_v, size, angle)`` of the crop it was found in."""
    _item: Any = field(default=None, repr=False)
    _extraction: Any = field(default=None, repr=False)

    def overlay(self):
        """The input next to the meshes drawn over it (regions and sides marked) as a PIL image."""
        from PIL import Image

        from im2hands.extraction.overlay import overlay_picture

        return Image.fromarray(overlay_picture(self._item, self._extraction))


def _as_image(image: Any) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from a path, a PIL image or an array (checked as ``extract`` does)."""
    from PIL import Image, ImageOps

    from im2hands.extraction.inputs import check_image_size, read_input_image

    if isinstance(image, (str, os.PathLike)):
        return read_input_image(Path(image))
    if isinstance(image, Image.Image):
        image = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise DataError(f"image: expected a path, a PIL image or a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise DataError(f"image: expected an (H, W, 3) uint8 RGB array, got shape {image.shape} and dtype {image.dtype}")
    return check_image_size(np.ascontiguousarray(image[..., :3]), "image")


class HandReconstructor:
    """Image (and optional camera and keypoints) -> both hands' meshes and keypoints.

    Args:
        model: a hands model (stage 2 or a stage 1 that reads images) or its run folder /
            checkpoint / weights file.
        estimator: how hands are found: None (the default: per-hand crops with the shipped
            fine-tuned crop network, :func:`~im2hands.extraction.estimators.default_estimator`),
            ``"mediapipe"`` (MediaPipe's networks alone), a crop-network (crop_net) or whole-image
            estimator (kpts_est) run / weights file, or a ready pipeline object.
        refiner: optional stage-3 refinement run / weights file (None: none).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        focal: focal length in pixels for images given without ``K``.
        pair_scale: sizing of a found pair by the per-hand crop pipeline (``own``, ``geometric``,
            ``arithmetic``, ``best``; None: ``best``); docs/estimator.md.
        detector: how a ``crop_net`` estimator finds hands: a ``hand_det`` run / weights file or
            ``"mediapipe"``; None: the shipped ``hand_det.pt``.
        resolution, upsampling_steps, threshold: the mesh extractor's settings (as ``extract``).
        precision: decoding precision, ``auto``, ``float32`` or ``bfloat16`` (as ``extract
            --precision``; ``auto``: bfloat16 on CPUs with native bfloat16 dot products).
        keypoint_convention: where the PIP/DIP of given ``keypoints`` sit (``mano`` or
            ``annotation``; None: the model's); given and found keypoints are moved to the
            model's convention.
    """

    def __init__(self, model: Any, *, estimator: Any = None, refiner: Any = None, device: str = "cpu",
                 focal: float | None = None, resolution: int = 32, upsampling_steps: int = 3,
                 threshold: float | None = None, keypoint_convention: str | None = None,
                 pair_scale: str | None = None, detector: Any = None, precision: str = "auto") -> None:  # fmt: skip
        from im2hands.extraction.extractor import PRECISIONS, Extractor
        from im2hands.extraction.estimators import default_estimator, load_estimator
        from im2hands.extraction.run import check_mesh_options, resolve_device
        from im2hands.loading import load_model
        from im2hands.models.base import HandsModel

        check_mesh_options(threshold=threshold, focal=focal, resolution=resolution, upsampling_steps=upsampling_steps)
        if precision not in PRECISIONS:
            raise Im2HandsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if keypoint_convention not in (None, "mano", "annotation"):
            raise Im2HandsError(f"keypoint_convention must be mano or annotation, got {keypoint_convention!r}")
        self.keypoint_convention = keypoint_convention
        self.device = resolve_device(device)
        if isinstance(model, (str, os.PathLike)):
            model, _ = load_model(model, device=self.device, occupancy=True)
        elif not isinstance(model, HandsModel):
            raise Im2HandsError(f"model: expected a run folder, a checkpoint or a HandsModel, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        if self.model.needs_ground_truth:
            raise Im2HandsError("model: this model needs ground-truth meshes (a test stand-in), not images")
        self.focal = focal
        estimator = default_estimator() if estimator is None else estimator
        self.pipeline, _ = load_estimator(estimator, refiner, self.device, focal, pair_scale, detector)
        self.extractor = Extractor(self.model, resolution0=resolution, upsampling_steps=upsampling_steps,
                                   threshold=threshold, device=self.device, precision=precision)  # fmt: skip

    @classmethod
    def from_pretrained(cls, device: str = "cpu", **kwargs: Any) -> "HandReconstructor":
        """The shipped weights (stage 2 with its stage 1) and the default hand finding."""
        from im2hands.loading import shipped_path

        return cls(shipped_path("model"), device=device, **kwargs)

    @classmethod
    def from_run(cls, model: str | os.PathLike, *, estimator: Any = None, refiner: Any = None,
                 device: str = "cpu", **kwargs: Any) -> "HandReconstructor":  # fmt: skip
        """Your own trained runs (folders or checkpoint / weights files)."""
        return cls(model, estimator=estimator, refiner=refiner, device=device, **kwargs)

    @torch.no_grad()
    def __call__(self, image: Any, K: Any = None, keypoints: dict | None = None) -> Reconstruction:
        """Reconstruct both hands of one image (module docstring).

        Args:
            image: path, PIL image, or ``(H, W, 3)`` uint8 RGB array.
            K: ``(3, 3)`` intrinsics in pixels of ``image``, or None (``keypoints``' camera, else
                the default).
            keypoints: a dict like a keypoint file (docs/keypoints_format.md): given keypoints,
                no estimation.

        Raises:
            DataError: a bad image, camera or keypoints, or no hand found.
        """
        return self.batch([image], [K], [keypoints])[0]

    @torch.no_grad()
    def batch(self, images: Sequence[Any], Ks: Sequence[Any] | None = None,
              keypoints: Sequence[dict | None] | None = None) -> list[Reconstruction]:  # fmt: skip
        """:meth:`__call__` for several images (``Ks`` and ``keypoints``: one per image, or
        None): hands are found image by image, the model's encoder runs once on all of them."""
        from im2hands.extraction.run import batch_from_item
        from im2hands.utils.batch import select_item

        n = len(images)
        Ks = [None] * n if Ks is None else list(Ks)
        keypoints = [None] * n if keypoints is None else list(keypoints)
        if len(Ks) != n or len(keypoints) != n:
            raise Im2HandsError(f"batch: {n} images but {len(Ks)} cameras and {len(keypoints)} keypoint sets")
        items = [self._item(image, K, kp) for image, K, kp in zip(images, Ks, keypoints)]
        size = self.model.image_size if self.model.uses_image else None
        batches = [batch_from_item(item, image_size=size, crop=True) for item in items]
        stacked = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        features = self.extractor.encode(stacked)
        return [self._reconstruction(item, self.extractor.extract(b, features=select_item(features, i, n)))
                for i, (item, b) in enumerate(zip(items, batches))]  # fmt: skip

    def _item(self, image: Any, K: Any, keypoints: dict | None):
        """The extraction item of one image: its pixels, camera and keypoints (given or found)."""
        from im2hands.data.files import _check_K, parse_keypoints
        from im2hands.extraction.inputs import Item, assemble_hands, move_joints

        pixels = _as_image(image)
        if K is not None:
            K = np.asarray(K, dtype=np.float64)
            if K.shape != (3, 3):
                raise DataError(f"K: expected a (3, 3) matrix, got shape {K.shape}")
            _check_K(K, "K")
        if keypoints is not None:
            parsed = parse_keypoints(keypoints, where="keypoints")
            K = K if K is not None else parsed.K
            if K is None:
                from im2hands.geometry.placement import default_intrinsics

                h, w = pixels.shape[:2]
                K = default_intrinsics(h, w, focal=self.focal, dtype=torch.float64).numpy()
            joints, source, regions = parsed.joints, "file", {}
            joints = move_joints(joints, self.keypoint_convention or self.model.keypoint_convention,
                                 self.model.keypoint_convention)
        else:
            found = self.pipeline(pixels, K)
            if not found.joints:
                raise DataError("image: no hand found")
            joints, K, source, regions = found.joints, found.K, ("refined" if found.refined else "estimator"), found.boxes
            joints = move_joints(joints, getattr(self.pipeline, "keypoint_convention", None),
                                 self.model.keypoint_convention)
        kp, present = assemble_hands("image", joints)
        return Item(name="image", keypoints=kp, present=present, K=np.asarray(K, np.float64), image=pixels,
                    keypoints_source=source, regions=dict(regions))  # fmt: skip

    @staticmethod
    def _reconstruction(item: Any, extraction: Any) -> Reconstruction:
        hands = {}
        for s, side in enumerate(SIDES):
            r = extraction.hands[side]
            present = item.present[s]
            mesh = _trimesh(r.vertices, r.faces) if present and r.status == "ok" else None
            hands[side] = Hand(mesh=mesh, keypoints=np.array(item.keypoints[s]) if present else None)
        source = "given" if item.keypoints_source == "file" else item.keypoints_source
        return Reconstruction(left=hands["left"], right=hands["right"], K=item.K, image=item.image,
                              keypoints_source=source, regions=dict(item.regions), _item=item,
                              _extraction=extraction)  # fmt: skip


def _trimesh(vertices: np.ndarray, faces: np.ndarray):
    import trimesh

    return trimesh.Trimesh(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int64), process=False)
