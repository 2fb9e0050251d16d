"""Per-image camera files: ``NAME.json`` beside ``NAME.png`` gives ``extract --images`` that image's ``K``."""

import json

import numpy as np
import pytest
from PIL import Image

from im2hands.cli import main
from im2hands.extraction import run as run_mod
from im2hands.extraction.inputs import camera_file, read_camera, read_keypoints
from im2hands.extraction.oracle import SkeletonOccupancy
from im2hands.extraction.run import extract_folder
from im2hands.geometry.placement import default_intrinsics
from im2hands.utils.errors import DataError

FAST = dict(resolution=8, upsampling_steps=1, progress=False, overlay=False)
H, W = 60, 80
DEPTH = 0.5
# 21 pixel positions of a fan-shaped right "hand" (wrist at the bottom), all inside the image
UV = np.array([[40.0, 50.0]] + [[20.0 + 10.0 * f, 40.0 - 6.0 * j] for f in range(5) for j in range(4)])
FILE_K = np.array([[300.0, 0.0, 30.0], [0.0, 310.0, 20.0], [0.0, 0.0, 1.0]])


class FakePipeline:
    """Stands in for :class:`~im2hands.models.kpts_est.KeypointPipeline`: the same camera rule
    (the given ``K``, else ``focal`` or 1.2 x the longer side with a central principal point) and
    a placement that puts the fixed pixels :data:`UV` at depth :data:`DEPTH` through that ``K``."""

    def __init__(self, focal=None):
        self.focal, self.seen = focal, []

    def __call__(self, image, K=None):
        h, w = image.shape[:2]
        K = default_intrinsics(h, w, 1.2, focal=self.focal, dtype=None).double().numpy() if K is None else K
        self.seen.append(np.array(K))
        ray = np.concatenate([UV, np.ones((21, 1))], 1) @ np.linalg.inv(K).T  # (21, 3), z = 1
        return type("Found", (), {"joints": {"right": ray * DEPTH}, "K": K, "refined": False})()


