"""Training augmentation: image, masks, 2D and 3D keypoints and K stay consistent."""

import math

import pytest
import torch

from im2hands.data.augment import Augment, presence_from_batch, rotation_z
from im2hands.geometry.frames import project

S = 64


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _batch(B: int = 6, seed: int = 0, fx_scale: float = 1.0) -> dict:
    """Random hands in front of a camera; masks are discs around a few keypoints, and the image
    is white exactly on those discs (so image and masks can be compared after warping)."""
    g = torch.Generator().manual_seed(seed)
    kp = 0.025 * torch.randn(B, 2, 21, 3, generator=g)
    kp[:, 0, :, 0] -= 0.04
    kp[:, 1, :, 0] += 0.04
    kp[..., 2] += 0.5
    f = 80.0 + 20 * torch.rand(B, generator=g)
    K = torch.zeros(B, 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = f * fx_scale, f, 1.0
    K[:, 0, 2], K[:, 1, 2] = S / 2 + 3 * torch.randn(B, generator=g), S / 2 - 2.0
    kp2 = project(kp.view(B, 42, 3), K).view(B, 2, 21, 2)
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    masks = torch.zeros(B, 2, S, S, dtype=torch.bool)
    for h in range(2):
        for j in (0, 9):  # discs of radius 3 px around the wrist and middle MCP
            c = kp2[:, h, j]
            masks[:, h] |= ((xs - c[:, 0, None, None]) ** 2 + (ys - c[:, 1, None, None]) ** 2) < 9
    image = 0.2 * torch.ones(B, 3, S, S)
    image[masks.any(1)[:, None].expand(B, 3, S, S)] = 1.0
    return {"image": image, "K": K, "keypoints": kp, "keypoints_2d": kp2, "masks_amodal": masks.clone(),
            "masks_visible": masks, "hand_valid": torch.ones(B, 2, dtype=torch.bool), "index": torch.arange(B)}


def _geometry_only(**kw) -> Augment:
    return Augment(color=0.0, hue=0.0, blur_prob=0.0, noise_std=0.0, **kw)


@pytest.mark.parametrize("fx_scale", [1.0, 1.15])
def test_projection_with_new_K_equals_new_2d_keypoints(fx_scale):
    batch = _batch(fx_scale=fx_scale)
    aug = _geometry_only(rotation_deg=40.0, truncation_prob=0.5)
    out = aug(batch, torch.Generator().manual_seed(1))
    B = batch["K"].shape[0]
    reproj = project(out["keypoints"].view(B, 42, 3), out["K"]).view(B, 2, 21, 2)
    assert torch.allclose(reproj, out["keypoints_2d"], atol=1e-3)
    assert not torch.allclose(out["keypoints_2d"], batch["keypoints_2d"], atol=1.0)  # it did move
    # K stays a pinhole matrix (no skew from the rotation), depth is kept
    assert torch.allclose(out["K"][:, 0, 1], torch.zeros(B), atol=1e-4) and (out["K"][:, 2] == batch["K"][:, 2]).all()
    assert torch.allclose(out["keypoints"][..., 2], batch["keypoints"][..., 2], atol=1e-6)
    # root-relative 3D is rotated about the optical axis, lengths unchanged
    rel_in = batch["keypoints"] - batch["keypoints"][:, :, :1]
    rel_out = out["keypoints"] - out["keypoints"][:, :, :1]
    assert torch.allclose(rel_in.norm(dim=-1), rel_out.norm(dim=-1), atol=1e-6)


def test_masks_and_image_move_with_the_keypoints():
    batch = _batch(B=8, seed=2)
    aug = _geometry_only(rotation_deg=30.0, truncation_prob=0.0, translate=0.05, scale_range=(0.9, 1.2))
    out = aug(batch, torch.Generator().manual_seed(3))
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    for b in range(8):
        for h in range(2):
            for j in (0, 9):
                c = out["keypoints_2d"][b, h, j]
                if not (4 < c[0] < S - 4 and 4 < c[1] < S - 4):
                    continue
                near = ((xs - c[0]) ** 2 + (ys - c[1]) ** 2) < 1.5**2  # the disc's centre pixels
                assert out["masks_amodal"][b, h][near].all(), (b, h, j)
                assert (out["image"][b, 0][near] > 0.9).all()
        # mask pixels and bright image pixels agree away from the disc edges
        bright = out["image"][b, 0] > 0.6
        m = out["masks_visible"][b].any(0)
        assert (bright ^ m).float().mean() < 0.03
    assert out["masks_amodal"].dtype == torch.bool and out["presence"].shape == (8, 2)


def test_rotation_without_scale_keeps_the_principal_point_fixed():
    batch = _batch(B=2, seed=4)
    aug = _geometry_only(rotation_deg=90.0, translate=0.0, truncation_prob=0.0, scale_range=(1.0, 1.0))
    theta, A, b, K_new = aug.sample_geometry(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(K_new.float(), batch["K"], atol=1e-5)
    p = batch["K"][:, :2, 2].double()
    assert torch.allclose((A @ p[..., None])[..., 0] + b, p, atol=1e-9)
    assert torch.allclose(torch.linalg.det(A), torch.ones(2, dtype=torch.float64), atol=1e-9)
    R = rotation_z(theta)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=R.dtype).expand(2, 3, 3), atol=1e-12)


