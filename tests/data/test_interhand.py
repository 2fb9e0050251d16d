"""InterHand2.6M preparation (``im2hands data interhand``) on the tiny v1.0 fixture."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from im2hands.cli import main
from im2hands.config import load_config
from im2hands.data import format as fmt
from im2hands.data.dataset import HandsDataset, mesh_in_camera
from im2hands.data.interhand import (
    BOX_RATIO,
    CROP_SIZE,
    JOINTS_VIEW,
    crop_box,
    crop_image,
    interhand_intrinsics,
    prepare_interhand,
)
from im2hands.data.interhand_io import SPLIT_ID_BASE, parse_shard, read_split
from im2hands.geometry.crops import square_crop_intrinsics_np
from im2hands.hands.layer import load_hand_models
from im2hands.utils.errors import DataError, HandModelError, Im2HandsError

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_interhand import DARK, INVALID_JOINT, build_interhand_fixture  # noqa: E402

BASE = SPLIT_ID_BASE["test"]


@pytest.fixture(scope="module")
def ih(tmp_path_factory):
    return build_interhand_fixture(tmp_path_factory.mktemp("ih26m"))


@pytest.fixture(scope="module")
def prepared(ih, tmp_path_factory):
    out = tmp_path_factory.mktemp("ih_prepared")
    summary = prepare_interhand(ih.root, out, split="test", mano_dir=ih.mano_dir, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def models(ih):
    return load_hand_models(ih.mano_dir)


def sid(ih, key) -> str:
    return f"{BASE + ih.kept.index(key):07d}"


def project(points, K):
    q = np.asarray(points) @ np.asarray(K).T
    return q[:, :2] / q[:, 2:3]


# ----------------------------------------------------------------------------- reading and counting


def test_read_split_filters_like_intaghand(ih):
    index = read_split(ih.root, "test", "interacting")
    assert [(t.capture, t.frame_idx, t.camera_name) for t in index.tasks] == ih.kept
    assert index.num_annotations == 14 and index.dropped == ih.dropped
    assert [t.sample_id for t in index.tasks] == [f"{BASE + i:07d}" for i in range(len(ih.kept))]
    assert all(t.sides == ("left", "right") for t in index.tasks)
    single = read_split(ih.root, "test", "right")
    assert [(t.capture, t.frame_idx, t.camera_name) for t in single.tasks] == ih.single_right
    assert read_split(ih.root, "test", "interacting", limit=2).tasks[1].sample_id == f"{BASE + 1:07d}"


def test_kept_count_dark_and_report(ih, prepared):
    out, s = prepared
    assert s["kept"] == len(ih.kept) == 6 and s["assigned"] == 6 and s["annotations"] == 14
    assert s["dark"] == [sid(ih, DARK)] and s["failed"] == {}
    assert s["written"] == s["complete"] == ih.expected_complete == 5
    ids = fmt.list_samples(out, "test")
    assert ids == sorted(sid(ih, k) for k in ih.kept if k != DARK)
    meta = fmt.read_meta(out)
    assert meta["source"] == "interhand2.6m" and meta["image_size"] == [256, 256]
    assert meta["hand_model"]["name"] == "im2hands-open-hand-v2" and meta["num_samples"] == 5
    assert meta["interhand"]["splits"]["test"]["kept"] == 6
    report = json.loads((out / "reports" / "interhand_test.json").read_text())
    assert report["dark"] == s["dark"] and report["seconds_per_sample"] > 0
    saved = load_config(out / "config.yaml")  # the resolved config: the MANO folder it used
    assert Path(saved.hand_model.mano_dir).resolve() == Path(ih.mano_dir).resolve()
    assert not list(out.rglob("*.tmp*"))


# ----------------------------------------------------------------------------- geometry of each sample


def test_annotations_crop_and_keypoints(ih, prepared, models):
    out, _ = prepared
    for i, key in enumerate(ih.kept):
        if key == DARK:
            continue
        ann = fmt.read_annotation(out, f"{BASE + i:07d}")
        assert ann.image.endswith(".jpg") and (ann.width, ann.height) == (CROP_SIZE, CROP_SIZE)
        assert (ann.extra["capture"], ann.extra["frame_idx"], ann.extra["camera"]) == key
        assert ann.hand_model == models["right"].model_name and set(ann.hands) == {"left", "right"}
        verts = np.concatenate([mesh_in_camera(models[s], ann.hands[s], ann.R, ann.t).double().numpy()
                                for s in ("left", "right")])
        uv = project(verts, ann.K)
        lo, hi = uv.min(0), uv.max(0)
        np.testing.assert_allclose(max(hi - lo), BOX_RATIO * CROP_SIZE, rtol=1e-4)  # the box fills 80 %
        np.testing.assert_allclose((lo + hi) / 2, [CROP_SIZE / 2] * 2, atol=1e-3)
        for side, h in ann.hands.items():
            kp_uv = project(h.keypoints, ann.K)
            assert ((kp_uv > 0) & (kp_uv < CROP_SIZE)).all()
            np.testing.assert_allclose(h.keypoints_2d, kp_uv, atol=1e-3)
            # the fixture's joint_3d = the model's joints: the joint_3d chain (mm, world, order) is exact
            np.testing.assert_allclose(ann.extra["joints_interhand"][side], h.keypoints, atol=2e-5)
        # camera: t = -R campos / 1000, and K of the crop from the full image's K
        cams = json.loads((ih.root / "annotations/test/InterHand2.6M_test_camera.json").read_text())
        cam = cams[str(key[0])]
        R = np.asarray(cam["camrot"][key[2]])
        np.testing.assert_allclose(ann.R, R)
        np.testing.assert_allclose(ann.t, -R @ np.asarray(cam["campos"][key[2]]) / 1000.0, atol=1e-9)
        K_full = interhand_intrinsics(cam["focal"][key[2]], cam["princpt"][key[2]])
        crop = ann.extra["crop"]
        np.testing.assert_allclose(ann.K, square_crop_intrinsics_np(K_full, crop["x0"], crop["y0"], crop["side"], CROP_SIZE), rtol=1e-5)


def test_masks_depth_and_pixels_match_the_projected_mesh(ih, prepared, models):
    out, _ = prepared
    for sample_id in fmt.list_samples(out, "test"):
        ann = fmt.read_annotation(out, sample_id)
        masks = fmt.read_masks(out / ann.mask)
        depth = fmt.read_depth(out / ann.depth)
        image = fmt.read_image(out / ann.image).astype(float)
        union = np.zeros((CROP_SIZE, CROP_SIZE), bool)
        for side in ("left", "right"):
            amodal, visible = masks[f"{side}_amodal"], masks[f"{side}_visible"]
            assert visible.any() and not (visible & ~amodal).any()
            v = mesh_in_camera(models[side], ann.hands[side], ann.R, ann.t).double().numpy()
            uv = project(v, ann.K)
            col, row = np.floor(uv).astype(int).T
            inside = amodal[row.clip(0, 255), col.clip(0, 255)]
            assert inside.mean() > 0.9, (sample_id, side, inside.mean())  # silhouette vertices may fall just outside
            rows, cols = np.nonzero(amodal)
            np.testing.assert_allclose([cols.min(), rows.min()], uv.min(0), atol=1.5)
            np.testing.assert_allclose([cols.max() + 1, rows.max() + 1], uv.max(0), atol=1.5)
            z = depth[visible]
            assert z.min() >= v[:, 2].min() - 1e-3 and z.max() <= v[:, 2].max() + 1e-3
            union |= visible
        assert not (masks["left_visible"] & masks["right_visible"]).any()
        assert ((depth > 0) == union).all()
        # the crop's pixels show the rendered hands where the masks say (skin is red, background blue,
        # padding beyond the photo black: its JPEG noise can have red > blue, so skin must also be bright)
        skin = (image[..., 0] > image[..., 2]) & (image[..., 0] > 60)
        iou = (skin & union).sum() / (skin | union).sum()
        assert iou > 0.95, (sample_id, iou)


def test_crop_helpers_agree_with_each_other():
    rng = np.random.default_rng(3)
    image = np.zeros((120, 90, 3), np.uint8)
    image[40:44, 30:34] = 255  # a 4 x 4 square centred at (32, 42) in corner-origin pixels
    K = interhand_intrinsics([100.0, 100.0], [44.5, 59.5])
    np.testing.assert_allclose(K[:2, 2], [45.0, 60.0])  # princpt + 0.5
    box = crop_box(np.array([[20.0, 30.0], [50.0, 62.0]]))
    assert box == pytest.approx((15.0, 26.0, 40.0))
    crop = crop_image(image, box, 80)
    rows, cols = np.nonzero(crop[..., 0] > 127)
    centre = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
    np.testing.assert_allclose(centre, [(32 - 15) * 2, (42 - 26) * 2], atol=0.3)
    X = rng.normal(size=(5, 3)) + [0, 0, 4]
    Kc = square_crop_intrinsics_np(K, *box, 80)
    np.testing.assert_allclose(project(X, Kc), (project(X, K) - [15.0, 26.0]) * 2.0, atol=1e-9)
    big = crop_image(image, (-50.0, -50.0, 200.0), 100)
    assert big[:20].max() == 0 and big[-20:].max() == 0  # outside the image: black


# ----------------------------------------------------------------------------- the joint_3d view


def test_joints_view_for_the_internet_protocol(ih, prepared):
    out, _ = prepared
    view = out / JOINTS_VIEW
    ids = fmt.list_samples(view, "test")
    assert ids == fmt.list_samples(out, "test")
    assert fmt.read_meta(view)["view"] == "joints_interhand"
    bad = sid(ih, INVALID_JOINT[:3])
    for sample_id in ids:
        main_ann, view_ann = fmt.read_annotation(out, sample_id), fmt.read_annotation(view, sample_id)
        for side in ("left", "right"):
            np.testing.assert_allclose(view_ann.hands[side].keypoints, main_ann.extra["joints_interhand"][side])
        assert view_ann.hands["left"].valid == (sample_id != bad)
        assert view_ann.hands["right"].valid
        assert (view / view_ann.image).resolve() == (out / main_ann.image).resolve()
    valid = fmt.read_annotation(out, bad).extra["joints_interhand_valid"]["left"]
    assert valid.count(False) == 1 and valid[20] is False  # interhand joint 16 (pinky tip) = standard 20
    ds = HandsDataset(view, "test", fields=("image",), mano_dir=str(ih.mano_dir))
    assert ds[0]["image"].shape == (3, 256, 256)


# ----------------------------------------------------------------------------- resume, shards, failures


def test_resume_skips_complete_samples(ih, prepared):
    out, first = prepared
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "annotations").iterdir()}
    again = prepare_interhand(ih.root, out, split="test", mano_dir=ih.mano_dir, progress=False)
    assert again["skipped"] == 5 and again["written"] == 0 and again["dark"] == first["dark"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "annotations").iterdir()} == stamps


@pytest.mark.slow
def test_shards_union_equals_the_full_run(ih, prepared, tmp_path):
    out, _ = prepared
    sharded = tmp_path / "sharded"
    a = prepare_interhand(ih.root, sharded, split="test", mano_dir=ih.mano_dir, shard="0/2", progress=False)
    b = prepare_interhand(ih.root, sharded, split="test", mano_dir=ih.mano_dir, shard=(1, 2), workers=2,
                          progress=False)
    assert a["assigned"] == b["assigned"] == 3 and a["written"] + b["written"] == 5
    assert fmt.list_samples(sharded, "test") == fmt.list_samples(out, "test")  # the last shard wrote the full list
    for sample_id in fmt.list_samples(out, "test"):
        full = json.loads((out / "annotations" / f"{sample_id}.json").read_text())
        part = json.loads((sharded / "annotations" / f"{sample_id}.json").read_text())
        assert part == full
    assert (sharded / "reports" / "interhand_test_shard1of2.json").is_file()


def test_missing_and_corrupt_images_are_reported_and_skipped(ih, tmp_path, capsys):
    root = tmp_path / "ih"
    shutil.copytree(ih.root, root)
    corrupt, missing = ih.kept[0], ih.kept[1]
    path = root / ih.images[corrupt].relative_to(ih.root)
    path.write_bytes(path.read_bytes()[:600])  # a truncated JPEG
    (root / ih.images[missing].relative_to(ih.root)).unlink()
    mano_file = root / "annotations/test/InterHand2.6M_test_MANO_NeuralAnnot.json"
    mano = json.loads(mano_file.read_text())
    malformed = ih.kept[4]  # its frame is seen by kept[4] and kept[5]
    mano[str(malformed[0])][str(malformed[1])]["left"]["pose"] = [0.0] * 47
    mano_file.write_text(json.dumps(mano))
    out = tmp_path / "out"
    args = ["data", "interhand", "--root", str(root), "--mano-dir", str(ih.mano_dir), "--split", "test",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 1
    report = json.loads((out / "reports" / "interhand_test.json").read_text())
    assert set(report["failed"]) == {sid(ih, k) for k in (corrupt, missing, *ih.kept[4:6])}
    assert "unreadable image" in report["failed"][sid(ih, corrupt)]
    assert "image not found" in report["failed"][sid(ih, missing)]
    assert "malformed NeuralAnnot 'left.pose'" in report["failed"][sid(ih, malformed)]
    assert fmt.list_samples(out, "test") == sorted(sid(ih, k) for k in ih.kept[2:4] if k != DARK)
    assert main(args) == 1  # still failing on a rerun, nothing else redone


def test_single_hand_type_and_meta_conflicts(ih, prepared, tmp_path, models):
    out = tmp_path / "right"
    s = prepare_interhand(ih.root, out, split="test", mano_dir=ih.mano_dir, hand_type="right", progress=False)
    assert s["complete"] == 2 and not s["failed"]
    for sample_id in fmt.list_samples(out, "test"):
        ann = fmt.read_annotation(out, sample_id)
        assert set(ann.hands) == {"right"}
        masks = fmt.read_masks(out / ann.mask)
        assert masks["right_visible"].any() and not masks["left_amodal"].any()
        v = mesh_in_camera(models["right"], ann.hands["right"], ann.R, ann.t).double().numpy()
        uv = project(v, ann.K)
        assert max(uv.max(0) - uv.min(0)) == pytest.approx(0.8 * 256, rel=1e-4)
    with pytest.raises(DataError, match="--hand-type interacting"):
        prepare_interhand(ih.root, prepared[0], split="test", mano_dir=ih.mano_dir, hand_type="right", progress=False)


def test_clear_errors(ih, tmp_path, monkeypatch, capsys):
    kw = dict(split="test", mano_dir=ih.mano_dir, progress=False)
    with pytest.raises(DataError, match="root .* does not exist"):
        prepare_interhand(tmp_path / "nope", tmp_path / "o", **kw)
    root = tmp_path / "ih"
    shutil.copytree(ih.root / "annotations", root / "annotations")
    with pytest.raises(DataError, match="image folder .*images/test not found"):
        prepare_interhand(root, tmp_path / "o", **kw)
    (root / "images" / "test").mkdir(parents=True)
    (root / "annotations/test/InterHand2.6M_test_camera.json").unlink()
    with pytest.raises(DataError, match="InterHand2.6M_test_camera.json not found"):
        prepare_interhand(root, tmp_path / "o", **kw)
    with pytest.raises(DataError, match="InterHand2.6M_val_data.json not found"):
        prepare_interhand(ih.root, tmp_path / "o", split="val", mano_dir=ih.mano_dir, progress=False)
    with pytest.raises(HandModelError, match="does not exist"):
        prepare_interhand(ih.root, tmp_path / "o", split="test", mano_dir=tmp_path / "no_mano", progress=False)
    monkeypatch.delenv("IM2HANDS_MANO_DIR", raising=False)
    with pytest.raises(Im2HandsError, match="--mano-dir"):
        prepare_interhand(ih.root, tmp_path / "o", split="test", progress=False)
    with pytest.raises(DataError, match="I/N"):
        parse_shard("2")
    with pytest.raises(DataError, match="0 <= I < N"):
        parse_shard("2/2")
    assert main(["data", "interhand", "--root", str(tmp_path / "nope"), "--mano-dir", str(ih.mano_dir),
                 "--split", "test", "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dataset_reads_the_prepared_folder(ih, prepared):
    out, _ = prepared
    ds = HandsDataset(out, "test", mano_dir=str(ih.mano_dir), num_points=64)
    item = ds[0]
    assert item["image"].shape == (3, 256, 256) and item["vertices"].shape[0] == 2
    assert item["points"].shape == (2, 64, 3) and torch.isfinite(item["occupancy"]).all()
