"""Upright square hand crops for the hand-landmark network, and the way back to image pixels.

A crop is an affine map ``A`` (2 x 3) from crop pixels to image pixels: ``p_img = A @ [p_crop, 1]``.
Pixel coordinates are continuous with pixel centres at integer + 0.5 (as the dataset's ``K``).
The crop is rotated so that the wrist is below the middle finger's base (MediaPipe's training
framing), centred on the keypoints' box in that rotated frame, and its side is ``scale`` times the
box's longer side. ``mirror`` flips the crop left-right (left hands look like right hands);
predictions made in a mirrored crop map back with the same ``A``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

WRIST, MIDDLE_MCP = 0, 9  # standard order


def upright_crop_transform(keypoints_2d: Float[Tensor, "B K 2"], size: int = 224, scale: float = 1.8,
                           mirror: bool | Tensor = False) -> Float[Tensor, "B 2 3"]:
    """Crop-to-image affine maps (B, 2, 3) of upright square crops around 21 keypoints (image pixels).

    Args:
        keypoints_2d: (B, 21, 2) keypoints in ``standard`` order, image pixels.
        size: crop side in pixels.
        scale: crop side / longer side of the keypoints' box in the rotated frame.
        mirror: bool or (B,) bool tensor: flip those crops left-right.
    """
    kp = keypoints_2d.float()
    up = kp[:, MIDDLE_MCP] - kp[:, WRIST]
    up = up / up.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    down = -up  # crop +y in the image
    right = torch.stack([down[:, 1], -down[:, 0]], dim=-1)  # crop +x in the image: (x, y) handedness kept
    a = (kp * right[:, None]).sum(-1)  # (B, K) coordinates along the crop axes
    b = (kp * down[:, None]).sum(-1)
    a0, a1 = a.min(1).values, a.max(1).values
    b0, b1 = b.min(1).values, b.max(1).values
    centre = right * ((a0 + a1) / 2)[:, None] + down * ((b0 + b1) / 2)[:, None]  # (B, 2)
    side = scale * torch.maximum(a1 - a0, b1 - b0)  # (B,) image pixels
    flip = torch.as_tensor(mirror, device=kp.device).to(kp.dtype).expand(len(kp))
    sign = 1.0 - 2.0 * flip  # -1 mirrors
    px = side / size  # image pixels per crop pixel
    col_x = right * (px * sign)[:, None]
    col_y = down * px[:, None]
    offset = centre - (col_x + col_y) * (size / 2)
    return torch.stack([col_x, col_y, offset], dim=-1)  # (B, 2, 3)


def crop_to_image(points: Float[Tensor, "B N 2"], transform: Float[Tensor, "B 2 3"]) -> Float[Tensor, "B N 2"]:
    """Map crop pixels to image pixels."""
    return points @ transform[:, :, :2].transpose(1, 2) + transform[:, None, :, 2]


def warp_crops(images: Float[Tensor, "B C H W"], transform: Float[Tensor, "B 2 3"], size: int = 224) -> Float[Tensor, "B C S S"]:
    """Sample (B, C, size, size) crops bilinearly from ``images``; outside the image is 0."""
    b, _, h, w = images.shape
    c = torch.arange(size, device=images.device, dtype=images.dtype) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    grid = torch.stack([xx, yy], dim=-1).reshape(1, -1, 2).expand(b, -1, -1)
    pts = crop_to_image(grid, transform.to(images.dtype))  # (B, S*S, 2) image pixels
    norm = torch.stack([pts[..., 0] / w * 2 - 1, pts[..., 1] / h * 2 - 1], dim=-1)
    return F.grid_sample(images, norm.reshape(b, size, size, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=False)
