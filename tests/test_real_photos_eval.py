"""eval/real_photos.py: the scoring on constructed cases with known answers, and the whole script."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from im2hands.extraction.inputs import KeypointFile, read_keypoints, write_keypoints

SCRIPT = Path(__file__).resolve().parents[1] / "eval" / "real_photos.py"
_spec = importlib.util.spec_from_file_location("real_photos_eval", SCRIPT)
rp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rp)

F, Z = 1000.0, 0.5  # focal length (px) and the depth of every constructed joint (m)
K = np.array([[F, 0.0, 320.0], [0.0, F, 240.0], [0.0, 0.0, 1.0]])


def flat_hand(x0: float) -> np.ndarray:
    """(21, 3) joints on the plane z = Z: wrist at (x0, 0.04), five fingers of 4 joints fanning
    upwards; 2D size 0.08 m * F / Z = 160 px."""
    joints = [[x0, 0.04, Z]]
    for f in range(5):
        for j in range(4):
            joints.append([x0 - 0.04 + 0.02 * f, 0.02 - 0.02 * j, Z])
    return np.array(joints)


LEFT, RIGHT = flat_hand(-0.1), flat_hand(0.1)


def kf(**hands) -> KeypointFile:
    return KeypointFile(order="standard", K=K, joints=hands)


def test_exact_prediction_scores_zero():
    s = rp.score_item(kf(left=LEFT, right=RIGHT), kf(left=LEFT.copy(), right=RIGHT.copy()))
    assert s["false_hands"] == [] and s["mrrpe_mm"] == pytest.approx(0.0, abs=1e-9)
    for side in ("left", "right"):
        h = s["hands"][side]
        assert h["found"] and h["right_side"] and h["pred_side"] == side
        assert h["size_px"] == pytest.approx(160.0)
        assert h["error_2d_px"] == pytest.approx(0.0, abs=1e-9) and h["mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-9)


def test_known_offsets_give_known_errors():
    """Left hand moved 10 mm along x (parallel to the image): 2D 10 mm * F / Z = 20 px on every
    joint, wrist-aligned MPJPE 0, MRRPE 10 mm. Right hand: one tip moved 5 mm along x: MPJPE
    5/21 mm, 2D (5 mm * F / Z) / 21 = 10/21 px, MRRPE unchanged (the wrists did not move)."""
    left = LEFT + [0.01, 0.0, 0.0]
    right = RIGHT.copy()
    right[20, 0] += 0.005
    s = rp.score_item(kf(left=LEFT, right=RIGHT), kf(left=left, right=right))
    L, R = s["hands"]["left"], s["hands"]["right"]
    assert L["error_2d_px"] == pytest.approx(20.0) and L["mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-9)
    assert L["error_2d_px_at_150"] == pytest.approx(20.0 * 150.0 / 160.0)
    assert L["wrist_position_mm"] == pytest.approx(10.0) and R["wrist_position_mm"] == pytest.approx(0.0, abs=1e-9)
    assert R["error_2d_px"] == pytest.approx(10.0 / 21.0) and R["mpjpe_wrist_mm"] == pytest.approx(5.0 / 21.0)
    assert s["mrrpe_mm"] == pytest.approx(10.0)
    total = rp.summarize({"a": s})
    assert total["mean_error_2d_px"] == pytest.approx((20.0 + 10.0 / 21.0) / 2)
    assert total["mean_mpjpe_wrist_mm"] == pytest.approx(5.0 / 42.0) and total["mean_mrrpe_mm"] == pytest.approx(10.0)
    assert total["targets"] == {"every_hand_found_right_side": True, "no_false_hands": True,
                                "error_2d_px_at_150<=15": True, "mpjpe_wrist_mm<=35": True}  # fmt: skip


def test_swapped_sides_are_found_on_the_wrong_side():
    s = rp.score_item(kf(left=LEFT, right=RIGHT), kf(left=RIGHT.copy(), right=LEFT.copy()))
    assert s["false_hands"] == []
    for side, other in (("left", "right"), ("right", "left")):
        h = s["hands"][side]
        assert h["found"] and not h["right_side"] and h["pred_side"] == other
        assert h["error_2d_px"] == pytest.approx(0.0, abs=1e-9)  # paired by position, not by label
    total = rp.summarize({"a": s})
    assert total["found"] == 2 and total["found_right_side"] == 0
    assert not total["targets"]["every_hand_found_right_side"]


def test_extra_hand_is_false_and_missing_hand_is_missed():
    # one-hand photo, the prediction adds a left hand elsewhere
    s = rp.score_item(kf(right=RIGHT), kf(left=LEFT.copy(), right=RIGHT.copy()))
    assert s["hands"]["right"]["found"] and s["false_hands"] == ["left"] and s["mrrpe_mm"] is None
    # two-hand photo, one hand predicted: the other is missed, no MRRPE
    s2 = rp.score_item(kf(left=LEFT, right=RIGHT), kf(right=RIGHT.copy()))
    assert not s2["hands"]["left"]["found"] and s2["hands"]["left"]["pred_side"] is None and s2["mrrpe_mm"] is None
    # extract produced nothing
    s3 = rp.score_item(kf(right=RIGHT), None)
    assert not s3["hands"]["right"]["found"] and s3["false_hands"] == []
    total = rp.summarize({"a": s, "b": s2, "c": s3})
    assert (total["gt_hands"], total["found"], total["missed"], total["false_hands"]) == (4, 2, 2, 1)
    assert total["items_with_false_hands"] == 1 and total["two_hand_items_scored"] == 0


def test_a_hand_further_than_one_hand_size_is_not_found():
    """Moved 0.1 m along x: 200 px, more than the hand's 160 px size: missed, and a false hand."""
    s = rp.score_item(kf(right=RIGHT), kf(right=RIGHT + [0.1, 0.0, 0.0]))
    assert not s["hands"]["right"]["found"] and s["false_hands"] == ["right"]
    s = rp.score_item(kf(right=RIGHT), kf(right=RIGHT + [0.07, 0.0, 0.0]))  # 140 px: found
    assert s["hands"]["right"]["found"] and s["hands"]["right"]["error_2d_px"] == pytest.approx(140.0)


