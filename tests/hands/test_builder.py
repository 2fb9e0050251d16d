"""Tests of the open hand model builder (im2hands.hands.builder): version 1's design, and the
committed files (version 2, ``builder.DEFAULT_VERSION``) against a plain rebuild."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
import trimesh

from im2hands.cli import main
from im2hands.hands import anatomy, builder
from im2hands.hands.constants import MANO_KINTREE_PARENTS
from im2hands.hands.layer import load_hand_models
from im2hands.hands.mano_io import load_mano_file
from im2hands.hands.render_docs import measure_hand_model, named_pose, self_intersections
from im2hands.utils.errors import HandModelError

ASSETS = Path(builder.__file__).resolve().parents[1] / "assets" / "handmodel"
NAMES = ("MANO_RIGHT.pkl", "MANO_LEFT.pkl")
MIRROR = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """One fresh build of version 1 (about 1.5 s), through the command
    ``im2hands handmodel build --version 1 --out DIR`` (which calls
    ``builder.write_hand_model``): the design tests below."""
    out = Path(tmp_path_factory.mktemp("handmodel")) / "built"
    assert main(["handmodel", "build", "--version", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory) -> Path:
    """A plain ``im2hands handmodel build --out DIR``: the default version, as committed."""
    out = Path(tmp_path_factory.mktemp("handmodel")) / "default"
    assert main(["handmodel", "build", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def models(model_dir) -> dict[str, dict]:
    out = {}
    for side, name in zip(("right", "left"), NAMES):
        with open(model_dir / name, "rb") as fh:
            out[side] = pickle.load(fh)
    return out


def _layer(model_dir: Path, side: str, batch: int) -> smplx.MANO:
    return smplx.MANO(str(model_dir), is_rhand=side == "right", use_pca=False,
                      flat_hand_mean=False, batch_size=batch)


def _forward(model_dir: Path, side: str, pose: np.ndarray, betas: np.ndarray | None = None):
    pose = np.atleast_2d(pose)
    b = len(pose)
    betas = np.zeros((b, 10)) if betas is None else np.atleast_2d(betas)
    with torch.no_grad():
        out = _layer(model_dir, side, b)(
            global_orient=torch.zeros(b, 3), transl=torch.zeros(b, 3),
            hand_pose=torch.tensor(pose, dtype=torch.float32),
            betas=torch.tensor(betas, dtype=torch.float32))
    return out.vertices.double().numpy(), out.joints.double().numpy()


def _volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    return trimesh.Trimesh(vertices, faces, process=False).volume


def _assert_same_contents(built: Path, committed: Path) -> None:
    """Key-by-key check of two model pickles: float arrays to 1e-6 (absolute), everything
    else (integer arrays, strings, lists) exactly."""
    with open(built, "rb") as fh:
        new = pickle.load(fh)
    with open(committed, "rb") as fh:
        ref = pickle.load(fh)
    name = committed.name
    assert sorted(new) == sorted(ref), f"{name}: keys differ: {sorted(set(new) ^ set(ref))}"
    for key in sorted(ref):
        a, b = new[key], ref[key]
        if not isinstance(b, np.ndarray):
            assert a == b, f"{name}[{key!r}]: {a!r} != {b!r}"
            continue
        assert isinstance(a, np.ndarray), f"{name}[{key!r}]: not an array in the rebuild"
        assert a.shape == b.shape, f"{name}[{key!r}]: shape {a.shape} != {b.shape}"
        assert a.dtype == b.dtype, f"{name}[{key!r}]: dtype {a.dtype} != {b.dtype}"
        if np.issubdtype(b.dtype, np.floating):
            err = float(np.abs(a.astype(np.float64) - b).max()) if b.size else 0.0
            assert np.allclose(a, b, rtol=0, atol=1e-6), f"{name}[{key!r}]: max abs diff {err:.3g}"
        else:
            assert np.array_equal(a, b), f"{name}[{key!r}]: values differ"


def test_rebuild_matches_committed_files(default_dir):
    """A rebuild gives the committed bytes; where it does not (another platform's maths
    libraries may differ in the last bits), every array must still match to 1e-6."""
    for name in NAMES:
        assert (ASSETS / name).is_file(), f"committed {name} missing"
        assert (ASSETS / name).stat().st_size < 3_000_000
        if (default_dir / name).read_bytes() != (ASSETS / name).read_bytes():
            _assert_same_contents(default_dir / name, ASSETS / name)


def test_build_command_output_loads_through_the_package(default_dir):
    assert builder.DEFAULT_VERSION == 2
    model_dir = default_dir
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(NAMES)  # no temporaries left
    models = load_hand_models(model_dir, dtype=torch.float64)
    committed = load_hand_models(ASSETS, dtype=torch.float64)
    pose = torch.randn(2, 48, dtype=torch.float64) * 0.3
    shape, trans = torch.randn(2, 10, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    for side, model in models.items():
        assert model.model_name == anatomy.VERSIONS[builder.DEFAULT_VERSION].name and not model.shapedirs_fixed
        file_vertices = len(load_mano_file(model_dir / f"MANO_{side.upper()}.pkl")["v_template"])
        assert model.num_vertices == committed[side].num_vertices == file_vertices
        assert model.wrist_loop.numel() == 0  # closed at build time: no cap vertex added
        out, ref = model(pose, shape, trans), committed[side](pose, shape, trans)
        torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.faces, ref.faces, rtol=0, atol=0)


def test_schema(models):
    for side, m in models.items():
        nv = len(m["v_template"])
        assert 1000 <= nv <= 3000
        assert m["v_template"].shape == (nv, 3) and m["v_template"].dtype == np.float64
        assert m["f"].ndim == 2 and m["f"].shape[1] == 3 and np.issubdtype(m["f"].dtype, np.integer)
        assert m["J_regressor"].shape == (16, nv) and m["J_regressor"].dtype == np.float64
        assert m["weights"].shape == (nv, 16)
        assert m["shapedirs"].shape == (nv, 3, 10)
        assert m["posedirs"].shape == (nv, 3, 135)
        np.testing.assert_array_equal(m["kintree_table"][0, 1:], MANO_KINTREE_PARENTS[1:])
        np.testing.assert_array_equal(m["kintree_table"][1], np.arange(16))
        np.testing.assert_array_equal(m["hands_components"], np.eye(45))
        np.testing.assert_array_equal(m["hands_mean"], np.zeros(45))
        assert m["model_name"] == builder.MODEL_NAME
        assert len(m["fingertip_vertex_ids"]) == 5
        for key in ("J_regressor", "weights"):
            arr = np.asarray(m[key], np.float64)
            assert arr.min() >= 0.0, key
            np.testing.assert_allclose(arr.sum(1), 1.0, atol=1e-6, err_msg=key)
    with pytest.raises(HandModelError, match="side"):
        builder.build_hand_model("middle")


def test_write_into_a_file_path_fails(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(HandModelError, match="taken"):
        builder.write_hand_model(tmp_path / "taken")


def test_mesh_is_closed_outward_and_clean(models):
    m = models["right"]
    mesh = trimesh.Trimesh(m["v_template"], m["f"], process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2 and len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0
    assert self_intersections(m["v_template"], m["f"]) == 0
    left = models["left"]
    assert _volume(left["v_template"], left["f"]) == pytest.approx(mesh.volume, rel=1e-9)


def test_proportions(models):
    got = measure_hand_model(models["right"])
    assert 165 <= got["wrist_to_middle_tip_mm"] <= 185
    assert 80 <= got["palm_width_mm"] <= 90
    assert 250 <= got["volume_cm3"] <= 320
    assert 25 <= got["palm_thickness_mm"] <= 30
    for finger in ("index", "middle", "ring", "pinky"):
        prox, mid, dist = got[f"{finger}_lengths_mm"]
        assert 0.58 <= mid / prox <= 0.72 and 0.45 <= dist / prox <= 0.6, finger
        wide, tip = got[f"{finger}_widths_mm"]
        assert (16 if finger == "pinky" else 17.5) <= wide <= 20.5 and 12.5 <= tip <= 16.5, finger
        assert wide > tip
    assert got["thumb_widths_mm"][0] > got["thumb_widths_mm"][1]


def test_fingertip_ids_are_the_finger_ends(models):
    m = models["right"]
    v, ids = m["v_template"], m["fingertip_vertex_ids"]
    sk = anatomy.rest_skeleton()
    dominant = np.asarray(m["weights"]).argmax(1)
    for tip, chain in zip(ids, anatomy.TIP_ORDER):
        k = 3 + 3 * chain
        mine = np.flatnonzero(dominant == k)
        reach = (v[mine] - sk.joints[k]) @ sk.seg_axis[k]
        assert tip in mine and reach.max() == pytest.approx((v[tip] - sk.joints[k]) @ sk.seg_axis[k])
        assert abs((v[tip] - sk.tips[chain]) @ sk.seg_axis[k]) < 1e-3  # at the designed end
        assert np.linalg.norm(v[tip] - sk.tips[chain]) < 3e-3


def test_joint_regressor_reproduces_designed_joints(models):
    m = models["right"]
    sk = anatomy.rest_skeleton()
    np.testing.assert_allclose(m["J_regressor"] @ m["v_template"], sk.joints, atol=1e-6)
    for k in range(16):
        support = np.flatnonzero(m["J_regressor"][k] > 0)
        assert len(support) >= 6
        assert np.linalg.norm(m["v_template"][support] - sk.joints[k], axis=1).max() < 0.045


def test_joints_follow_the_shape_design(models, model_dir):
    sk = anatomy.rest_skeleton()
    design = builder.designed_joint_directions(sk)
    betas = 2.0 * np.eye(10)
    _, joints = _forward(model_dir, "right", np.zeros((10, 45)), betas)
    for i in range(10):
        np.testing.assert_allclose(joints[i], sk.joints + 2.0 * design[:, :, i], atol=1e-3,
                                   err_msg=models["right"]["shape_names"][i])
    # size scales about the wrist; finger length moves the middle fingertip joints along +x
    np.testing.assert_allclose(joints[0], sk.joints * (1 + 2 * anatomy.SHAPE_COEFFICIENTS[0][1]),
                               atol=1e-6)
    assert (joints[3, [5, 6], 0] - sk.joints[[5, 6], 0] > 0.003).all()


def test_left_is_mirror_of_right(models, model_dir):
    r, l = models["right"], models["left"]
    np.testing.assert_array_equal(l["v_template"], r["v_template"] * MIRROR)
    np.testing.assert_array_equal(l["f"], r["f"][:, [0, 2, 1]])
    np.testing.assert_array_equal(l["J_regressor"], r["J_regressor"])
    np.testing.assert_array_equal(l["weights"], r["weights"])
    np.testing.assert_array_equal(l["shapedirs"], r["shapedirs"] * MIRROR[None, :, None])
    np.testing.assert_array_equal(l["posedirs"], builder.mirror_posedirs(r["posedirs"]))
    # the left-hand shapedirs "sign fix" used in the field must not fire on our files
    assert np.abs(l["shapedirs"][:, 0, :] - r["shapedirs"][:, 0, :]).sum() > 1.0
    rng = np.random.default_rng(0)
    pose = rng.normal(0.0, 0.4, (2, 45))
    betas = rng.normal(0.0, 1.0, (2, 10))
    vr, jr = _forward(model_dir, "right", pose, betas)
    vl, jl = _forward(model_dir, "left", pose * np.tile([1.0, -1.0, -1.0], 15), betas)
    np.testing.assert_allclose(vl, vr * MIRROR, atol=2e-6)
    np.testing.assert_allclose(jl, jr * MIRROR, atol=2e-6)


def test_smplx_forward_rest_and_random_poses(models, model_dir):
    m = models["right"]
    rng = np.random.default_rng(1)
    pose = np.concatenate([np.zeros((1, 45)), rng.normal(0.0, 0.5, (3, 45))])
    v, j = _forward(model_dir, "right", pose)
    assert v.shape == (4, len(m["v_template"]), 3) and j.shape == (4, 16, 3)
    np.testing.assert_allclose(v[0], m["v_template"], atol=1e-6)
    np.testing.assert_allclose(j[0], anatomy.rest_skeleton().joints, atol=1e-6)
    for verts in v:
        assert _volume(verts, m["f"]) > 0.8 * _volume(v[0], m["f"])
    # the numpy forward kinematics used by the builder agrees with smplx
    rot = builder.rotvec_to_matrix(np.concatenate([np.zeros((1, 3)), pose[1].reshape(15, 3)]))
    mine = builder.linear_blend_skinning(m["v_template"], np.asarray(m["weights"], np.float64),
                                         anatomy.rest_skeleton().joints, MANO_KINTREE_PARENTS,
                                         rot, np.asarray(m["posedirs"], np.float64))
    np.testing.assert_allclose(mine, v[1], atol=2e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_flexion_keeps_volume(models, model_dir, side):
    f = models[side]["f"]
    sk = anatomy.rest_skeleton()
    axes = builder.flexion_axes(sk) * (1.0 if side == "right" else np.array([1.0, -1.0, -1.0]))
    poses = []
    for joints in ([1, 4, 7, 10], [2, 5, 8, 11], [3, 6, 9, 12], list(range(1, 13))):
        pose = np.zeros((15, 3))
        pose[np.array(joints) - 1] = np.pi / 2 * axes[joints]
        poses.append(pose.ravel())
    poses.append(named_pose("flex90", side))
    v, _ = _forward(model_dir, side, np.stack(poses))
    rest = _volume(models[side]["v_template"], f)
    ratios = [_volume(x, f) / rest for x in v]
    assert all(0.98 <= r <= 1.02 for r in ratios), ratios
    assert ratios[-1] == pytest.approx(ratios[-2], abs=1e-6)
    # flexing really curls the fingers towards the palm (-y) and back towards the wrist
    tips = models[side]["fingertip_vertex_ids"][1:]
    assert (v[3][tips, 1] < -0.012).all()
    assert (np.abs(v[3][tips, 0]) < np.abs(models[side]["v_template"][tips, 0]) - 0.06).all()


def test_betas_change_measures_monotonically(models, model_dir):
    m = models["right"]
    checks = {
        "size": lambda g: g["wrist_to_middle_tip_mm"],
        "palm_width": lambda g: g["palm_width_mm"],
        "palm_length": lambda g: g["wrist_to_middle_tip_mm"],
        "finger_length": lambda g: sum(g["middle_lengths_mm"]),
        "thickness": lambda g: g["middle_widths_mm"][0],
        "thumb_length": lambda g: sum(g["thumb_lengths_mm"]),
        "index_length": lambda g: sum(g["index_lengths_mm"]),
        "ring_length": lambda g: sum(g["ring_lengths_mm"]),
        "pinky_length": lambda g: sum(g["pinky_lengths_mm"]),
        "palm_thickness": lambda g: g["palm_thickness_mm"],
    }
    assert list(checks) == list(m["shape_names"])
    betas = np.zeros((30, 10))
    for i in range(10):
        betas[3 * i: 3 * i + 3, i] = (-3.0, 0.0, 3.0)
    v, _ = _forward(model_dir, "right", np.zeros((30, 45)), betas)
    for i, (name, measure) in enumerate(checks.items()):
        values = []
        for k in range(3):
            shaped = dict(m, v_template=v[3 * i + k])
            got = measure_hand_model(shaped)
            assert got["self_intersections"] == 0, (name, betas[3 * i + k, i])
            values.append(measure(got))
        assert values[0] < values[1] < values[2], (name, values)


def test_thumb_opposes_to_little_finger_base(models, model_dir):
    v, j = _forward(model_dir, "right", named_pose("oppose", "right"))
    tip = v[0, models["right"]["fingertip_vertex_ids"][0]]
    assert np.linalg.norm(tip - j[0, 7]) < 0.025  # within 25 mm of the little finger's MCP
    assert tip[2] > j[0, 7, 2] - 0.01  # across the palm (little finger side)
