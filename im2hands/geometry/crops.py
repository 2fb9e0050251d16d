"""Rotated square crops of an image: the frame change between image pixels and crop pixels.

A region of interest (:class:`Roi`) is a square in the image given by its centre ``(cx, cy)``
and side ``size`` (image pixels) and an angle ``theta`` (radians). Cut out and resampled to
``S x S`` pixels it gives a crop in which the region's "up" is the crop's up (``-v``). Pixel
coordinates follow the camera convention of :mod:`im2hands.geometry.frames` (``u`` right, ``v``
down, origin at the top-left pixel's corner, pixel centres at ``+0.5``) in both images.

Crop pixel ``q`` and image pixel ``p`` are related by::

    p = c + (size / S) R(theta) (q - S / 2),      R(theta) = [[cos, -sin], [sin, cos]]

so ``theta = 0`` is an axis-aligned crop and ``theta = atan2(d_u, -d_v)`` turns the image
direction ``d`` into the crop's up: :func:`roi_angle` gives it for the wrist -> middle-finger
direction of a hand, which makes the hand upright in its crop (what MediaPipe's hand-landmark
network expects). :func:`crop_matrix` is the ``(2, 3)`` affine map image -> crop,
:func:`crop_intrinsics` the crop's camera for an image camera ``K`` (exact for ``theta = 0``;
a rotated crop's camera is ``K`` followed by an in-plane rotation, also exact, see there).

Pure tensor functions (batched over ROIs, any device); no configs, no models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from im2hands.geometry.frames import MIDDLE_MCP, WRIST
from im2hands.typing import Bool, Float, Tensor

__all__ = [
    "Roi",
    "box_iou",
    "crop_matrix",
    "crop_images",
    "paint_over_boxes",
    "crop_intrinsics",
    "square_roi",
    "square_crop_intrinsics_np",
    "crop_to_camera_orientation",
    "crop_to_image",
    "image_to_crop",
    "roi_angle",
    "roi_from_points",
    "square_windows",
    "suppress_overlaps",
    "tile_centres",
    "upright_roi",
    "rotate_xy",
    "KEYPOINT_CROP_SHIFT",
]

KEYPOINT_CROP_SHIFT = (0.0, -0.1)
"""``shift`` of a hand crop framed on its keypoints (:func:`upright_roi`): the keypoints' box moved
10 % towards the fingers, as the crop pipeline frames its second pass and the crop network's
training crops are framed."""


@dataclass
class Roi:
    """Square regions of interest, batched: centre ``(B, 2)`` and side ``(B,)`` in image pixels,
    angle ``(B,)`` in radians (see the module docstring); ``mirror`` ``(B,)`` bool (or None:
    none) flips those crops left-right (``u -> S - u``), so a left hand looks like a right one."""

    center: Float[Tensor, "B 2"]
    size: Float[Tensor, "B"]
    angle: Float[Tensor, "B"]
    mirror: Bool[Tensor, "B"] | None = None

    def __len__(self) -> int:
        return int(self.center.shape[0])

    def __getitem__(self, index) -> "Roi":
        idx = torch.as_tensor(index, device=self.center.device).reshape(-1)
        mirror = None if self.mirror is None else self.mirror[idx]
        return Roi(self.center[idx], self.size[idx], self.angle[idx], mirror)

    def flips(self) -> Bool[Tensor, "B"]:
        """``(B,)`` which crops are mirrored."""
        if self.mirror is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.center.device)
        return self.mirror.to(torch.bool)


def _rotation(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (B, 2, 2)


def rotate_xy(points: Float[Tensor, "B N D"], angle: Float[Tensor, "B"]) -> Float[Tensor, "B N D"]:
    """Rotate the first two coordinates of ``points`` by ``R(angle)`` (the crop -> image
    rotation); further coordinates (e.g. depth) are kept. Turns a crop-oriented 3D prediction
    (x right, y down in the crop) into the image's orientation."""
    R = _rotation(angle.to(points.dtype))  # (B, 2, 2)
    xy = points[..., :2] @ R.transpose(-1, -2)
    return torch.cat([xy, points[..., 2:]], -1)


