"""The detector wrapper of the crop pipeline (``MediaPipePalmDetector``) around a fake network:
palms to hand regions in image pixels, sides carried along, and what counts as one hand."""

import pytest
import torch
from torch import nn

from im2hands.extraction.mediapipe_hands import MediaPipePalmDetector
from im2hands.models.mediapipe.palm import INPUT_SIZE, PalmDetections


class FakePalms(nn.Module):
    """Two upright palms side by side (input fractions), 0.1 of the input wide, 0.005 apart;
    with ``sides``, right-hand probabilities 0.2 and 0.9."""

    def __init__(self, sides: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.sides = sides

    def detect(self, x, score_threshold=0.5):
        boxes = torch.tensor([[0.30, 0.45, 0.40, 0.55], [0.405, 0.45, 0.505, 0.55]])
        kps = torch.zeros(2, 7, 2)
        kps[:, 0] = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], -1)  # wrist at the bottom
        kps[:, 2] = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 1]], -1)  # middle base at the top
        right = torch.tensor([0.2, 0.9]) if self.sides else None
        return [PalmDetections(boxes, kps, torch.tensor([0.95, 0.9]), right_prob=right) for _ in range(len(x))]


def test_palms_become_upright_regions_in_image_pixels_with_their_sides():
    det = MediaPipePalmDetector(FakePalms(sides=True), merge_on="palm")(torch.rand(3, 192, 192))
    assert len(det.roi) == 2 and det.detector_side
    assert torch.allclose(det.right_prob, torch.tensor([0.2, 0.9], dtype=torch.float64))
    assert torch.allclose(det.roi.size, torch.full((2,), 2.6 * 0.1 * INPUT_SIZE, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(det.roi.angle, torch.zeros(2, dtype=torch.float64), atol=1e-6)  # fingers up
    # moved half a palm towards the fingers (up)
    assert torch.allclose(det.roi.center[0], torch.tensor([0.35 * 192, 0.5 * 192 - 0.5 * 0.1 * 192], dtype=torch.float64), atol=1e-3)


def test_two_hands_close_together_stay_two_when_merging_palms():
    image = torch.rand(3, 192, 192)
    regions = MediaPipePalmDetector(FakePalms(sides=False))(image)  # default: overlapping regions are one
    assert len(regions.roi) == 1 and regions.right_prob is None and not regions.detector_side
    palms = MediaPipePalmDetector(FakePalms(sides=False), merge_on="palm")(image)
    assert len(palms.roi) == 2
    with pytest.raises(ValueError, match="merge_on"):
        MediaPipePalmDetector(FakePalms(sides=False), merge_on="boxes")
