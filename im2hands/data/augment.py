"""Training augmentation for image models: geometry and appearance, consistent across every key.

:class:`Augment` transforms a collated batch (pure torch, batched, on the batch's device):

**Geometry** (per sample): an in-plane rotation by ``theta``, then a scale ``s`` about the image
centre and a translation ``t``. The rotation is a rotation of the *camera* about its optical
axis, so the intrinsics stay a proper pinhole matrix and every 3D quantity stays consistent:

- camera-frame 3D keys (``keypoints``, ``vertices``, ``points``) are rotated by ``R_z(theta)``,
  and world-to-camera ``R``, ``t`` become ``R_z R``, ``R_z t``;
- pixels move by ``u -> A u + b`` with ``A = s Kxy R2(theta) Kxy^-1`` (``Kxy`` the upper-left
  2x2 of ``K``: a rotation about the principal point when ``fx = fy``);
- ``K -> [[s Kxy, s (p - m) + m + t], [0, 0, 1]]`` (``p`` principal point, ``m`` image centre),
  so projecting the new 3D keypoints with the new ``K`` gives exactly the new 2D keypoints;
- ``image`` is resampled bilinearly (zeros outside), ``masks_*`` and ``depth`` by nearest
  neighbour (depth values do not change: the rotation keeps z and scaling is a zoom).

**Truncation**: with probability ``truncation_prob`` the translation pushes the hands' 2D box
(both hands' keypoints) across a random image border by a fraction ``truncation_range`` of
its extent, so parts of the hands leave the image.

**Appearance** (image only): brightness, contrast, saturation and hue (a rotation of the
chroma plane in YIQ), then a Gaussian blur with probability ``blur_prob`` (sigma in
``blur_sigma`` pixels), then Gaussian pixel noise (std up to ``noise_std``); clamped to [0, 1].

**Hand erasing** (optional, ``erase_prob``, needs ``masks_visible``): one hand's visible pixels
(dilated by 2 px) are painted with the image's mean background colour plus noise; its masks are
cleared and its ``presence`` becomes False (the hand is no longer in the image). This teaches
the presence score and single-hand images.

The output also holds ``presence`` (B, 2) bool: ``hand_valid`` and some visible pixel of the
hand left (when masks are given; else some 2D keypoint inside the image), and not erased.
Keys it does not know are passed through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from im2hands.typing import Float, Tensor
from im2hands.utils.batch import presence_from_batch

__all__ = ["Augment", "rotation_z", "warp_pixels", "presence_from_batch"]

_POINT_KEYS = ("keypoints", "vertices", "points")
_MASK_KEYS = ("masks_amodal", "masks_visible")


def rotation_z(theta: Float[Tensor, "B"]) -> Float[Tensor, "B 3 3"]:
    """Rotations about the camera's optical axis (+z) by ``theta`` radians."""
    c, s = theta.cos(), theta.sin()
    o, i = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, o, s, c, o, o, o, i], -1).view(-1, 3, 3)


def warp_pixels(uv: Float[Tensor, "B ... 2"], A: Float[Tensor, "B 2 2"], b: Float[Tensor, "B 2"]) -> Tensor:
    """``u -> A u + b`` for pixel coordinates of shape ``(B, ..., 2)``."""
    shape = uv.shape
    flat = uv.reshape(shape[0], -1, 2)
    return (flat @ A.transpose(-1, -2) + b[:, None]).reshape(shape)


def _sample(img: Tensor, grid: Tensor, mode: str) -> Tensor:
    return F.grid_sample(img, grid.to(img.dtype), mode=mode, padding_mode="zeros", align_corners=False)