def crop_to_camera_orientation(points: Float[Tensor, "B N 3"], roi: Roi) -> Float[Tensor, "B N 3"]:
    """3D points predicted in crop orientation (x right, y down, z forward in the crop; mirrored
    where the crop is) -> the camera's orientation: un-mirror ``x``, then :func:`rotate_xy`."""
    sign = 1.0 - 2.0 * roi.flips().to(points.dtype)  # (B,)
    unmirrored = torch.cat([points[..., :1] * sign[:, None, None], points[..., 1:]], -1)
    return rotate_xy(unmirrored, roi.angle)


def crop_matrix(roi: Roi, out_size: int) -> Float[Tensor, "B 2 3"]:
    """``(B, 2, 3)`` affine map from image pixels to crop pixels of an ``out_size`` crop."""
    k = out_size / roi.size  # (B,) crop pixels per image pixel
    Rt = _rotation(roi.angle).transpose(-1, -2) * k[:, None, None]  # (B, 2, 2)
    t = out_size / 2.0 - (Rt @ roi.center[..., None])[..., 0]  # (B, 2)
    A = torch.cat([Rt, t[..., None]], -1)
    flip = roi.flips()
    if flip.any():  # u -> S - u on the mirrored crops
        mirrored = torch.cat([-A[:, :1], A[:, 1:]], 1)
        mirrored[:, 0, 2] += out_size
        A = torch.where(flip[:, None, None], mirrored, A)
    return A


def image_to_crop(points: Float[Tensor, "B N 2"], roi: Roi, out_size: int) -> Float[Tensor, "B N 2"]:
    """Image pixels -> crop pixels (``points[b]`` belongs to ``roi[b]``)."""
    A = crop_matrix(roi, out_size).to(points.dtype)
    return points @ A[:, :, :2].transpose(-1, -2) + A[:, None, :, 2]


def crop_to_image(points: Float[Tensor, "B N 2"], roi: Roi, out_size: int) -> Float[Tensor, "B N 2"]:
    """Crop pixels -> image pixels (the inverse of :func:`image_to_crop`)."""
    flip = roi.flips()[:, None, None]
    q = torch.where(flip, torch.cat([out_size - points[..., :1], points[..., 1:]], -1), points)
    scale = (roi.size / out_size).to(points.dtype)
    R = _rotation(roi.angle.to(points.dtype))
    return (q - out_size / 2.0) @ R.transpose(-1, -2) * scale[:, None, None] + roi.center[:, None].to(points.dtype)


def crop_intrinsics(K: Float[Tensor, "B 3 3"], roi: Roi, out_size: int) -> Float[Tensor, "B 3 3"]:
    """Intrinsics of the crops: ``K_crop = [A; 0 0 1] K`` with ``A`` = :func:`crop_matrix`.

    For ``angle = 0`` this is an ordinary pinhole camera (scaled focal lengths, moved
    principal point). For a rotated crop it is the camera rotated about its optical axis
    (the top-left 2x2 block holds the rotation), still exact for projecting camera-frame
    points: ``K_crop p / p_z`` is the crop pixel of ``p``.
    """
    A = crop_matrix(roi, out_size).to(K.dtype)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device).expand(A.shape[0], 1, 3)
    return torch.cat([A, bottom], 1) @ K


