"""Keypoint conventions through the extraction: checkpoints record the hand model of their
training data, models load with its convention, and every input path moves its keypoints to it."""

import numpy as np
import pytest

from im2hands.config import load_config
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import save_checkpoint
from im2hands.engine.weights import export_weights
from im2hands.extraction.inputs import ItemSource, load_item, move_joints, read_keypoints, write_keypoints
from im2hands.extraction.oracle import SkeletonOccupancy
from im2hands.extraction.run import extract_folder
from im2hands.hands.conventions import V1_HAND_MODEL, convention_of, to_convention
from im2hands.loading import load_checkpoint, load_model
from im2hands.utils.errors import Im2HandsError

FAST = dict(resolution=8, upsampling_steps=1, progress=False, overlay=False)


def _hand(seed: int) -> np.ndarray:
    """A (21, 3) hand-like set of points in front of the camera (metres)."""
    rng = np.random.default_rng(seed)
    return np.array([0.0, 0.0, 0.6]) + 0.03 * rng.standard_normal((21, 3))


def test_convention_of_hand_models():
    assert convention_of(None) == convention_of(V1_HAND_MODEL) == "annotation"
    assert convention_of("im2hands-open-hand-v2") == "mano"
    assert convention_of("mano") == "mano" and convention_of("someone-elses-hand") == "mano"


def test_move_joints_moves_only_when_both_are_known():
    joints = {"left": _hand(0), "right": _hand(1)}
    assert move_joints(joints, None, "mano") is joints and move_joints(joints, "mano", None) is joints
    assert move_joints(joints, "mano", "mano") is joints
    moved = move_joints(joints, "annotation", "mano")
    for side in joints:
        np.testing.assert_allclose(moved[side], to_convention(joints[side], "annotation", "mano"))
        assert not np.allclose(moved[side][5], joints[side][5])  # the index MCP moved
        np.testing.assert_array_equal(moved[side][[0, 4, 8, 12, 16, 20]], joints[side][[0, 4, 8, 12, 16, 20]])


@pytest.mark.parametrize("hand_model,expected", [(None, "annotation"), ("im2hands-open-hand-v2", "mano")])
def test_checkpoints_and_weights_carry_the_training_hand_model(tmp_path, hand_model, expected):
    cfg = load_config(None, ["model.init_occ.use_image=false", "model.init_occ.hidden=8"])
    run = tmp_path / "run"
    save_checkpoint(run / "last.pt", model=build_model(cfg), optimizer=None, scheduler=None, cfg=cfg,
                    state={"step": 0}, rng=[], hand_model=hand_model)  # fmt: skip
    assert load_checkpoint(run / "last.pt").get("hand_model") == hand_model
    model, _ = load_model(run)
    assert model.keypoint_convention == expected
    export_weights(run / "last.pt", tmp_path / "w.pt")
    assert load_checkpoint(tmp_path / "w.pt").get("hand_model") == hand_model
    assert load_model(tmp_path / "w.pt")[0].keypoint_convention == expected


def test_keypoint_files_are_moved_to_the_model_convention(tmp_path):
    kp = tmp_path / "kp"
    joints = {"left": _hand(2), "right": _hand(3)}
    write_keypoints(kp / "a.json", joints)
    src = ItemSource(name="a", keypoints=kp / "a.json")
    same = load_item(src, keypoint_convention="annotation", model_convention="annotation")
    np.testing.assert_allclose(same.keypoints, np.stack([joints["left"], joints["right"]]), atol=1e-6)
    moved = load_item(src, keypoint_convention="annotation", model_convention="mano")
    want = np.stack([to_convention(joints[s], "annotation", "mano") for s in ("left", "right")])
    np.testing.assert_allclose(moved.keypoints, want, atol=1e-6)
    assert moved.keypoint_convention == "annotation"

    model = SkeletonOccupancy()
    model.keypoint_convention = "mano"
    out = extract_folder(tmp_path / "o", model=model, keypoints=kp, keypoint_convention="annotation", **FAST)
    assert out["settings"]["keypoint_convention"] == {"files": "annotation", "model": "mano"}
    written = read_keypoints(tmp_path / "o" / "a_keypoints.json")  # what the meshes were made from
    for s, side in enumerate(("left", "right")):
        np.testing.assert_allclose(written.joints[side], want[s], atol=1e-6)
    # no stated convention: the files are taken to be in the model's, nothing moves
    out = extract_folder(tmp_path / "o2", model=model, keypoints=kp, **FAST)
    written = read_keypoints(tmp_path / "o2" / "a_keypoints.json")
    np.testing.assert_allclose(written.joints["right"], joints["right"], atol=1e-6)
    with pytest.raises(Im2HandsError, match="keypoint-convention"):
        extract_folder(tmp_path / "o3", model=model, keypoints=kp, keypoint_convention="freihand", **FAST)
