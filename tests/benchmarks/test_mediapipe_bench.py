"""The MediaPipe accuracy / speed benchmark: letterbox geometry (always) and a one-sample run
(skipped without the cached .tflite files)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from im2hands.config.schema import SynthConfig
from im2hands.benchmarks.mediapipe import landmark_accuracy, landmark_speed, letterbox, palm_recall, port_differences
from im2hands.models.mediapipe.fetch import MediaPipeWeightsError, model_path


def test_letterbox_maps_fractions_back_to_pixels():
    img = torch.zeros(1, 3, 40, 80)
    img[..., 10:20, 60:70] = 1.0  # a bright square, centre (65, 15) in pixels
    x, to_image = letterbox(img, 32)
    assert x.shape == (1, 3, 32, 32)
    ys, xs = torch.nonzero(x[0, 0] > 0.5, as_tuple=True)
    centre_frac = torch.tensor([[(xs.float().mean() + 0.5) / 32, (ys.float().mean() + 0.5) / 32]])
    torch.testing.assert_close(to_image(centre_frac), torch.tensor([[65.0, 15.0]]), atol=1.5, rtol=0)
    torch.testing.assert_close(to_image(torch.tensor([[0.0, 0.0], [1.0, 1.0]])),
                               torch.tensor([[0.0, -20.0], [80.0, 60.0]]))


def _cached() -> bool:
    try:
        model_path("hand_landmark_full.tflite")
        model_path("palm_detection_full.tflite")
    except MediaPipeWeightsError:
        return False
    return True


@pytest.mark.skipif(not _cached(), reason="MediaPipe files not cached (im2hands weights fetch-mediapipe)")
def test_accuracy_speed_and_palm_run_on_one_sample(tmp_path):
    from im2hands.data.synthetic import synthesize

    synthesize(tmp_path / "d", 1, seed=3, workers=1, settings=SynthConfig(), progress=False)
    acc = landmark_accuracy(tmp_path / "d", scale=1.6)
    assert acc["hands"] == 2 and acc["samples"] == 1
    for mode in ("unmirrored", "mirror_left"):
        m = acc[mode]
        assert math.isfinite(m["kp_err_px_mean"]) and 0 < m["kp_err_px_median"] <= m["kp_err_px_mean"] * 3
        assert 0 <= m["presence_min"] <= m["presence_mean"] <= 1
        assert m["handedness_acc_right_if_above"] + m["handedness_acc_right_if_below"] == pytest.approx(1.0)
    # the right hand is the same crop in both modes
    assert acc["unmirrored"]["handedness_mean_right"] == pytest.approx(acc["mirror_left"]["handedness_mean_right"])
    palm = palm_recall(tmp_path / "d")
    assert palm["hands"] == 2 and 0 <= palm["found"] <= 2
    speed = landmark_speed((2,), repeats=1, threads=1)
    assert speed["batch_2_images_per_s"] > 0
    diffs = port_differences(Path(__file__).parents[1] / "models" / "mediapipe" / "reference.npz")
    assert diffs["keypoints_2d_px"] < 0.01 and diffs["palm_logit"] < 1e-3