def square_roi(x0: float, y0: float, side: float) -> Roi:
    """The axis-aligned square ``[x0, x0 + side) x [y0, y0 + side)`` (image pixels, top-left
    corner and side) as one float64 :class:`Roi`."""
    center = torch.tensor([[x0 + side / 2.0, y0 + side / 2.0]], dtype=torch.float64)
    return Roi(center, torch.tensor([float(side)], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


def square_crop_intrinsics_np(K: np.ndarray, x0: float, y0: float, side: float, out_size: int) -> np.ndarray:
    """numpy (float64) :func:`crop_intrinsics` of one axis-aligned square crop (:func:`square_roi`)
    resized to ``out_size`` pixels: ``u' = (u - x0) out_size / side`` (likewise ``v``).

    The one crop-with-intrinsics update of the numpy code (InterHand preparation, the model
    inputs of ``im2hands extract``, the whole-image keypoint estimator); it agrees with the
    per-caller formulas it replaced up to float64 rounding (tests/geometry/test_crops.py).
    """
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float64))[None]
    return crop_intrinsics(K_t, square_roi(x0, y0, side), out_size)[0].numpy()


def crop_images(
    image: Float[Tensor, "C H W"] | Float[Tensor, "B C H W"],
    roi: Roi,
    out_size: int,
    *,
    antialias: bool = True,
) -> Float[Tensor, "B C S S"]:
    """Resample the ROIs of ``image`` (one image for every ROI, or one per ROI) to
    ``out_size``-pixel square crops: bilinear, zeros outside the image.

    With ``antialias`` an ROI shrunk by more than 1.5x is sampled from a copy of the image
    resized (area-correct, :func:`torch.nn.functional.interpolate` with ``antialias=True``) to
    its crop's scale, so small crops of large photos do not alias.
    """
    if image.ndim == 3:
        image = image[None].expand(len(roi), -1, -1, -1)
    if image.shape[0] != len(roi):
        raise ValueError(f"{image.shape[0]} images for {len(roi)} ROIs")
    B, C, H, W = image.shape
    dtype, dev = image.dtype, image.device
    j = torch.arange(out_size, dtype=dtype, device=dev) + 0.5
    q = torch.stack(torch.meshgrid(j, j, indexing="xy"), -1).reshape(1, -1, 2).expand(B, -1, -1)  # (B, S*S, 2) (u, v)
    on_image = Roi(roi.center.to(dev, dtype), roi.size.to(dev, dtype), roi.angle.to(dev, dtype),
                   None if roi.mirror is None else roi.mirror.to(dev))  # the ROIs may live on another device
    p = crop_to_image(q, on_image, out_size)
    crops = []
    for b in range(B):
        src, pb = image[b : b + 1], p[b : b + 1]
        shrink = float(roi.size[b]) / out_size
        if antialias and shrink > 1.5:
            h, w = max(1, round(H / shrink)), max(1, round(W / shrink))
            src = F.interpolate(src, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            pb = pb * torch.tensor([w / W, h / H], dtype=dtype, device=dev)
            sh, sw = h, w
        else:
            sh, sw = H, W
        grid = pb * torch.tensor([2.0 / sw, 2.0 / sh], dtype=dtype, device=dev) - 1.0
        out = F.grid_sample(src, grid.reshape(1, out_size, out_size, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # fmt: skip
        crops.append(out)
    return torch.cat(crops, 0)


def roi_angle(base: Float[Tensor, "B 2"], tip: Float[Tensor, "B 2"]) -> Float[Tensor, "B"]:
    """The ROI angle that turns the image direction ``base -> tip`` into the crop's up."""
    d = tip - base
    return torch.atan2(d[..., 0], -d[..., 1])


def upright_roi(
    keypoints_2d: Float[Tensor, "B 21 2"],
    *,
    scale: float = 2.0,
    shift: tuple[float, float] = (0.0, 0.0),
    mirror: Bool[Tensor, "B"] | None = None,
) -> Roi:
    """The upright ROI of hands given by 21 keypoints (``standard`` order, image pixels): the
    wrist -> middle-MCP direction points up in the crop (:func:`roi_angle`), the keypoints'
    box in that frame is centred (moved by ``shift``), and the side is ``scale`` x its longer
    side (:func:`roi_from_points`); ``mirror`` flips those crops."""
    roi = roi_from_points(keypoints_2d, roi_angle(keypoints_2d[:, WRIST], keypoints_2d[:, MIDDLE_MCP]), scale=scale, shift=shift)
    roi.mirror = mirror
    return roi


def roi_from_points(
    points: Float[Tensor, "B N 2"],
    angle: Float[Tensor, "B"],
    *,
    scale: float = 2.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> Roi:
    """The square ROI around ``points`` (image pixels) at ``angle``: their bounding box in the
    ROI's rotated frame, moved by ``shift`` (fractions of the box's width and height, along
    the rotated axes; ``(0, -0.1)`` moves it 10 % towards the crop's up), its longer side
    times ``scale``."""
    R = _rotation(angle.to(points.dtype))  # crop -> image rotation
    local = points @ R  # (B, N, 2) coordinates along the rotated axes
    lo, hi = local.min(1).values, local.max(1).values
    wh = hi - lo
    mid = (lo + hi) / 2.0 + wh * torch.tensor(shift, dtype=points.dtype, device=points.device)
    center = (mid[:, None] @ R.transpose(-1, -2))[:, 0]
    size = wh.max(-1).values * scale
    return Roi(center, size, angle.to(points.dtype))  # not mirrored


def box_iou(a: Float[Tensor, "N 4"], b: Float[Tensor, "M 4"]) -> Float[Tensor, "N M"]:
    """IoU of axis-aligned boxes ``(u_min, v_min, u_max, v_max)``; 0 where the union is empty."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(dim=-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def suppress_overlaps(boxes: Float[Tensor, "N 4"], scores: Float[Tensor, "N"], iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: indices (best score first) of the boxes that overlap
    no better-scored kept box by more than ``iou_threshold`` (:func:`box_iou`)."""
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in torch.argsort(scores, descending=True).tolist():
        if all(float(iou[i, j]) <= iou_threshold for j in keep):
            keep.append(i)
    return torch.as_tensor(keep, dtype=torch.long, device=boxes.device)


def tile_centres(length: int, side: float) -> list[float]:
    """Centres of windows of ``side`` pixels covering ``[0, length]``, overlapping by at least half."""
    if side >= length:
        return [length / 2.0]
    n = int(math.ceil((length - side) / (side / 2.0))) + 1
    return [side / 2.0 + i * (length - side) / (n - 1) for i in range(n)]


def square_windows(height: int, width: int, fractions: tuple[float, ...], *, whole: bool = False) -> Roi:
    """Axis-aligned square windows covering an image: for each of ``fractions``, windows of that
    fraction of the shorter side overlapping by half (:func:`tile_centres`); with ``whole``,
    first the whole image letterboxed (side = the longer side). float64, CPU."""
    centers, sizes = ([(width / 2.0, height / 2.0)], [float(max(height, width))]) if whole else ([], [])
    for frac in fractions:
        side = frac * min(height, width)
        for cy in tile_centres(height, side):
            for cx in tile_centres(width, side):
                centers.append((cx, cy))
                sizes.append(side)
    n = len(sizes)
    return Roi(torch.tensor(centers, dtype=torch.float64).reshape(n, 2), torch.tensor(sizes, dtype=torch.float64),
               torch.zeros(n, dtype=torch.float64))  # fmt: skip


def paint_over_boxes(image: Float[Tensor, "3 H W"], boxes: Float[Tensor, "M 4"], margin: float = 0.15) -> Tensor:
    """A copy of ``image`` with each ``(u0, v0, u1, v1)`` pixel box, grown by ``margin`` x its
    size on every side and clipped to the image, filled with the image's mean colour (HDR's
    "look again with the found hand gone")."""
    out = image.clone()
    fill = image.mean(dim=(1, 2))
    H, W = image.shape[1:]
    for u0, v0, u1, v1 in boxes.tolist():
        du, dv = (u1 - u0) * margin, (v1 - v0) * margin
        a, b = max(0, int(u0 - du)), min(W, int(np.ceil(u1 + du)))
        c, d = max(0, int(v0 - dv)), min(H, int(np.ceil(v1 + dv)))
        if a < b and c < d:
            out[:, c:d, a:b] = fill[:, None, None]
    return out