def _image(path, focal_35mm=None):
    """A grey image; with ``focal_35mm`` a JPEG whose EXIF states that 35 mm equivalent focal length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.full((H, W, 3), 128, np.uint8))
    if focal_35mm is None:
        im.save(path)
        return
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = focal_35mm  # Exif sub-IFD: FocalLengthIn35mmFilm
    im.save(path, exif=exif)


def _run(tmp_path, monkeypatch, focal=None):
    fake = FakePipeline(focal)
    monkeypatch.setattr(run_mod, "load_estimator", lambda *args: (fake, {}))
    summary = extract_folder(tmp_path / "out", model=SkeletonOccupancy(), images=tmp_path / "img", estimator="x",
                             focal=focal, **FAST)  # fmt: skip
    return summary, {r["name"]: r for r in summary["items"]}, fake


def test_camera_file_is_read_and_places_the_hands(tmp_path, monkeypatch):
    """The file's K (focal and principal point) reaches the estimator, places the keypoints and
    is written with them; an image without a file gets the default camera."""
    _image(tmp_path / "img" / "a.png")
    _image(tmp_path / "img" / "b.png")
    (tmp_path / "img" / "a.json").write_text(json.dumps({"camera": {"K": FILE_K.tolist()}}))
    summary, items, fake = _run(tmp_path, monkeypatch)
    assert summary["totals"]["ok"] == 2
    assert np.allclose(fake.seen[0], FILE_K)
    assert items["a"]["camera"] == f"file {tmp_path / 'img' / 'a.json'}"
    assert items["b"]["camera"].startswith("default focal 96.0 px") and "image centre" in items["b"]["camera"]
    written = read_keypoints(tmp_path / "out" / "a_keypoints.json")
    assert np.allclose(written.K, FILE_K)
    # the placement used cx, cy of the file: x = (u - cx) z / fx, y = (v - cy) z / fy
    right = written.joints["right"]
    np.testing.assert_allclose(right[:, 0], (UV[:, 0] - 30.0) * DEPTH / 300.0, atol=1e-6)
    np.testing.assert_allclose(right[:, 1], (UV[:, 1] - 20.0) * DEPTH / 310.0, atol=1e-6)
    default = read_keypoints(tmp_path / "out" / "b_keypoints.json")
    np.testing.assert_allclose(default.K[:2, 2], [W / 2, H / 2])
    np.testing.assert_allclose(default.joints["right"][:, 0], (UV[:, 0] - W / 2) * DEPTH / 96.0, atol=1e-6)


def test_camera_file_wins_over_focal(tmp_path, monkeypatch):
    _image(tmp_path / "img" / "a.png")
    _image(tmp_path / "img" / "b.png")
    (tmp_path / "img" / "a.json").write_text(json.dumps({"camera": {"K": FILE_K.tolist()}}))
    summary, items, fake = _run(tmp_path, monkeypatch, focal=500.0)
    assert np.allclose(fake.seen[0], FILE_K)  # a: the file
    assert fake.seen[1][0, 0] == 500.0 and fake.seen[1][1, 1] == 500.0  # b: --focal
    assert items["b"]["camera"] == "--focal 500, principal point at the image centre"
    assert np.allclose(read_keypoints(tmp_path / "out" / "a_keypoints.json").K, FILE_K)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"camera": {"K": [[300, 0, 30], [0, 310', "malformed JSON"),
        ('[1, 2]', "expected a JSON object"),
        ('{"K": [[300, 0, 30], [0, 310, 20], [0, 0, 1]]}', "needs 'camera'"),
        ('{"camera": {"K": [[300, 0, 30], [0, 310, 20]]}}', r"shape \(2, 3\), expected \(3, 3\)"),
        ('{"camera": {"K": [[300, 0, "a"], [0, 310, 20], [0, 0, 1]]}}', "array of numbers"),
        ('{"camera": {"K": [[NaN, 0, 30], [0, 310, 20], [0, 0, 1]]}}', "NaN"),
        ('{"camera": {"K": [[300, 0, 30], [0, 0, 20], [0, 0, 1]]}}', "positive focal"),
        ('{"camera": {"K": [[-300, 0, 30], [0, 310, 20], [0, 0, 1]]}}', "positive focal"),
        ('{"camera": {"K": [[300, 0, 30], [0, 310, 20], [0, 0, 2]]}}', r"must be \[\[fx, s, cx\]"),
    ],
)
def test_bad_camera_file(tmp_path, text, match):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_camera(path)
    assert str(path) in str(info.value)


def test_bad_camera_file_fails_its_item_only(tmp_path, monkeypatch, caplog):
    """Through the CLI: the item with the bad file fails with one message naming the file, the
    others are extracted, and the exit code is 1."""
    fake = FakePipeline()

    def load_estimator(estimator, refiner, device, focal, pair_scale=None, detector=None):
        fake.focal, fake.pair_scale, fake.detector = focal, pair_scale, detector  # the options reach the pipeline
        return fake, {}

    monkeypatch.setattr(run_mod, "load_estimator", load_estimator)
    monkeypatch.setattr(run_mod, "load_model", lambda path, **kwargs: (SkeletonOccupancy(), None))
    for name in "abc":
        _image(tmp_path / "img" / f"{name}.jpg")
    (tmp_path / "img" / "a.json").write_text(json.dumps({"camera": {"K": FILE_K.tolist()}}))
    (tmp_path / "img" / "b.json").write_text('{"camera": {"K": [[0, 0, 30], [0, 310, 20], [0, 0, 1]]}}')
    out = tmp_path / "out"
    code = main(["extract", "--images", str(tmp_path / "img"), "--out", str(out), "--resolution", "8",
                 "--upsampling-steps", "1", "--no-progress", "--focal", "200", "--pair-scale", "own",
                 "--detector", "mediapipe"])  # fmt: skip
    assert code == 1 and fake.pair_scale == "own" and fake.detector == "mediapipe"
    items = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["items"]}
    assert items["a"]["status"] == "ok" and items["c"]["status"] == "ok" and items["c"]["camera"].startswith("--focal 200")
    assert items["b"]["status"] == "failed" and str(tmp_path / "img" / "b.json") in items["b"]["message"]
    assert "positive focal" in items["b"]["message"] and len(fake.seen) == 2  # b never reached the estimator
    assert str(tmp_path / "img" / "b.json") in caplog.text  # the warning of the failed item


def test_camera_file_name():
    assert camera_file("x/photo.jpg").as_posix() == "x/photo.json"


def test_exif_focal_length_places_images_without_a_camera(tmp_path, monkeypatch):
    """No camera file and no --focal: the EXIF's 35 mm equivalent focal length gives the camera
    (f = f35 x image diagonal / 43.27 mm, principal point at the centre); a camera file still
    wins, and so does --focal."""
    _image(tmp_path / "img" / "a.jpg", focal_35mm=26)
    _image(tmp_path / "img" / "b.jpg", focal_35mm=26)
    _image(tmp_path / "img" / "c.png")  # no EXIF: the default camera
    (tmp_path / "img" / "b.json").write_text(json.dumps({"camera": {"K": FILE_K.tolist()}}))
    summary, items, fake = _run(tmp_path, monkeypatch)
    f = 26.0 * np.hypot(W, H) / np.hypot(36.0, 24.0)  # 60.1 px for this 80 x 60 image
    assert summary["totals"]["ok"] == 3
    np.testing.assert_allclose(fake.seen[0], [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    assert items["a"]["camera"].startswith("EXIF focal length 26 mm (35 mm equivalent) = 60.1 px")
    np.testing.assert_allclose(read_keypoints(tmp_path / "out" / "a_keypoints.json").K[0, 0], f)
    assert np.allclose(fake.seen[1], FILE_K) and items["b"]["camera"].startswith("file ")
    assert items["c"]["camera"].startswith("default focal 96.0 px")
    _image(tmp_path / "img2" / "a.jpg", focal_35mm=26)  # --focal given: it wins over the EXIF
    fake2 = FakePipeline(500.0)
    monkeypatch.setattr(run_mod, "load_estimator", lambda *args: (fake2, {}))
    s2 = extract_folder(tmp_path / "out2", model=SkeletonOccupancy(), images=tmp_path / "img2", estimator="x",
                        focal=500.0, **FAST)  # fmt: skip
    assert fake2.seen[0][0, 0] == 500.0 and s2["items"][0]["camera"].startswith("--focal 500")
