"""The hand detector's batch transform: palm boxes on analytic hands, letterboxing that keeps
pixels and targets together, mirroring that swaps the sides, and which hands are targets."""

from __future__ import annotations

import pytest
import torch

from im2hands.data.augment import Augment
from im2hands.data.det_batch import BOX_PER_PALM, FORESHORTENED, PALM_JOINTS, HandDetBatch, flip_batch, palm_boxes
from im2hands.geometry.frames import MIDDLE_MCP, WRIST

H, W = 120, 160


def _hand(centre: tuple[float, float], length: float = 20.0) -> torch.Tensor:
    """(21, 2) pixels: wrist at ``centre``, middle MCP ``length`` above it, the other palm
    points on a line through the MCP, fingers further up (an upright open hand)."""
    uv = torch.zeros(21, 2)
    cx, cy = centre
    uv[:] = torch.tensor([cx, cy - 1.6 * length])  # fingers
    uv[WRIST] = torch.tensor([cx, cy])
    for k, j in enumerate((5, 9, 13, 17)):
        uv[j] = torch.tensor([cx - 6.0 + 4.0 * k, cy - length])
    uv[MIDDLE_MCP] = torch.tensor([cx, cy - length])
    uv[1] = torch.tensor([cx - 8.0, cy - 5.0])
    uv[2] = torch.tensor([cx - 10.0, cy - 10.0])
    return uv


def _batch(centres=(((40.0, 80.0), (110.0, 90.0)), ((50.0, 70.0), (120.0, 60.0))), valid=((True, True), (True, False))) -> dict:
    uv = torch.stack([torch.stack([_hand(c) for c in pair]) for pair in centres])  # (B, 2, 21, 2)
    B = len(centres)
    image = torch.zeros(B, 3, H, W)
    masks = torch.zeros(B, 2, H, W, dtype=torch.bool)
    for b in range(B):
        for h in range(2):
            u, v = palm_boxes(uv[b, h])[:2].round().long().tolist()
            image[b, h, v - 2 : v + 3, u - 2 : u + 3] = 1.0  # a dot at each palm centre: red left, green right
            masks[b, h, v - 2 : v + 3, u - 2 : u + 3] = True
    K = torch.tensor([[200.0, 0, W / 2], [0, 200.0, H / 2], [0, 0, 1]]).expand(B, 3, 3).clone()
    return {"image": image, "K": K, "keypoints_2d": uv, "hand_valid": torch.tensor(valid),
            "masks_visible": masks, "masks_amodal": masks.clone()}  # fmt: skip


def test_palm_boxes_of_analytic_hands():
    uv = _hand((50.0, 60.0), length=20.0)
    box = palm_boxes(uv)
    assert torch.allclose(box[:2], uv[list(PALM_JOINTS)].mean(0))
    assert float(box[2]) == pytest.approx(BOX_PER_PALM * 20.0) and float(box[3]) == float(box[2])
    flat = uv.clone()
    flat[MIDDLE_MCP] = flat[WRIST]  # pointing at the camera: the palm length collapses
    extent = float((flat.amax(0) - flat.amin(0)).max())
    assert float(palm_boxes(flat)[2]) == pytest.approx(BOX_PER_PALM * FORESHORTENED * extent)
    assert palm_boxes(torch.stack([uv, flat])).shape == (2, 4)  # batched


def test_letterbox_keeps_targets_on_their_pixels_and_marks_the_targets():
    out = HandDetBatch(size=192)(_batch(), training=False)
    s = 192 / W  # the longer side fills the input; rows are padded by (W - H) / 2 each side
    uv = _batch()["keypoints_2d"]
    expected = (uv[:, :, list(PALM_JOINTS)] + torch.tensor([0.0, (W - H) / 2])) * s
    assert torch.allclose(out["det_palm"], expected, atol=1e-4)
    assert out["det_images"].shape == (2, 3, 192, 192)
    assert out["det_valid"].tolist() == [[True, True], [True, False]]  # the invalid hand is no target
    for b in range(2):
        for h in range(2):
            u, v = out["det_box"][b, h, :2].round().long().tolist()
            assert float(out["det_images"][b, h, v, u]) > 0.5  # the dot of that hand's colour


def test_flip_swaps_sides_and_keeps_keypoints_on_their_pixels():
    batch = {**_batch(), "presence": torch.tensor([[True, True], [True, False]])}
    flip = torch.tensor([True, False])
    out = flip_batch(batch, flip)
    assert torch.equal(out["image"][0], batch["image"][0].flip(-1)) and torch.equal(out["image"][1], batch["image"][1])
    assert torch.allclose(out["keypoints_2d"][0, 0, :, 0], W - batch["keypoints_2d"][0, 1, :, 0])  # old right -> left slot
    assert torch.equal(out["hand_valid"], batch["hand_valid"]) and out["presence"][1].tolist() == [True, False]
    back = flip_batch(out, flip)
    assert torch.allclose(back["keypoints_2d"], batch["keypoints_2d"]) and torch.equal(back["image"], batch["image"])
    one_sided = flip_batch({**batch, "hand_valid": torch.tensor([[True, False], [True, False]])}, flip)
    assert one_sided["hand_valid"].tolist() == [[False, True], [True, False]]
    # the flipped red (left-hand) dot now sits at the right slot's palm centre
    det = HandDetBatch(size=192)(out, training=False)
    u, v = det["det_box"][0, 1, :2].round().long().tolist()
    assert float(det["det_images"][0, 0, v, u]) > 0.5


def test_training_augmentation_moves_pixels_and_targets_together():
    torch.manual_seed(0)
    aug = Augment(scale_range=(0.6, 1.2), rotation_deg=60.0, translate=0.1, truncation_prob=0.0, color=0.0, hue=0.0,
                  blur_prob=0.0, noise_std=0.0, erase_prob=0.0)  # fmt: skip
    transform = HandDetBatch(size=192, augment=aug, flip_prob=0.5)
    for _ in range(4):
        out = transform(_batch(), training=True)
        for b in range(2):
            for h in range(2):
                if not bool(out["det_valid"][b, h]):
                    continue
                u, v = out["det_box"][b, h, :2].round().long().tolist()
                patch = out["det_images"][b, :, max(0, v - 1) : v + 2, max(0, u - 1) : u + 2]  # mirrored: colours swap slots
                assert float(patch.max()) > 0.3, "the hand's dot moved away from its target"


def test_hands_pushed_out_of_the_image_are_no_targets():
    batch = _batch(centres=(((40.0, 80.0), (400.0, 90.0)), ((50.0, 70.0), (120.0, 60.0))))
    out = HandDetBatch(size=192)(batch, training=False)
    assert out["det_valid"][0].tolist() == [True, False]
