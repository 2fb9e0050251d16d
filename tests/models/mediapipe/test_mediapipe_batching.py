"""Batched crops give what one crop at a time gives: the landmark network, and the whole crop
pipeline on a real photo (crop_batch=1, every crop alone, against the default batches and the
reuse of the scan's and probes' crops). Skipped when the cached .tflite files are absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from im2hands.models.mediapipe.fetch import missing_files

REFERENCE = Path(__file__).with_name("reference.npz")
PHOTOS = Path(__file__).resolve().parents[3] / "eval" / "real_photos" / "images"




pytestmark = [
    pytest.mark.skipif(missing_files() is not None, reason=f"MediaPipe files not cached: {missing_files()}"),
    pytest.mark.usefixtures("one_thread"),
]


def test_landmark_network_batch_equals_one_crop_at_a_time():
    from im2hands.models.mediapipe.hand_landmark import HandLandmarkNet

    net = HandLandmarkNet().eval()
    crops = torch.from_numpy(np.load(REFERENCE)["landmark_inputs"]).permute(0, 3, 1, 2).float() / 255.0
    crops = torch.cat([crops, crops.flip(-1)])  # 3 hand crops and their mirror images
    with torch.no_grad():
        batch = net(crops)
        alone = [net(crops[i : i + 1]) for i in range(len(crops))]
    for name, tol in (("keypoints_2d", 1e-3), ("world", 1e-6), ("presence", 1e-5), ("handedness", 1e-5)):
        single = torch.cat([getattr(a, name) for a in alone])
        assert torch.allclose(getattr(batch, name), single, atol=tol), name
    assert (batch.presence > 0.5).sum() >= 3  # real hands, not a trivial all-zero comparison


@pytest.mark.parametrize("photo", ["ih_69148_400026", "ih_29590_410053"])
def test_pipeline_batched_equals_one_crop_at_a_time(photo):
    """Both photos need the scan and further searches (26 + crops): every batch and reuse path runs."""
    from im2hands.extraction.mediapipe_hands import mediapipe_pipeline

    image = np.array(Image.open(PHOTOS / f"{photo}.jpg").convert("RGB"))
    K = np.array(json.loads((PHOTOS / f"{photo}.json").read_text())["camera"]["K"])
    batched, alone = mediapipe_pipeline(), mediapipe_pipeline(crop_batch=1)
    calls: dict[str, list[int]] = {"batched": [], "alone": []}
    for name, pipe in (("batched", batched), ("alone", alone)):
        forward = pipe.crop_net.forward
        pipe.crop_net.forward = lambda crops, _f=forward, _c=calls[name]: (_c.append(len(crops)), _f(crops))[1]
    a, b = batched(image, K), alone(image, K)
    assert set(a.joints) == set(b.joints) and len(a.joints) >= 1
    assert np.allclose(a.keypoints_2d, b.keypoints_2d, atol=1e-3, equal_nan=True)  # pixels
    assert np.allclose(a.keypoints, b.keypoints, atol=1e-5, equal_nan=True)  # metres
    assert np.allclose(a.presence, b.presence, atol=1e-5) and a.candidates == b.candidates
    assert max(calls["alone"]) == 1 and max(calls["batched"]) <= 8 and sum(calls["batched"]) == sum(calls["alone"])
    assert len(calls["batched"]) < len(calls["alone"])
