"""Tests of version 2 of the open hand model (calibrated against real MANO hands).

Version 2 is the default and the committed files (``test_builder.py`` checks them byte for
byte against a plain build); these tests build it with ``--version 2`` explicitly.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from im2hands.cli import main
from im2hands.hands import anatomy, builder
from im2hands.hands.calibration import bone_ratios
from im2hands.hands.joint_orders import convert
from im2hands.hands.layer import load_hand_models
from im2hands.hands.render_docs import self_intersections
from im2hands.utils.errors import HandModelError

NAMES = ("MANO_RIGHT.pkl", "MANO_LEFT.pkl")


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory) -> Path:
    out = Path(tmp_path_factory.mktemp("handmodel_v2")) / "v2"
    assert main(["handmodel", "build", "--version", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def v2(v2_dir) -> dict[str, dict]:
    out = {}
    for side, name in zip(("right", "left"), NAMES):
        with open(v2_dir / name, "rb") as fh:
            out[side] = pickle.load(fh)
    return out


def test_versions_are_separate_tables():
    assert anatomy.rest_skeleton().anatomy is anatomy.V1
    assert anatomy.VERSIONS == {1: anatomy.V1, 2: anatomy.V2}
    assert anatomy.V1.name == builder.MODEL_NAME == "im2hands-open-hand-v1"
    assert anatomy.V1.shape_coefficients is anatomy.SHAPE_COEFFICIENTS
    with pytest.raises(HandModelError, match="version"):
        builder.build_hand_model("right", version=3)
    with pytest.raises(SystemExit):
        main(["handmodel", "build", "--version", "3", "--out", "unused"])


def test_v2_schema_and_mesh(v2, v2_dir):
    assert sorted(p.name for p in v2_dir.iterdir()) == sorted(NAMES)
    m = v2["right"]
    nv = len(m["v_template"])
    assert 1000 <= nv <= 3000 and m["model_name"] == "im2hands-open-hand-v2"
    assert m["shapedirs"].shape == (nv, 3, 10) and m["posedirs"].shape == (nv, 3, 135)
    assert m["shape_names"] == [name for name, _, _ in anatomy.SHAPE_COEFFICIENTS_V2]
    for key in ("J_regressor", "weights"):
        arr = np.asarray(m[key], np.float64)
        assert arr.min() >= 0.0
        np.testing.assert_allclose(arr.sum(1), 1.0, atol=1e-6)
    mesh = trimesh.Trimesh(m["v_template"], m["f"], process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.euler_number == 2
    assert mesh.volume > 0 and self_intersections(m["v_template"], m["f"]) == 0
    left = v2["left"]
    np.testing.assert_array_equal(left["v_template"], m["v_template"] * [-1.0, 1.0, 1.0])
    assert trimesh.Trimesh(left["v_template"], left["f"], process=False).volume == pytest.approx(mesh.volume)


def test_v2_build_is_deterministic(v2):
    again = builder.build_hand_model("right", version=2)
    for key, value in v2["right"].items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(again[key], value, err_msg=key)
        else:
            assert again[key] == value, key


def test_v2_joints_and_tips_reproduce_the_calibrated_table(v2):
    m = v2["right"]
    sk = anatomy.rest_skeleton(anatomy.V2)
    np.testing.assert_allclose(m["J_regressor"] @ m["v_template"], sk.joints, atol=1e-6)
    # bone ratios of the regressed joints + tip vertices (mano order: 16 joints, then the tips
    # thumb, index, middle, ring, pinky as fingertip_vertex_ids) against the designed table
    tips = m["v_template"][m["fingertip_vertex_ids"]]
    mano21 = np.concatenate([m["J_regressor"] @ m["v_template"], tips])
    got = bone_ratios(convert(mano21, "mano", "standard"))
    design = np.concatenate([sk.joints, sk.tips[list(anatomy.TIP_ORDER)]])
    want = bone_ratios(convert(design, "mano", "standard"))
    np.testing.assert_allclose(got, want, atol=0.01)
    ref = np.linalg.norm(sk.joints[4] - sk.joints[0])
    assert ref == pytest.approx(0.0912)
    table = anatomy.V2.chains["index"]["lengths"]
    assert got[5:8] == pytest.approx(np.array(table) / ref, abs=0.01)


def test_v2_loads_poses_and_keeps_volume(v2_dir):
    models = load_hand_models(v2_dir, dtype=torch.float64)
    assert all(m.model_name == "im2hands-open-hand-v2" and not m.shapedirs_fixed for m in models.values())
    right = models["right"]
    faces = right.closed_faces.numpy()
    zero = torch.zeros(1, 48, dtype=torch.float64)
    rest = right(zero, torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    v0 = trimesh.Trimesh(rest.vertices[0].numpy(), faces, process=False).volume
    axes = builder.flexion_axes(anatomy.rest_skeleton(anatomy.V2))
    pose = torch.zeros(1, 48, dtype=torch.float64)
    for k in range(1, 13):  # all twelve finger joints at 90 degrees
        pose[0, 3 * k: 3 * k + 3] = torch.as_tensor(axes[k] * np.pi / 2)
    bent = right(pose, torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    assert trimesh.Trimesh(bent.vertices[0].numpy(), faces, process=False).volume == pytest.approx(v0, rel=0.03)
    # joints follow the betas as designed (within 1 mm at beta = 2)
    design = builder.designed_joint_directions(anatomy.rest_skeleton(anatomy.V2))
    betas = 2.0 * torch.eye(10, dtype=torch.float64)
    out = right(zero.expand(10, -1), betas, torch.zeros(10, 3, dtype=torch.float64))
    for i in range(10):
        want = rest.joints[0].numpy() + 2.0 * design[:, :, i]
        assert np.abs(out.joints[i].numpy() - want).max() < 1e-3, i
