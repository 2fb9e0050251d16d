"""The torch port of MediaPipe's hand networks against the original's recorded outputs.

``reference.npz`` holds inputs and the TFLite interpreter's outputs (eval/record_mediapipe_reference.py).
Tolerances: 0.01 crop pixels on keypoints and relative depth (measured: 2e-4), 1e-5 on the
probabilities (measured: 5e-6), 1e-5 m on world landmarks (measured: 3e-7), 0.01 input pixels on
the palm regressions (measured: 2e-4) and 1e-3 on the palm logits (measured: 2e-5).
Skipped when the cached .tflite files are absent (``im2hands weights fetch-mediapipe``; ``make test``
fetches them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from im2hands.models.mediapipe.fetch import missing_files

REFERENCE = Path(__file__).with_name("reference.npz")




_missing = missing_files()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"MediaPipe files not cached: {_missing}")


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def landmark_net():
    from im2hands.models.mediapipe.hand_landmark import HandLandmarkNet

    return HandLandmarkNet().eval()


@pytest.fixture(scope="module")
def palm_net():
    from im2hands.models.mediapipe.palm import PalmDetector

    return PalmDetector().eval()


def _images(u8: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return (torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0).to(device)


def _check_landmarks(out, ref) -> None:
    kp = ref["landmark_Identity"].reshape(-1, 21, 3)
    np.testing.assert_allclose(out.keypoints_2d.cpu().numpy(), kp[..., :2], rtol=0, atol=0.01)
    np.testing.assert_allclose(out.z.cpu().numpy(), kp[..., 2], rtol=0, atol=0.01)
    np.testing.assert_allclose(out.presence.cpu().numpy(), ref["landmark_Identity_1"][:, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.handedness.cpu().numpy(), ref["landmark_Identity_2"][:, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.world.cpu().numpy(), ref["landmark_Identity_3"].reshape(-1, 21, 3), rtol=0, atol=1e-5)


def test_landmarks_match_tflite(landmark_net, ref):
    with torch.no_grad():
        out = landmark_net(_images(ref["landmark_inputs"]))
    assert out.keypoints_2d.shape == (3, 21, 2) and out.world.shape == (3, 21, 3)
    _check_landmarks(out, ref)
    # the stored crops: two hands (presence high) and a procedural image (presence low)
    assert (out.presence[:2] > 0.5).all() and out.presence[2] < 0.1


def test_landmarks_batch_of_one_equals_batch(landmark_net, ref):
    x = _images(ref["landmark_inputs"])
    with torch.no_grad():
        full = landmark_net(x).keypoints_2d
        single = torch.cat([landmark_net(x[i:i + 1]).keypoints_2d for i in range(len(x))])
    torch.testing.assert_close(single, full, rtol=0, atol=1e-3)


def test_palm_matches_tflite_and_decodes(palm_net, ref):
    from im2hands.models.mediapipe.palm import decode

    x = _images(ref["palm_inputs"])
    with torch.no_grad():
        raw, logits = palm_net(x)
    np.testing.assert_allclose(raw.numpy(), ref["palm_Identity"], rtol=0, atol=0.01)
    np.testing.assert_allclose(logits.numpy(), ref["palm_Identity_1"][..., 0], rtol=0, atol=1e-3)
    ours = palm_net.detect(x)[0]
    theirs = decode(torch.from_numpy(ref["palm_Identity"]), torch.from_numpy(ref["palm_Identity_1"][..., 0]),
                    palm_net.anchors)[0]
    assert len(ours.scores) == len(theirs.scores) >= 1
    torch.testing.assert_close(ours.boxes, theirs.boxes, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.keypoints, theirs.keypoints, rtol=0, atol=1e-4)
    b = ours.boxes[0]
    assert 0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1
    inside = (ours.keypoints[0] >= b[:2] - 0.05) & (ours.keypoints[0] <= b[2:] + 0.05)
    assert inside.all()  # the palm keypoints lie in (or at the rim of) their box


def test_weights_are_float32_parameters_and_trainable(landmark_net, ref):
    params = dict(landmark_net.named_parameters())
    assert len(params) > 90 and all(p.dtype == torch.float32 and p.requires_grad for p in params.values())
    x = _images(ref["landmark_inputs"][:1])
    out = landmark_net(x)
    out.keypoints_2d.sum().backward()
    grads = [p.grad for p in params.values()]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > 0.9 * len(grads)
    landmark_net.zero_grad(set_to_none=True)


@pytest.mark.gpu
def test_landmarks_on_cuda(ref):
    from im2hands.models.mediapipe.hand_landmark import HandLandmarkNet

    net = HandLandmarkNet().eval().to("cuda")
    with torch.no_grad():
        out = net(_images(ref["landmark_inputs"], "cuda"))
    # TF32 convolutions on the GPU are allowed a looser bound than the CPU's
    kp = ref["landmark_Identity"].reshape(-1, 21, 3)
    np.testing.assert_allclose(out.keypoints_2d.cpu().numpy(), kp[..., :2], rtol=0, atol=0.5)


def test_wrong_crop_size_is_one_clear_error(landmark_net, palm_net):
    from im2hands.utils.errors import Im2HandsError

    with pytest.raises(Im2HandsError, match=r"expects crops of shape \(B, 3, 224, 224\), got \(1, 3, 192, 192\)"):
        landmark_net(torch.zeros(1, 3, 192, 192))
    with pytest.raises(Im2HandsError, match=r"expects images of shape \(B, 3, 192, 192\)"):
        palm_net(torch.zeros(2, 3, 224, 224))
