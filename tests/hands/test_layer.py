"""Tests for im2hands.hands.layer (HandModel) and im2hands.hands.mirror on tiny synthetic hands.

The open-model tests at the end run on im2hands/assets/handmodel/ when it exists.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
import trimesh

from im2hands.hands import mano_io
from im2hands.hands.joint_orders import FINGERTIPS_STANDARD, MANO_JOINT_TO_STANDARD
from im2hands.hands.layer import HandModel, close_wrist, load_hand_models
from im2hands.hands.mirror import mirror_pose
from im2hands.utils.errors import HandModelError

X_MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def _inputs(batch: int, *, scale: float = 0.4, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 48, generator=g, dtype=dtype) * scale
    shape = torch.randn(batch, 10, generator=g, dtype=dtype)
    trans = torch.randn(batch, 3, generator=g, dtype=dtype) * 0.1
    return pose, shape, trans


def _mesh(vertices: torch.Tensor, faces: torch.Tensor) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices.detach().cpu().double().numpy(), faces.cpu().numpy(), process=False)


def test_shapes_for_any_batch_from_one_module(hand_dir, hand_arrays):
    model = HandModel(hand_dir, "right")
    arrays = hand_arrays()
    nv, nf = len(arrays["v_template"]), len(arrays["f"])
    assert model.num_vertices == nv + 1 and model.skinning_weights.shape == (nv + 1, 16)
    loop = model.wrist_loop.numel()
    assert loop > 0 and model.closed_faces.shape == (nf + loop, 3)
    for batch in (1, 5):
        out = model(*_inputs(batch))
        assert out.vertices.shape == (batch, nv + 1, 3)
        assert out.joints.shape == (batch, 16, 3) and out.keypoints.shape == (batch, 21, 3)
        assert out.faces.dtype == torch.int64 and out.vertices.dtype == torch.float32
    assert model.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
    assert model.rest_joints.shape == (16, 3) and model.model_name == "mano" and model.side == "right"
    with pytest.raises(ValueError, match="pose"):
        model(torch.zeros(2, 48), torch.zeros(3, 10), torch.zeros(2, 3))


def test_keypoints_are_standard_order(hand_dir):
    model = HandModel(hand_dir)
    out = model(*_inputs(3))
    torch.testing.assert_close(out.keypoints[:, list(MANO_JOINT_TO_STANDARD)], out.joints)
    tips = out.vertices[:, list(model.fingertip_vertex_ids)]
    torch.testing.assert_close(out.keypoints[:, list(FINGERTIPS_STANDARD)], tips)


def test_gradients_flow_and_float64_gradcheck(hand_dir):
    model = HandModel(hand_dir)
    pose, shape, trans = (t.requires_grad_() for t in _inputs(2))
    out = model(pose, shape, trans)
    (out.vertices.square().sum() + out.keypoints.sum()).backward()
    for t in (pose, shape, trans):
        assert t.grad is not None and t.grad.abs().sum() > 0
    model64 = HandModel(hand_dir, dtype=torch.float64)
    pose, shape, trans = (t.requires_grad_() for t in _inputs(1, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda p, s, t: model64(p, s, t).vertices[:, -20:], (pose, shape, trans), fast_mode=True
    )
    assert model.double()(*_inputs(1)).vertices.dtype == torch.float64  # float32 inputs are cast


@pytest.mark.parametrize("posed", [False, True])
def test_closed_mesh_is_watertight_and_outward(hand_dir, posed):
    model = HandModel(hand_dir)
    pose, shape, trans = _inputs(1, scale=0.4 if posed else 0.0)
    mesh = _mesh(model(pose, shape, trans).vertices[0], model.closed_faces)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    open_mesh = _mesh(model(pose, shape, trans).vertices[0, :-1], model.closed_faces[: -model.wrist_loop.numel()])
    assert not open_mesh.is_watertight  # the fixture really had a hole


def test_inward_faces_are_flipped(make_hand_dir):
    model = HandModel(make_hand_dir(flip_faces=True))
    mesh = _mesh(model(*_inputs(1, scale=0.0)).vertices[0], model.closed_faces)
    assert mesh.is_watertight and mesh.volume > 0


def test_closed_input_adds_nothing_and_two_holes_fail(make_hand_dir, hand_arrays):
    model = HandModel(make_hand_dir("closed", hole=False))
    assert model.wrist_loop.numel() == 0 and model.num_vertices == 162
    assert _mesh(model(*_inputs(1)).vertices[0], model.closed_faces).is_watertight
    with pytest.raises(HandModelError, match=r"two_holes.*MANO_RIGHT\.pkl.*2 boundary loops"):
        HandModel(make_hand_dir("two_holes", two_holes=True))
    faces = hand_arrays()["f"]
    loop, closed = close_wrist(faces, 155)
    fan = closed[len(faces):]
    assert set(fan[:, 2].tolist()) == {155} and set(loop.tolist()) == set(fan[:, :2].ravel().tolist())


def test_translation_shifts_exactly(hand_dir):
    model = HandModel(hand_dir)
    pose, shape, trans = _inputs(4)
    a, b = model(pose, shape, torch.zeros_like(trans)), model(pose, shape, trans)
    torch.testing.assert_close(b.vertices - a.vertices, trans[:, None].expand_as(a.vertices), rtol=0, atol=1e-6)
    torch.testing.assert_close(b.keypoints - a.keypoints, trans[:, None].expand_as(a.keypoints), rtol=0, atol=1e-6)


def test_zero_pose_gives_template_plus_shape_blend(make_hand_dir, hand_arrays):
    opts = {"posedirs_scale": 0.01, "hands_mean_scale": 0.3}
    model, arrays = HandModel(make_hand_dir(**opts)), hand_arrays(**opts)
    betas = torch.randn(2, 10)
    expected = arrays["v_template"][None] + np.einsum("vck,bk->bvc", arrays["shapedirs"], betas.double().numpy())
    pose = torch.zeros(2, 48)
    pose[:, 3:] = -torch.as_tensor(arrays["hands_mean"], dtype=torch.float32)  # flat_hand_mean=False
    out = model(pose, betas, torch.zeros(2, 3))
    np.testing.assert_allclose(out.vertices[:, :-1].numpy(), expected, atol=1e-6)
    loop = model.wrist_loop.numpy()
    np.testing.assert_allclose(out.vertices[:, -1].numpy(), expected[:, loop].mean(1), atol=1e-6)
    bent = model(torch.zeros(2, 48), betas, torch.zeros(2, 3)).vertices  # zero pose = mean hand
    assert (bent[:, :-1] - out.vertices[:, :-1]).abs().max() > 1e-3


def test_missing_fingertips_need_mano_vertex_count(tmp_path, hand_arrays):
    arrays = hand_arrays()
    del arrays["fingertip_vertex_ids"]
    for side in ("RIGHT", "LEFT"):
        (tmp_path / f"MANO_{side}.pkl").write_bytes(pickle.dumps(arrays))
    with pytest.raises(HandModelError, match=r"MANO_RIGHT\.pkl.*fingertip_vertex_ids.*155"):
        HandModel(tmp_path)


@pytest.mark.parametrize("left_bug", [False, True])
def test_left_fix_and_mirror_symmetry(make_hand_dir, caplog, left_bug):
    folder = make_hand_dir(left_bug=left_bug, hands_mean_scale=0.3)
    with caplog.at_level(logging.INFO, logger="im2hands.hands.mano_io"):
        models = load_hand_models(folder)
        alone = HandModel(folder, "left")
    assert models["left"].shapedirs_fixed is left_bug and alone.shapedirs_fixed is left_bug
    assert ("known MANO bug" in caplog.text) is left_bug
    pose, shape, trans = _inputs(3)
    right = models["right"](pose, shape, trans)
    for left_model in (models["left"], alone):
        left = left_model(mirror_pose(pose), shape, trans * X_MIRROR)
        torch.testing.assert_close(left.vertices, right.vertices * X_MIRROR, rtol=0, atol=1e-6)
        torch.testing.assert_close(left.keypoints, right.keypoints * X_MIRROR, rtol=0, atol=1e-6)
        mesh = _mesh(left.vertices[0], left.faces)
        assert mesh.is_watertight and mesh.volume > 0


def test_no_model_data_in_state_dict_and_no_smplx_print(hand_dir, capsys):
    model = HandModel(hand_dir)
    assert "WARNING" not in capsys.readouterr().out
    assert len(model.state_dict()) == 0 and len(list(model.parameters())) == 0


def test_device(hand_dir, device):
    model = HandModel(hand_dir).to(device)
    out = model(*(t.to(device) for t in _inputs(2)))
    assert out.vertices.device.type == device.type and out.faces.device.type == device.type


def test_mirror_pose_is_an_involution_on_numpy_and_torch():
    pose = torch.randn(2, 7, 48, dtype=torch.float64)
    torch.testing.assert_close(mirror_pose(mirror_pose(pose)), pose)
    np.testing.assert_array_equal(mirror_pose(pose.numpy()), mirror_pose(pose).numpy())
    assert mirror_pose(pose)[0, 0, 4] == -pose[0, 0, 4] and mirror_pose(pose)[0, 0, 3] == pose[0, 0, 3]
    with pytest.raises(ValueError):
        mirror_pose(torch.zeros(3, 45))


# ----------------------------------------------------------------------------- the open model
OPEN_MODEL = mano_io.DEFAULT_MODEL_DIR
needs_open_model = pytest.mark.skipif(
    not ((OPEN_MODEL / "MANO_RIGHT.pkl").is_file() and (OPEN_MODEL / "MANO_LEFT.pkl").is_file()),
    reason=f"open hand model not built at {OPEN_MODEL}",
)


@pytest.fixture(scope="module")
def open_models():
    return load_hand_models(OPEN_MODEL)


@needs_open_model
def test_open_model_loads_both_sides_watertight(open_models):
    for side, model in open_models.items():
        assert model.side == side and model.fingertip_vertex_ids
        pose, shape, trans = _inputs(2, scale=0.3)
        out = model(pose if side == "right" else mirror_pose(pose), shape, trans)
        for b in range(2):
            mesh = _mesh(out.vertices[b], out.faces)
            assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0, (side, b)


@needs_open_model
def test_open_model_left_is_mirror_of_right_at_zero_pose(open_models):
    zeros = (torch.zeros(1, 48), torch.zeros(1, 10), torch.zeros(1, 3))
    right, left = open_models["right"](*zeros), open_models["left"](*zeros)
    torch.testing.assert_close(left.vertices, right.vertices * X_MIRROR, rtol=0, atol=1e-5)
    torch.testing.assert_close(left.keypoints, right.keypoints * X_MIRROR, rtol=0, atol=1e-5)