def _photo_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    for name in ("one", "two"):
        Image.fromarray(np.full((480, 640, 3), 90, np.uint8)).save(root / "images" / f"{name}.png")
        (root / "images" / f"{name}.json").write_text(json.dumps({"camera": {"K": K.tolist()}}))
    write_keypoints(root / "gt" / "one.json", {"right": RIGHT}, K)
    write_keypoints(root / "gt" / "two.json", {"left": LEFT, "right": RIGHT}, K)
    return root


def test_script_scores_an_extract_folder(tmp_path):
    data = _photo_folder(tmp_path / "data")
    pred = tmp_path / "pred"
    write_keypoints(pred / "one_keypoints.json", {"left": LEFT, "right": RIGHT + [0.01, 0.0, 0.0]}, K)
    write_keypoints(pred / "two_keypoints.json", {"left": RIGHT, "right": LEFT}, K, order="interhand")
    out = tmp_path / "out"
    assert rp.main(["--data", str(data), "--pred", str(pred), "--out", str(out)]) == 0
    total = json.loads((out / "summary.json").read_text())["overall"]
    assert (total["gt_hands"], total["found"], total["found_right_side"], total["false_hands"]) == (3, 3, 1, 1)
    rows = {r["name"]: r for r in csv.DictReader((out / "per_item.csv").open())}
    assert float(rows["one"]["right_error_2d_px"]) == pytest.approx(20.0) and rows["one"]["false_hands"] == "left"
    assert rows["two"]["left_pred_side"] == "right" and rows["two"]["left_right_side"] == "False"
    assert rows["one"]["extract_status"] == "missing"  # no summary.json in this prediction folder
    assert float(rows["one"]["right_wrist_position_mm"]) == pytest.approx(10.0)
    assert "| **all 2** | 3 |" in (out / "real_photos.md").read_text()
    assert Image.open(out / "overview.png").size[1] == rp.TILE_HEIGHT
    assert rp.main(["--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_script_runs_extract_on_the_photos(tmp_path):
    """The real command with the shipped models on one of the committed photos (two hands): the
    item is scored, and its per-image camera places the predictions."""
    import shutil

    src = SCRIPT.parent / "real_photos"
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "gt").mkdir()
    names = ("ih_44669_400012",)
    for name in names:
        for part in (f"images/{name}.jpg", f"images/{name}.json", f"gt/{name}.json"):
            shutil.copyfile(src / part, data / part)
    out = tmp_path / "out"
    code = rp.main(["--data", str(data), "--out", str(out), "--", "--resolution", "8", "--upsampling-steps", "1",
                    "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "extract" / "summary.json").read_text())
    assert summary["totals"]["processed"] == 1
    for r in summary["items"]:  # the camera files were used, also where no hand was found
        camera_path = data / "images" / f"{r['name']}.json"
        if r["status"] == "ok":
            assert r["camera"] == f"file {camera_path}"
            K_file = np.asarray(json.loads(camera_path.read_text())["camera"]["K"])
            np.testing.assert_allclose(read_keypoints(out / "extract" / f"{r['name']}_keypoints.json").K, K_file)
        else:
            assert f"(camera: file {camera_path})" in r["message"]
    total = json.loads((out / "summary.json").read_text())["overall"]
    assert total["items"] == 1 and total["gt_hands"] == 2 and total["found"] + total["missed"] == 2
    rows = list(csv.DictReader((out / "per_item.csv").open()))
    assert [r["name"] for r in rows] == list(names) and all(r["extract_status"] in ("ok", "failed") for r in rows)


def test_interhand_conversion(tmp_path):
    """convert_interhand.py: world mm -> camera metres through camrot / campos, InterHand order
    -> standard, right hand in rows 0-20, a hand with invalid joints left out."""
    spec = importlib.util.spec_from_file_location("convert_interhand", SCRIPT.parent / "real_photos" / "convert_interhand.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    from im2hands.hands.joint_orders import convert

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(src / "image7.jpg")
    a = 0.3
    R = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    campos = np.array([100.0, -50.0, -900.0])  # mm
    right_cam, left_cam = RIGHT, LEFT  # standard order, camera frame, metres
    world = np.concatenate([convert(h, "standard", "interhand") for h in (right_cam, left_cam)]) * 1000.0 @ R + campos
    valid = [[1]] * 21 + [[1]] * 20 + [[0]]  # one left joint invalid: the left hand is absent
    (src / "test_interhand2.6m_data.json").write_text(json.dumps({"images": [
        {"file_name": "image7.jpg", "capture": 0, "camera": "cam1", "frame_idx": 7, "seq_name": "s"}]}))
    (src / "test_interhand2.6m_camera.json").write_text(json.dumps({"0": {
        "campos": {"cam1": campos.tolist()}, "camrot": {"cam1": R.tolist()},
        "focal": {"cam1": [F, F + 1.0]}, "princpt": {"cam1": [3.0, 4.0]}}}))
    (src / "test_interhand2.6m_joint_3d.json").write_text(json.dumps({"0": {"7": {
        "world_coord": world.tolist(), "joint_valid": valid, "hand_type": "interacting"}}}))
    records = conv.convert_folder(src, tmp_path / "dst")
    assert records[0]["name"] == "ih_00007_cam1" and records[0]["hands"] == ["right"]
    gt = read_keypoints(tmp_path / "dst" / "gt" / "ih_00007_cam1.json")
    assert set(gt.joints) == {"right"}
    np.testing.assert_allclose(gt.joints["right"], right_cam, atol=1e-6)
    np.testing.assert_allclose(gt.K, [[F, 0, 3.0], [0, F + 1.0, 4.0], [0, 0, 1]])
    camera = json.loads((tmp_path / "dst" / "images" / "ih_00007_cam1.json").read_text())
    assert camera == {"camera": {"K": gt.K.tolist()}}
    assert (tmp_path / "dst" / "images" / "ih_00007_cam1.jpg").read_bytes() == (src / "image7.jpg").read_bytes()


def test_predictions_are_scored_in_the_ground_truth_convention(tmp_path):
    """An extraction whose model works in MANO's convention wrote its keypoints moved there; the
    script moves them back to the annotated ground truth's before scoring."""
    from im2hands.hands.conventions import to_convention

    data = _photo_folder(tmp_path / "data")
    pred = tmp_path / "pred"
    for name, gt in (("one", {"right": RIGHT}), ("two", {"left": LEFT, "right": RIGHT})):
        write_keypoints(pred / f"{name}_keypoints.json", {s: to_convention(j, "annotation", "mano") for s, j in gt.items()}, K)
    summary = {"settings": {"keypoint_convention": {"files": "mano", "model": "mano"}}, "items": []}
    (pred / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "out"
    assert rp.main(["--data", str(data), "--pred", str(pred), "--out", str(out)]) == 0
    result = json.loads((out / "summary.json").read_text())
    assert result["keypoint_convention"] == {"pred": "mano", "scored_in": "annotation"}
    assert result["overall"]["mean_mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-3)
    # without the record the MANO-convention keypoints are scored as they are: not zero
    (pred / "summary.json").unlink()
    assert rp.main(["--data", str(data), "--pred", str(pred), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["overall"]["mean_mpjpe_wrist_mm"] > 1.0
