"""The Python API (``from im2hands import HandReconstructor``) on the shipped weights: given
keypoints and an image give watertight meshes in the camera frame at those keypoints, no file
is written, bad inputs raise the CLI's errors; a real photo goes through the default hand
finding (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from im2hands import HandReconstructor
from im2hands.data import format as fmt
from im2hands.data.files import keypoints_to_dict
from im2hands.models.mediapipe.fetch import MediaPipeWeightsError, model_path
from im2hands.utils.errors import DataError, Im2HandsError

PHOTO = Path(__file__).resolve().parents[1] / "eval" / "real_photos" / "images" / "ih_29590_410053.jpg"


def _have_mediapipe() -> bool:
    try:
        model_path("hand_landmark_full.tflite"), model_path("palm_detection_full.tflite")
    except MediaPipeWeightsError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _have_mediapipe(), reason="MediaPipe files not cached (im2hands weights fetch-mediapipe)")


@pytest.fixture(scope="module")
def rec():
    return HandReconstructor.from_pretrained(device="cpu", resolution=16, upsampling_steps=2)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from im2hands.config.schema import SynthConfig
    from im2hands.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("api_data")
    synthesize(root, 1, seed=3, workers=1, settings=SynthConfig(image_size=128), progress=False)
    ann = fmt.read_annotation(root, "0000000")
    return root / ann.image, ann


def test_given_keypoints_give_meshes_at_them_and_write_nothing(rec, sample, tmp_path, monkeypatch):
    path, ann = sample
    monkeypatch.chdir(tmp_path)
    joints = {s: h.keypoints for s, h in ann.hands.items()}
    kp = keypoints_to_dict(joints, ann.K)
    for image in (path, Image.open(path), fmt.read_image(path)):  # path, PIL image, array
        out = rec(image, keypoints=kp)
        for side in ("left", "right"):
            hand = getattr(out, side)
            assert hand.mesh.is_watertight and np.allclose(hand.keypoints, joints[side])
            centre, wrist_to_tip = hand.mesh.vertices.mean(0), np.linalg.norm(joints[side][12] - joints[side][0])
            assert np.linalg.norm(centre - joints[side][9]) < wrist_to_tip  # the mesh is at the hand
        assert out.keypoints_source == "given" and np.allclose(out.K, ann.K)
    picture = out.overlay()
    assert picture.size == (2 * 128, 128)
    assert list(tmp_path.iterdir()) == []  # nothing written
    one = rec(path, K=ann.K, keypoints=keypoints_to_dict({"right": joints["right"]}))
    assert one.left.mesh is None and one.left.keypoints is None and one.right.mesh is not None
    assert len(rec.batch([path, path], keypoints=[kp, kp])) == 2


def test_bad_inputs_raise_the_cli_messages(rec, sample):
    path, ann = sample
    kp = keypoints_to_dict({s: h.keypoints for s, h in ann.hands.items()}, ann.K)
    with pytest.raises(DataError, match="uint8"):
        rec(np.zeros((64, 64, 3), np.float32), keypoints=kp)
    with pytest.raises(DataError, match="too small"):
        rec(np.zeros((8, 8, 3), np.uint8), keypoints=kp)
    with pytest.raises(DataError, match=r"K: expected a \(3, 3\)"):
        rec(path, K=np.eye(2), keypoints=kp)
    bad = dict(kp, left={"joints": [[float("nan")] * 3] * 21})
    with pytest.raises(DataError, match="NaN"):
        rec(path, keypoints=bad)
    with pytest.raises(DataError, match="image not found"):
        rec(path.with_name("nope.png"))
    with pytest.raises(Im2HandsError, match="2 images but 1 cameras"):
        rec.batch([path, path], Ks=[None])
    with pytest.raises(Im2HandsError, match="focal"):
        HandReconstructor.from_pretrained(focal=-5)
    with pytest.raises(Im2HandsError, match="precision"):
        HandReconstructor.from_pretrained(precision="fp8")
    assert HandReconstructor.from_pretrained(precision="float32").extractor.precision == "float32"


@pytest.mark.slow
def test_a_real_photo_through_the_default_hand_finding(rec):
    out = rec(PHOTO, K=fmt.read_json(PHOTO.with_suffix(".json"))["camera"]["K"])
    assert out.right.mesh is None and out.left.mesh is not None and out.left.mesh.is_watertight
    assert set(out.regions) == {"left"} and out.keypoints_source == "estimator"
    assert os.path.exists(PHOTO)


def test_batch_runs_the_encoder_once_and_matches_one_by_one(rec, sample, monkeypatch):
    path, ann = sample
    kp = keypoints_to_dict({s: h.keypoints for s, h in ann.hands.items()}, ann.K)
    one = [rec(path, keypoints=kp), rec(np.ascontiguousarray(fmt.read_image(path)[:, ::-1]), keypoints=kp)]
    calls = []
    real = type(rec.extractor).encode

    def counting(self, batch):
        calls.append(batch["image"].shape[0])
        return real(self, batch)

    monkeypatch.setattr(type(rec.extractor), "encode", counting)
    many = rec.batch([path, np.ascontiguousarray(fmt.read_image(path)[:, ::-1])], keypoints=[kp, kp])
    assert calls == [2]  # one encoder pass for both images
    for a, b in zip(one, many):
        for side in ("left", "right"):
            ma, mb = getattr(a, side).mesh, getattr(b, side).mesh
            assert abs(ma.volume - mb.volume) <= 0.01 * abs(ma.volume)
            assert np.abs(ma.vertices.mean(0) - mb.vertices.mean(0)).max() < 1e-4
