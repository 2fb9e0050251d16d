"""Palm-detector decoding (anchors, boxes, weighted / plain NMS) and upright crops, on constructed cases."""

from __future__ import annotations

import math

import pytest
import torch

from im2hands.geometry.crops import Roi, crop_images, crop_to_image, image_to_crop, upright_roi
from im2hands.models.mediapipe.palm import box_iou, decode, nms, ssd_anchors


def test_ssd_anchor_layout():
    a = ssd_anchors()
    assert a.shape == (2016, 2)
    torch.testing.assert_close(a[0], torch.tensor([0.5 / 24, 0.5 / 24]))
    torch.testing.assert_close(a[1], a[0])  # 2 anchors per cell at stride 8
    torch.testing.assert_close(a[2], torch.tensor([1.5 / 24, 0.5 / 24]))  # x runs fastest
    torch.testing.assert_close(a[48], torch.tensor([0.5 / 24, 1.5 / 24]))
    torch.testing.assert_close(a[1152:1158], torch.tensor([[0.5 / 12, 0.5 / 12]]).expand(6, 2))  # 6 per cell
    torch.testing.assert_close(a[-1], torch.tensor([11.5 / 12, 11.5 / 12]))


def _raw(entries: dict[int, tuple[float, float, float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    raw = torch.zeros(1, 2016, 18)
    logits = torch.full((1, 2016), -20.0)
    for i, (dx, dy, w, h) in entries.items():
        raw[0, i, :4] = torch.tensor([dx, dy, w, h])
        raw[0, i, 4::2] = dx + torch.arange(7.0)  # keypoint k at (dx + k, dy) input pixels from the anchor
        raw[0, i, 5::2] = dy
    return raw, logits


def test_decode_one_box_analytic():
    raw, logits = _raw({100: (9.6, -19.2, 38.4, 19.2)})
    logits[0, 100] = math.log(0.8 / 0.2)  # sigmoid -> 0.8
    (d,) = decode(raw, logits, ssd_anchors())
    ax, ay = (100 % 48 // 2 + 0.5) / 24, (100 // 48 + 0.5) / 24
    cx, cy = ax + 0.05, ay - 0.1
    torch.testing.assert_close(d.boxes, torch.tensor([[cx - 0.1, cy - 0.05, cx + 0.1, cy + 0.05]]))
    torch.testing.assert_close(d.scores, torch.tensor([0.8]))
    torch.testing.assert_close(d.keypoints[0, 3], torch.tensor([ax + (9.6 + 3) / 192, cy]))


def test_weighted_and_plain_nms():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [2.0, 2.0, 3.0, 3.0], [0.6, 0.0, 1.6, 1.0]])
    kps = boxes[:, None, :2].expand(4, 7, 2).clone()
    scores = torch.tensor([0.6, 0.9, 0.7, 0.8])
    # IoU(1, 0) = 0.9/1.1 > 0.3 (merged); IoU(1, 3) = 0.5/1.5 = 0.333 > 0.3 (merged); box 2 is alone
    assert box_iou(boxes[1:2], boxes[3:4]).item() == pytest.approx(1 / 3)
    w = nms(boxes, kps, scores, iou_threshold=0.3, weighted=True)
    assert w.scores.tolist() == pytest.approx([0.9, 0.7])
    expect = (0.9 * boxes[1] + 0.6 * boxes[0] + 0.8 * boxes[3]) / (0.9 + 0.6 + 0.8)
    torch.testing.assert_close(w.boxes[0], expect)
    torch.testing.assert_close(w.keypoints[0, 4], expect[:2])
    torch.testing.assert_close(w.boxes[1], boxes[2])
    p = nms(boxes, kps, scores, iou_threshold=0.3, weighted=False)
    torch.testing.assert_close(p.boxes, boxes[[1, 2]])
    q = nms(boxes, kps, scores, iou_threshold=0.5, weighted=False)  # box 3 now survives
    torch.testing.assert_close(q.boxes, boxes[[1, 3, 2]])


def test_decode_threshold_and_empty():
    raw, logits = _raw({5: (0, 0, 10, 10), 1500: (0, 0, 20, 20)})
    logits[0, 5], logits[0, 1500] = 0.1, -0.1  # 0.525 and 0.475
    (d,) = decode(raw, logits, ssd_anchors(), score_threshold=0.5)
    assert len(d.scores) == 1
    (e,) = decode(raw, logits, ssd_anchors(), score_threshold=0.9)
    assert e.boxes.shape == (0, 4) and e.keypoints.shape == (0, 7, 2)


def _hand(angle: float) -> torch.Tensor:
    """21 keypoints: wrist at the origin, middle MCP 40 px 'up' along ``angle``, others spread around."""
    g = torch.Generator().manual_seed(1)
    local = torch.rand(21, 2, generator=g) * torch.tensor([60.0, 90.0]) - torch.tensor([30.0, 90.0])
    local[0] = torch.tensor([0.0, 0.0])
    local[9] = torch.tensor([0.0, -40.0])
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]])
    return local @ rot.T + torch.tensor([120.0, 130.0])


@pytest.mark.parametrize("angle", [0.0, 0.7, -2.5, math.pi])
def test_upright_crop_puts_wrist_below_middle_and_maps_back(angle):
    kp = _hand(angle)[None]
    roi = upright_roi(kp, scale=2.0)
    in_crop = image_to_crop(kp, roi, 224)[0]
    wrist, mid = in_crop[0], in_crop[9]
    assert wrist[0].item() == pytest.approx(mid[0].item(), abs=1e-3) and wrist[1] > mid[1]  # wrist straight below
    extent = (in_crop.amax(0) - in_crop.amin(0)).max()
    assert extent.item() == pytest.approx(112.0, abs=1e-2)  # scale 2: the hand spans half the crop
    centre = (in_crop.amax(0) + in_crop.amin(0)) / 2
    torch.testing.assert_close(centre, torch.tensor([112.0, 112.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(crop_to_image(in_crop[None], roi, 224)[0], kp[0], atol=1e-3, rtol=0)


def test_mirrored_crop_is_the_flipped_crop():
    kp = _hand(0.4)[None]
    img = torch.rand(3, 240, 260, generator=torch.Generator().manual_seed(2))
    roi, mroi = upright_roi(kp, scale=1.8), upright_roi(kp, scale=1.8, mirror=torch.tensor([True]))
    # equal up to float rounding of the sample positions (bilinear weights differ in the last bits)
    torch.testing.assert_close(crop_images(img, mroi, 64), crop_images(img, roi, 64).flip(-1), atol=1e-4, rtol=0)
    p = torch.tensor([[[10.0, 20.0]]])
    torch.testing.assert_close(crop_to_image(p, mroi, 64), crop_to_image(torch.tensor([[[54.0, 20.0]]]), roi, 64))


def test_identity_crop_copies_pixels():
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    roi = Roi(torch.tensor([[8.0, 8.0]]), torch.tensor([16.0]), torch.zeros(1))
    torch.testing.assert_close(crop_images(img, roi, 16)[0], img, atol=1e-6, rtol=0)
