import json

import numpy as np
import pytest
import torch

from im2hands.config import load_config
from im2hands.data import format as fmt
from im2hands.data.synthetic import generate_sample, synthesize
from im2hands.geometry.frames import project
from im2hands.hands.layer import load_hand_models
from im2hands.utils.errors import DataError, Im2HandsError


def test_layout_splits_and_masks(synth_dir):
    meta = fmt.read_meta(synth_dir)
    assert meta["source"] == "synthetic" and meta["image_size"] == [96, 96]
    assert (synth_dir / "config.yaml").is_file()
    ids = fmt.list_samples(synth_dir, "all")
    assert ids == [fmt.sample_id(i) for i in range(6)]
    splits = {s: fmt.list_samples(synth_dir, s) for s in ("train", "val", "test")}
    assert splits["test"] == ["0000000", "0000003"] and splits["val"] == ["0000001", "0000004"]
    assert sorted(sum(splits.values(), [])) == ids
    for sid in ids:
        ann = fmt.read_annotation(synth_dir, sid)
        m = fmt.read_masks(synth_dir / ann.mask)
        depth = fmt.read_depth(synth_dir / ann.depth)
        for side in ("left", "right"):
            vis, amo = m[f"{side}_visible"], m[f"{side}_amodal"]
            assert amo.sum() > 50  # both hands are in view
            assert not (vis & ~amo).any()  # visible is a subset of amodal
        assert not (m["left_visible"] & m["right_visible"]).any()
        covered = m["left_visible"] | m["right_visible"]
        assert (depth[covered] > 0.1).all() and (depth[~covered] == 0).all()


def test_annotations_are_consistent(synth_dir):
    models = load_hand_models()
    for sid in fmt.list_samples(synth_dir, "all"):
        ann = fmt.read_annotation(synth_dir, sid)
        for side, hand in ann.hands.items():
            out = models[side](torch.tensor(hand.pose)[None].float(), torch.tensor(hand.shape)[None].float(),
                               torch.tensor(hand.trans)[None].float())
            kp = out.keypoints[0].double().numpy()
            assert np.abs(kp - hand.keypoints).max() < 1e-5  # stored keypoints == model keypoints
            uv = project(torch.tensor(kp)[None], torch.tensor(ann.K)[None])[0].numpy()
            assert np.abs(uv - hand.keypoints_2d).max() < 1e-3
            assert (hand.keypoints[:, 2] > 0.1).all()  # in front of the camera
        assert ann.extra["penetration_cm3"] <= 0.5 + 1e-9


def test_sample_is_pure_function_of_seed_and_index():
    cfg = load_config(None, ["synth.image_size=64"]).synth
    models = load_hand_models()
    a = generate_sample(3, 11, cfg, models)
    b = generate_sample(3, 11, cfg, models)
    c = generate_sample(4, 11, cfg, models)
    assert np.array_equal(a.image, b.image)
    assert a.annotation.extra == b.annotation.extra
    assert not np.array_equal(a.image, c.image)


def test_resume_regenerates_only_missing(tmp_path):
    cfg = load_config(None, ["synth.image_size=64"])
    synthesize(tmp_path, 3, seed=1, cfg=cfg, progress=False)
    before = (tmp_path / "images" / "0000001.png").read_bytes()
    (tmp_path / "annotations" / "0000001.json").unlink()  # as if interrupted before the annotation
    stamp = (tmp_path / "annotations" / "0000000.json").stat().st_mtime_ns
    summary = synthesize(tmp_path, 4, seed=1, cfg=cfg, progress=False)
    assert summary["skipped"] == 2 and summary["written"] == 2
    assert (tmp_path / "annotations" / "0000000.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "images" / "0000001.png").read_bytes() == before  # deterministic
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary files left
    with pytest.raises(DataError, match="different seed"):
        synthesize(tmp_path, 4, seed=2, cfg=cfg, progress=False)


def test_bad_options():
    with pytest.raises(Im2HandsError, match="--num"):
        synthesize("/tmp/never", 0)
    with pytest.raises(Im2HandsError, match="--workers"):
        synthesize("/tmp/never", 2, workers=0)


def test_two_workers_match_one(tmp_path):
    cfg = load_config(None, ["synth.image_size=64"])
    synthesize(tmp_path / "a", 3, seed=5, workers=1, cfg=cfg, progress=False)
    synthesize(tmp_path / "b", 3, seed=5, workers=2, cfg=cfg, progress=False)
    for sid in ("0000000", "0000002"):
        ja = json.loads((tmp_path / "a" / "annotations" / f"{sid}.json").read_text())
        jb = json.loads((tmp_path / "b" / "annotations" / f"{sid}.json").read_text())
        assert ja == jb
