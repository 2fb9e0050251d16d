"""``im2hands extract --keypoints-only`` (:mod:`im2hands.extraction.keypoint_job`): keypoint files
only, per item, with a summary; bad items recorded and skipped; resumable."""

import json
from pathlib import Path

import numpy as np
import pytest

from im2hands.cli import main
from im2hands.config.schema import SynthConfig
from im2hands.data import format as fmt
from im2hands.data.files import read_keypoints
from im2hands.data.synthetic import synthesize
from im2hands.extraction.hand_crops import HandCropPipeline
from im2hands.extraction.keypoint_job import estimate_keypoints_folder
from im2hands.extraction.keypoints import EstimatedHands
from im2hands.utils.errors import Im2HandsError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("kp_job_synth")
    synthesize(root, 3, seed=5, workers=1, settings=SynthConfig(image_size=64), progress=False)
    return root


class _Shifted(HandCropPipeline):
    """A stand-in estimator: the dataset's own keypoints 1 cm to the right (known answers), the
    no hand at all on an image whose mean pixel value is at most ``dark``."""

    def __init__(self, root, dark=-1.0):
        self.root, self.dark, self.calls = root, dark, 0
        self.truth = {}
        for sid in fmt.list_samples(root):
            ann = fmt.read_annotation(root, sid)
            self.truth[round(float(ann.K[0][2]), 6)] = {s: h.keypoints for s, h in ann.hands.items() if h.valid}

    def __call__(self, image, K):
        self.calls += 1
        if image.mean() <= self.dark:
            return EstimatedHands({}, K, np.zeros((2, 21, 3)), np.zeros((2, 21, 2)), np.zeros(2), np.zeros(2))
        gt = self.truth[round(float(K[0][2]), 6)]
        joints = {s: np.asarray(j) + [0.01, 0.0, 0.0] for s, j in gt.items()}
        return EstimatedHands(joints, K, np.zeros((2, 21, 3)), np.zeros((2, 21, 2)), np.ones(2), np.zeros(2))


def test_writes_one_keypoint_file_per_image_and_resumes(synth, tmp_path):
    out = tmp_path / "kp"
    est = _Shifted(synth)
    summary = estimate_keypoints_folder(out, dataset=synth, split="all", estimator=est, progress=False)
    ids = fmt.list_samples(synth)
    assert summary["finished"] and summary["totals"] == {**summary["totals"], "processed": 3, "ok": 3, "failed": 0}
    for sid in ids:
        ann = fmt.read_annotation(synth, sid)
        kf = read_keypoints(out / f"{sid}_keypoints.json")
        np.testing.assert_allclose(kf.K, ann.K)
        for side, joints in kf.joints.items():
            np.testing.assert_allclose(joints - ann.hands[side].keypoints, np.tile([0.01, 0, 0], (21, 1)), atol=1e-6)
    assert json.loads((out / "summary.json").read_text())["format"] == "im2hands-keypoints-summary"
    with pytest.raises(Im2HandsError, match="earlier"):
        estimate_keypoints_folder(out, dataset=synth, split="all", estimator=est, progress=False)
    calls = est.calls
    again = estimate_keypoints_folder(out, dataset=synth, split="all", estimator=est, progress=False, existing="resume")
    assert est.calls == calls and again["totals"]["ok"] == 3  # nothing estimated twice


def test_images_without_hands_are_failed_items_and_the_job_finishes(synth, tmp_path):
    out = tmp_path / "kp"
    summary = estimate_keypoints_folder(out, dataset=synth, split="all", estimator=_Shifted(synth, dark=1e9),
                                        progress=False)  # fmt: skip
    assert summary["totals"]["failed"] == 3 and summary["finished"]
    assert all("found no hand" in r["message"] for r in summary["items"])
    assert not list(out.glob("*_keypoints.json"))


def test_cli_refuses_keypoints_only_with_a_keypoint_folder(tmp_path, synth):
    with pytest.raises(SystemExit):
        main(["extract", "--keypoints-only", "--keypoints", str(tmp_path), "--dataset", str(synth), "--out",
              str(tmp_path / "o")])  # fmt: skip
    with pytest.raises(Im2HandsError, match="--images DIR or --dataset DIR"):
        estimate_keypoints_folder(tmp_path / "o2", progress=False)


def test_cli_on_the_real_photos_with_the_shipped_networks(tmp_path):
    """``im2hands extract --images eval/real_photos/images --keypoints-only``: one keypoint file per
    photo in its own camera, the hands the full extraction finds (docs/results.md: both hands of
    the touching pair, the one hand of each one-hand photo, no false hand)."""
    photos = Path(__file__).resolve().parents[2] / "eval" / "real_photos"
    out = tmp_path / "kp"
    assert main(["extract", "--images", str(photos / "images"), "--keypoints-only", "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["ok"] == 4 and summary["settings"]["hand_finding"]["keypoint_tta"] == [[10.0, 1.0], [-10.0, 1.0]]
    found = {r["name"]: r["hands"] for r in summary["items"]}
    assert found["ih_02017_410028"] == ["right"] and found["ih_29590_410053"] == ["left"]
    assert found["ih_69148_400026"] == ["left", "right"]
    for r in summary["items"]:
        kf = read_keypoints(out / f"{r['name']}_keypoints.json")
        np.testing.assert_allclose(kf.K, json.loads((photos / "images" / f"{r['name']}.json").read_text())["camera"]["K"])
        assert sorted(kf.joints) == r["hands"]