@dataclass
class Augment:
    """Random augmentation of training batches (see the module docstring).

    Args:
        scale_range: ``(lo, hi)`` zoom factors (log-uniform).
        rotation_deg: largest in-plane rotation, degrees (uniform in ``[-r, r]``).
        translate: largest shift per axis, fraction of the image side (uniform).
        truncation_prob: probability of a truncating shift instead.
        truncation_range: ``(lo, hi)`` fraction of the hands' box pushed out of the image.
        color: strength of the brightness, contrast and saturation changes (factors in
            ``[1 - color, 1 + color]``).
        hue: largest hue rotation, fraction of a full turn.
        blur_prob: probability of a Gaussian blur; blur_sigma: ``(lo, hi)`` its sigma, pixels.
        noise_std: largest standard deviation of additive pixel noise (images in [0, 1]).
        erase_prob: probability of erasing one hand (needs visible masks).
    """

    scale_range: Sequence[float] = (0.8, 1.25)
    rotation_deg: float = 30.0
    translate: float = 0.08
    truncation_prob: float = 0.15
    truncation_range: Sequence[float] = (0.05, 0.35)
    color: float = 0.3
    hue: float = 0.05
    blur_prob: float = 0.3
    blur_sigma: Sequence[float] = (0.3, 1.5)
    noise_std: float = 0.02
    erase_prob: float = 0.0

    def _u(self, n: int, lo: float, hi: float, like: Tensor, gen: torch.Generator | None) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=like.device, dtype=like.dtype)

    # ------------------------------------------------------------------ geometry

    def sample_geometry(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw ``theta`` (B,), the pixel map ``A`` (B, 2, 2), ``b`` (B, 2) and the new ``K``."""
        image, K = batch["image"], batch["K"].to(torch.float64)
        B, (H, W) = image.shape[0], image.shape[-2:]
        dt = torch.float64
        like = K
        theta = math.radians(self.rotation_deg) * self._u(B, -1.0, 1.0, like, generator)
        lo, hi = (float(v) for v in self.scale_range)
        s = torch.exp(self._u(B, math.log(lo), math.log(hi), like, generator))  # (B,)
        t = self.translate * torch.stack([W * self._u(B, -1, 1, like, generator), H * self._u(B, -1, 1, like, generator)], -1)
        Kxy = K[:, :2, :2]
        c, sn = theta.cos(), theta.sin()
        R2 = torch.stack([c, -sn, sn, c], -1).view(B, 2, 2)
        M = Kxy @ R2 @ torch.linalg.inv(Kxy)  # (B, 2, 2) the rotation's pixel map about p
        p = K[:, :2, 2]
        m = torch.tensor([W / 2.0, H / 2.0], dtype=dt, device=K.device)
        A = s[:, None, None] * M

        if self.truncation_prob > 0 and "keypoints_2d" in batch:
            kp2 = batch["keypoints_2d"].to(dt)  # (B, 2, 21, 2)
            valid = batch.get("hand_valid")
            valid = torch.ones(B, 2, dtype=torch.bool, device=kp2.device) if valid is None else valid.bool()
            # hands' box after rotation + scale (before translation)
            moved = warp_pixels(kp2, A, s[:, None] * (p - (M @ p[..., None])[..., 0] - m) + m)
            big = torch.finfo(dt).max
            w = valid[..., None, None].expand_as(moved)
            lo_xy = torch.where(w, moved, torch.full_like(moved, big)).flatten(1, 2).amin(1)  # (B, 2)
            hi_xy = torch.where(w, moved, torch.full_like(moved, -big)).flatten(1, 2).amax(1)
            has = valid.any(-1)
            extent = (hi_xy - lo_xy).clamp(min=1.0)
            frac = self._u(B, float(self.truncation_range[0]), float(self.truncation_range[1]), like, generator)
            side = torch.randint(0, 4, (B,), generator=generator, device=K.device)  # 0 left, 1 right, 2 top, 3 bottom
            size = torch.tensor([W, H], dtype=dt, device=K.device)
            axis = side // 2  # 0: x, 1: y
            ar = torch.arange(B, device=K.device)
            lo_a, hi_a, ext_a = lo_xy[ar, axis], hi_xy[ar, axis], extent[ar, axis]
            # shift that puts `frac` of the box beyond the border
            shift = torch.where(side % 2 == 0, -(lo_a + frac * ext_a), size[axis] - hi_a + frac * ext_a)
            truncate = (torch.rand(B, generator=generator, device=K.device, dtype=dt) < self.truncation_prob) & has
            t_new = t.clone()
            t_new[ar, axis] = shift
            t = torch.where(truncate[:, None], t_new, t)

        b = s[:, None] * (p - (M @ p[..., None])[..., 0] - m) + m + t
        K_new = K.clone()
        K_new[:, :2, :2] = s[:, None, None] * Kxy
        K_new[:, :2, 2] = s[:, None] * (p - m) + m + t
        return theta, A, b, K_new

    def apply_geometry(self, batch: dict[str, Any], theta: Tensor, A: Tensor, b: Tensor, K_new: Tensor) -> dict[str, Any]:
        """Apply a drawn geometric transform to every key it concerns (returns a new dict)."""
        out = dict(batch)
        image = batch["image"]
        B, (H, W) = image.shape[0], image.shape[-2:]
        dev = image.device
        # output pixel centres -> input pixels (inverse map), normalised for grid_sample
        ys, xs = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float64) + 0.5,
                                torch.arange(W, device=dev, dtype=torch.float64) + 0.5, indexing="ij")  # fmt: skip
        uv_out = torch.stack([xs, ys], -1).view(1, H * W, 2)
        A_inv = torch.linalg.inv(A)
        uv_in = (uv_out - b[:, None]) @ A_inv.transpose(-1, -2)  # (B, HW, 2)
        grid = (2.0 * uv_in / uv_in.new_tensor([W, H]) - 1.0).view(B, H, W, 2)
        out["image"] = _sample(image, grid, "bilinear")
        for key in _MASK_KEYS:
            if key in batch:
                m = batch[key]
                out[key] = (_sample(m.to(image.dtype), grid, "nearest") > 0.5).to(m.dtype)
        if "depth" in batch:
            out["depth"] = _sample(batch["depth"][:, None].to(image.dtype), grid, "nearest")[:, 0].to(batch["depth"].dtype)
        if "keypoints_2d" in batch:
            kp2 = batch["keypoints_2d"]
            out["keypoints_2d"] = warp_pixels(kp2.to(torch.float64), A, b).to(kp2.dtype)
        out["K"] = K_new.to(batch["K"].dtype)
        Rz = rotation_z(theta)  # (B, 3, 3) float64
        for key in _POINT_KEYS:
            if key in batch:
                x = batch[key]
                flat = x.reshape(B, -1, 3).to(torch.float64)
                out[key] = (flat @ Rz.transpose(-1, -2)).reshape(x.shape).to(x.dtype)
        if "R" in batch and "t" in batch:
            out["R"] = (Rz @ batch["R"].to(torch.float64)).to(batch["R"].dtype)
            out["t"] = (Rz @ batch["t"].to(torch.float64)[..., None])[..., 0].to(batch["t"].dtype)
        return out

    # ------------------------------------------------------------------ appearance

    def appearance(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Brightness, contrast, saturation, hue, blur and noise (see the module docstring)."""
        B = image.shape[0]
        c = self.color
        like = image
        gray_w = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = image * self._u(B, 1 - c, 1 + c, like, generator).view(B, 1, 1, 1)  # brightness
        gray = (x * gray_w).sum(1, keepdim=True)
        mean = gray.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * self._u(B, 1 - c, 1 + c, like, generator).view(B, 1, 1, 1) + mean  # contrast
        gray = (x * gray_w).sum(1, keepdim=True)
        x = gray + (x - gray) * self._u(B, 1 - c, 1 + c, like, generator).view(B, 1, 1, 1)  # saturation
        if self.hue > 0:
            x = self._hue(x, 2 * math.pi * self.hue * self._u(B, -1, 1, like, generator))
        if self.blur_prob > 0:
            x = self._blur(x, generator)
        if self.noise_std > 0:
            std = self.noise_std * torch.rand(B, 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
            x = x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def _hue(x: Tensor, angle: Tensor) -> Tensor:
        to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
        c, s = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)

    def _blur(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        B, C, H, W = x.shape
        lo, hi = (float(v) for v in self.blur_sigma)
        sigma = self._u(B, lo, hi, x, generator)
        on = torch.rand(B, generator=generator, device=x.device, dtype=x.dtype) < self.blur_prob
        if not bool(on.any()):
            return x
        r = max(1, int(math.ceil(3 * hi)))
        offs = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (offs[None] / sigma[:, None]) ** 2)
        k = k / k.sum(-1, keepdim=True)
        delta = (offs == 0).to(x.dtype)[None].expand(B, -1)
        k = torch.where(on[:, None], k, delta)  # (B, 2r+1)
        k = k.repeat_interleave(C, 0)  # (B C, 2r+1)
        y = x.reshape(1, B * C, H, W)
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(B * C, 1, 1, -1), groups=B * C)
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(B * C, 1, -1, 1), groups=B * C)
        return y.view(B, C, H, W)

    def erase(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        """Erase one hand of some samples (sets ``erased`` (B, 2) bool in the returned dict)."""
        out = dict(batch)
        image, vis = batch["image"], batch["masks_visible"]
        B = image.shape[0]
        pick = torch.rand(B, generator=generator, device=image.device) < self.erase_prob
        side = torch.randint(0, 2, (B,), generator=generator, device=image.device)
        erased = torch.zeros(B, 2, dtype=torch.bool, device=image.device)
        erased[torch.arange(B, device=image.device), side] = pick
        out["erased"] = erased
        if not bool(pick.any()):
            return out
        region = (vis.to(image.dtype) * erased[..., None, None].to(image.dtype)).amax(1, keepdim=True)  # (B, 1, H, W)
        region = F.max_pool2d(region, 5, stride=1, padding=2)  # dilate 2 px
        hands = batch["masks_amodal"].any(1, keepdim=True) if "masks_amodal" in batch else vis.any(1, keepdim=True)
        bg = (~hands).to(image.dtype)
        fill = (image * bg).sum(dim=(2, 3), keepdim=True) / bg.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        noise = 0.05 * torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        out["image"] = (image * (1 - region) + (fill + noise).clamp(0, 1) * region)
        keep = ~erased[..., None, None]  # (B, 2, 1, 1)
        paint = region.bool()  # (B, 1, H, W)
        if "masks_amodal" in batch:
            out["masks_amodal"] = (batch["masks_amodal"].bool() & keep).to(batch["masks_amodal"].dtype)
        out["masks_visible"] = (vis.bool() & keep & ~paint).to(vis.dtype)  # painted pixels show no hand
        return out

    # ------------------------------------------------------------------ all

    def __call__(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        """Augment a collated batch (needs ``image`` and ``K``); returns a new dict with ``presence``."""
        if "image" not in batch or "K" not in batch:
            raise KeyError("augmentation needs 'image' and 'K' in the batch")
        with torch.no_grad():
            out = self.apply_geometry(batch, *self.sample_geometry(batch, generator))
            erased = None
            if self.erase_prob > 0 and "masks_visible" in out:
                out = self.erase(out, generator)
                erased = out.pop("erased")
            out["image"] = self.appearance(out["image"], generator)
            if "keypoints_2d" in out:
                presence = presence_from_batch(out)
                out["presence"] = presence if erased is None else presence & ~erased
        return out
