"""The crop network's batch transform: crops framed as the pipeline frames them, targets that
agree with the pixels and with each other, negatives without hand pixels."""

from __future__ import annotations

import math

import pytest
import torch

from im2hands.data.crop_batch import HandCropBatch
from im2hands.geometry.frames import MIDDLE_MCP, WRIST

S, H, W, F = 64, 120, 160, 200.0
K = torch.tensor([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])


def _hand(rng: torch.Generator, centre: tuple[float, float], angle: float, z: float = 0.5) -> torch.Tensor:
    """(21, 3) keypoints on the plane at depth ``z`` (fronto-parallel, so 2D offsets are 3D
    offsets times f / z): the wrist at ``centre`` (metres), the middle MCP 8 cm from it in the
    direction ``angle`` (image plane, 0 = up), the others scattered around."""
    kp = torch.zeros(21, 3)
    up = torch.tensor([math.sin(angle), -math.cos(angle)])
    pts = torch.randn(21, 2, generator=rng) * 0.03 + up * 0.06
    pts[WRIST] = 0.0
    pts[MIDDLE_MCP] = up * 0.08
    kp[:, :2] = pts + torch.tensor(centre)
    kp[:, 2] = z
    return kp


def _batch(valid=((True, True), (False, True))) -> dict:
    rng = torch.Generator().manual_seed(3)
    B = len(valid)
    kp = torch.stack([torch.stack([_hand(rng, (-0.1 + 0.05 * b, 0.0), 0.7 * b - 0.3),
                                   _hand(rng, (0.1, 0.02 * b), 2.5 - b)]) for b in range(B)])  # fmt: skip
    uv = kp[..., :2] / kp[..., 2:] * F + torch.tensor([W / 2, H / 2])
    image = torch.full((B, 3, H, W), 0.5)
    masks = torch.zeros(B, 2, H, W, dtype=torch.bool)
    for b in range(B):
        for s in range(2):
            lo, hi = uv[b, s].min(0).values.floor().long(), uv[b, s].max(0).values.ceil().long()
            masks[b, s, lo[1].clamp(0, H) : hi[1].clamp(0, H), lo[0].clamp(0, W) : hi[0].clamp(0, W)] = True
    image[:, 0] = torch.where(masks.any(1), 1.0, 0.5)  # hands red, the rest grey
    return {"image": image, "K": K.expand(B, 3, 3), "keypoints": kp, "keypoints_2d": uv,
            "hand_valid": torch.tensor(valid), "masks_amodal": masks}  # fmt: skip


def test_validation_crops_are_upright_framed_and_consistent():
    batch = _batch()
    out = HandCropBatch(size=S, crop_scale=2.0, negative_ratio=0.0)(batch, training=False)
    assert out["crops"].shape == (3, 3, S, S) and out["crop_hand"].tolist() == [1.0, 1.0, 1.0]
    assert out["crop_right"].tolist() == [0.0, 1.0, 1.0]  # item 0 left, right; item 1 right only
    uv, xyz = out["crop_uv"], out["crop_xyz"]
    d = uv[:, MIDDLE_MCP] - uv[:, WRIST]
    assert torch.allclose(d[:, 0], torch.zeros(3), atol=1e-3) and bool((d[:, 1] < 0).all())  # fingers up
    extent = (uv.max(1).values - uv.min(1).values).max(-1).values
    assert torch.allclose(extent, torch.full((3,), S / 2.0), atol=1e-3)  # side = 2 x the keypoints' extent
    assert torch.allclose(xyz[:, WRIST], torch.zeros(3, 3))
    # a fronto-parallel hand: crop-pixel offsets are the crop-oriented 3D offsets times one factor
    rel2d = uv - uv[:, WRIST : WRIST + 1]
    k = rel2d[:, MIDDLE_MCP, 1] / xyz[:, MIDDLE_MCP, 1]
    assert bool((k > 0).all())
    assert torch.allclose(rel2d, xyz[..., :2] * k[:, None, None], atol=1e-2)
    # crop pixels per image pixel: the factor over f / z
    assert torch.allclose(out["crop_px"], (F / 0.5) / k, rtol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_keypoint_targets_sit_on_their_pixels(training):
    """A bright dot at each hand's wrist pixel lands at the crop's wrist target."""
    torch.manual_seed(1)
    batch = _batch(valid=((True, True),))
    image = torch.zeros(1, 3, H, W)
    for s in range(2):
        u, v = batch["keypoints_2d"][0, s, WRIST].floor().long().tolist()
        image[0, :, v - 1 : v + 2, u - 1 : u + 2] = 1.0
    batch["image"] = image
    out = HandCropBatch(size=S, negative_ratio=0.0, appearance=None)(batch, training=training)
    for i in range(2):
        crop = out["crops"][i].mean(0)
        target = out["crop_uv"][i, WRIST]
        ys, xs = torch.nonzero(crop > 0.25, as_tuple=True)
        centre = torch.stack([xs.float().mean(), ys.float().mean()]) + 0.5
        assert (centre - target).norm() < 2.0, (centre, target)


def test_training_jitter_stays_in_its_ranges():
    torch.manual_seed(2)
    batch = _batch()
    t = HandCropBatch(size=S, crop_scale=2.0, scale_range=(0.8, 1.3), rotation_deg=25.0, shift=0.1, negative_ratio=0.0)
    for _ in range(5):
        out = t(batch, training=True)
        uv = out["crop_uv"]
        extent = (uv.max(1).values - uv.min(1).values).max(-1).values
        d = uv[:, MIDDLE_MCP] - uv[:, WRIST]
        tilt = torch.rad2deg(torch.atan2(d[:, 0], -d[:, 1])).abs()
        assert bool((tilt <= 25.0 + 1e-3).all())
        assert bool((extent <= S / 2.0 / 0.8 * 1.5).all()) and bool((extent >= S / 2.0 / 1.3 * 0.7).all())
        xyz2 = out["crop_xyz"][..., :2]  # 3D targets turn with the crop: the same tilt in 3D
        tilt3 = torch.rad2deg(torch.atan2(xyz2[:, MIDDLE_MCP, 0], -xyz2[:, MIDDLE_MCP, 1])).abs()
        assert torch.allclose(tilt, tilt3, atol=1e-2)


def test_negatives_hold_no_hand_pixels():
    torch.manual_seed(4)
    batch = _batch()
    out = HandCropBatch(size=S, negative_ratio=0.5, appearance=None)(batch, training=False)
    hand = out["crop_hand"]
    assert hand.tolist() == [1.0, 1.0, 1.0, 0.0]  # int(0.5 * 3) = 1 negative
    neg = out["crops"][hand == 0]
    red = (neg[:, 0] > 0.75) & (neg[:, 1] < 0.25)
    assert not bool(red.any())
    assert float(neg.max()) > 0.0  # not an empty window
    assert torch.equal(out["crop_uv"][hand == 0], torch.zeros(1, 21, 2))
    # without masks there are no negatives
    no_masks = {k: v for k, v in batch.items() if k != "masks_amodal"}
    assert HandCropBatch(size=S, negative_ratio=0.5)(no_masks, training=False)["crop_hand"].tolist() == [1.0] * 3


def test_no_valid_hand_gives_an_empty_batch():
    batch = _batch(valid=((False, False),))
    out = HandCropBatch(size=S)(batch, training=True)
    assert out["crops"].shape == (0, 3, S, S) and out["crop_uv"].shape == (0, 21, 2)