def test_truncation_pushes_keypoints_out_and_presence():
    batch = _batch(B=16, seed=5)
    aug = _geometry_only(truncation_prob=1.0, truncation_range=(0.3, 0.4), rotation_deg=0.0)
    out = aug(batch, torch.Generator().manual_seed(6))
    kp2 = out["keypoints_2d"]
    inside = ((kp2 >= 0) & (kp2 < S)).all(-1)  # (B, 2, 21)
    frac_out = 1.0 - inside.flatten(1).float().mean(1)
    assert (frac_out > 0).all()  # every sample lost some keypoints
    assert out["presence"].any(-1).all()  # but still shows a hand
    # presence follows the visible masks
    gone = dict(out, masks_visible=torch.zeros_like(out["masks_visible"]))
    assert not presence_from_batch(gone).any()


def test_appearance_changes_only_colour_and_stays_in_range():
    batch = _batch(B=4, seed=7)
    aug = Augment(scale_range=(1.0, 1.0), rotation_deg=0.0, translate=0.0, truncation_prob=0.0, blur_prob=1.0,
                  blur_sigma=(1.0, 1.0), noise_std=0.0, color=0.3, hue=0.05)
    out = aug(batch, torch.Generator().manual_seed(8))
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    assert not torch.allclose(out["image"], batch["image"])
    assert torch.equal(out["masks_visible"], batch["masks_visible"])
    assert torch.allclose(out["keypoints_2d"], batch["keypoints_2d"], atol=1e-4)
    # a blur keeps a constant image constant (replicate padding, normalised kernel)
    flat = {**batch, "image": torch.full_like(batch["image"], 0.5)}
    blurred = Augment(blur_prob=1.0, color=0.0, hue=0.0, noise_std=0.0)._blur(flat["image"], None)
    assert torch.allclose(blurred, flat["image"], atol=1e-6)


def test_erasing_a_hand_clears_its_masks_and_presence():
    batch = _batch(B=8, seed=9)
    out = _geometry_only(erase_prob=1.0, rotation_deg=0.0, translate=0.0, truncation_prob=0.0,
                         scale_range=(1.0, 1.0))(batch, torch.Generator().manual_seed(0))
    assert (out["presence"].sum(-1) == 1).all()  # exactly one hand erased per sample
    gone = ~out["presence"]
    assert not out["masks_visible"][gone].any() and not out["masks_amodal"][gone].any()
    assert (out["image"][:, 0] > 0.9).sum() < (batch["image"][:, 0] > 0.9).sum()


def test_rotation_about_optical_axis_angle():
    R = rotation_z(torch.tensor([math.pi / 2]))
    assert torch.allclose(R[0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
