"""The evaluator end to end on a tiny synthetic dataset, the CLI, and the file readers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from im2hands.config.schema import SynthConfig
from im2hands.cli import main
from im2hands.data import format as fmt
from im2hands.data.dataset import mesh_in_camera
from im2hands.data.synthetic import synthesize
from im2hands.extraction.run import write_obj
from im2hands.hands.joint_orders import convert
from im2hands.hands.layer import load_hand_models
from im2hands.metrics.evaluator import SUMMARY_KEYS, evaluate_folder, read_keypoint_file, read_obj
from im2hands.utils.errors import DataError

POINTS = 3000  # per hand and metric; the published protocol uses 100k


def _write_obj(path, v, f):
    lines = [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(lines) + "\n")


def _write_item(folder, name, meshes, keypoints=None, order="standard", writer=None):
    for side, (v, f) in meshes.items():
        (writer or _write_obj)(folder / f"{name}_{side}.obj", v, f)
    if keypoints is not None:
        hands = {side: {"joints": convert(kp, "standard", order).tolist()} for side, kp in keypoints.items()}
        (folder / f"{name}_keypoints.json").write_text(json.dumps({"order": order, "camera": {"K": None}, **hands}))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 synthetic samples and their ground-truth meshes and keypoints (camera frame, metres)."""
    root = tmp_path_factory.mktemp("eval_ds")
    cfg = SynthConfig(image_size=64)
    assert not synthesize(root, 3, 0, workers=1, settings=cfg, progress=False)["failed"]
    models = load_hand_models(None)
    items = {}
    for sid in fmt.list_samples(root):
        ann = fmt.read_annotation(root, sid)
        meshes, kps = {}, {}
        for side in ("left", "right"):
            v = mesh_in_camera(models[side], ann.hands[side], ann.R, ann.t).double().numpy()
            meshes[side] = (v, models[side].closed_faces.numpy())
            kps[side] = ann.hands[side].keypoints
        items[sid] = (meshes, kps)
    return root, items


@pytest.fixture(scope="module")
def perfect_run(data, tmp_path_factory):
    """Predictions = ground truth (written by the extractor's OBJ writer) for all items but the
    last, whose prediction is missing."""
    root, items = data
    pred = tmp_path_factory.mktemp("pred")
    names = sorted(items)
    for i, name in enumerate(names[:-1]):
        meshes, kps = items[name]
        _write_item(pred, name, meshes, kps, order="interhand" if i == 0 else "standard", writer=write_obj)
    out = tmp_path_factory.mktemp("out")
    summary = evaluate_folder(pred, root, out, split="all", n_points=POINTS, seed=0, progress=False)
    return pred, out, summary, names


def test_perfect_predictions_and_a_missing_item(perfect_run):
    _, out, s, names = perfect_run
    assert s["counts"]["items"] == 3 and s["counts"]["evaluated"] == 2 and s["counts"]["failed"] == 1
    assert list(s["failed"]) == [names[-1]] and "missing prediction" in s["failed"][names[-1]]
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["iou"] == pytest.approx(1.0, abs=2e-3)  # the OBJ writer keeps micrometres
    # micrometre rounding shifts the face areas a little, so a few samples move to other faces
    assert s["chamfer_l1_mm"] < 1e-2 and s["chamfer_l2_mm2"] < 5e-2
    for key in ("fscore_1mm", "fscore_2mm", "fscore_5mm"):
        assert s[key] == pytest.approx(1.0, abs=2e-3)
    assert s["normal_consistency"] > 0.999
    assert s["mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-6)
    assert s["mpjpe_mcp_scaled_mm"] == pytest.approx(0.0, abs=1e-6)
    assert s["mrrpe_mm"] == pytest.approx(0.0, abs=1e-6)
    assert s["penetration_cm3"] == pytest.approx(s["penetration_gt_cm3"], rel=0.01, abs=1e-3)
    for side in ("left", "right"):
        assert s[side]["iou"] == pytest.approx(1.0, abs=2e-3) and s["counts"]["hands"][side] == 2
    assert s["counts"]["pred_open_hands"] == 0
    assert s["settings"]["gt_kind"] == "dataset" and s["settings"]["points"] == POINTS


def test_output_files(perfect_run):
    _, out, s, names = perfect_run
    for name in ("per_item.csv", "summary.json", "iou_hist.png", "chamfer_hist.png", "fscore_curve.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text()) == s
    rows = list(csv.DictReader((out / "per_item.csv").open()))
    assert [r["name"] for r in rows] == names
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert float(rows[0]["left_iou"]) == pytest.approx(1.0, abs=2e-3) and rows[0]["left_iou_box"] == "palm"
    assert rows[2]["left_iou"] == "" and rows[2]["error"]
    assert len(s["fscore_curve"]["thresholds_mm"]) == len(s["fscore_curve"]["all"]) == 20
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_cli_exit_codes(data, perfect_run, tmp_path, caplog):
    root, _ = data
    pred, _, _, names = perfect_run
    caplog.set_level("INFO")
    assert main(["eval", "--pred", str(pred), "--gt", str(root), "--out", str(tmp_path / "a"),
                 "--points", str(POINTS), "--no-plots", "--split", "all"]) == 1
    assert "plots" not in caplog.text and not list((tmp_path / "a").glob("*.png"))
    caplog.clear()
    test_ids = fmt.list_samples(root, "test")
    assert set(test_ids) <= set(names[:-1])  # the test split has a prediction for every item
    # the default split of a dataset is test, as for `im2hands extract`
    assert main(["eval", "--pred", str(pred), "--gt", str(root), "--out", str(tmp_path / "b"),
                 "--points", str(POINTS)]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["counts"]["items"] == len(test_ids) and summary["settings"]["split"] == "test"
    assert f"split 'test': {len(test_ids)} items" in caplog.text and "and plots" in caplog.text
    assert summary["counts"]["unmatched_predictions"] == len(names) - 1 - len(test_ids)
    assert main(["eval", "--pred", str(tmp_path / "nope"), "--gt", str(root), "--out", str(tmp_path / "c")]) == 2


@pytest.mark.slow
def test_mesh_folder_ground_truth_and_known_errors(data, tmp_path):
    """GT from mesh files; the left prediction moved 1 mm: MRRPE 1 mm, MPJPE 0, Chamfer <= 1 mm."""
    _, items = data
    gt, gt_nokp, pred = tmp_path / "gt", tmp_path / "gt_nokp", tmp_path / "pred"
    for d in (gt, gt_nokp, pred):
        d.mkdir()
    shift = np.array([0.001, 0.0, 0.0])
    for name, (meshes, kps) in items.items():
        _write_item(gt, name, meshes, kps)
        _write_item(gt_nokp, name, meshes)
        moved = {"left": (meshes["left"][0] + shift, meshes["left"][1]), "right": meshes["right"]}
        _write_item(pred, name, moved, {"left": kps["left"] + shift, "right": kps["right"]})
    s = evaluate_folder(pred, gt, tmp_path / "out", n_points=POINTS, seed=0, plots=False, progress=False)
    assert s["counts"]["failed"] == 0 and s["settings"]["gt_kind"] == "meshes"
    assert s["mrrpe_mm"] == pytest.approx(1.0, rel=1e-4)
    assert s["mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-5)
    assert s["mpjpe_mcp_scaled_mm"] == pytest.approx(0.0, abs=1e-5)
    assert 0.05 < s["left"]["chamfer_l1_mm"] <= 1.0 and s["right"]["chamfer_l1_mm"] < 1e-3
    assert 0.5 < s["left"]["iou"] < 1.0 and s["right"]["iou"] == 1.0
    assert s["left"]["fscore_5mm"] == 1.0
    again = evaluate_folder(pred, gt, tmp_path / "out2", n_points=POINTS, seed=0, plots=False, progress=False)
    drop = ("timing", "settings")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in s.items() if k not in drop}
    other = evaluate_folder(pred, gt, tmp_path / "out3", n_points=POINTS, seed=1, plots=False, progress=False)
    assert other["left"]["chamfer_l1_mm"] != s["left"]["chamfer_l1_mm"]
    # no keypoints with the ground truth: bounding-box IoU points, no keypoint metrics
    s2 = evaluate_folder(pred, gt_nokp, tmp_path / "out4", n_points=POINTS, seed=0, plots=False, progress=False)
    assert s2["mpjpe_wrist_mm"] is None and s2["mrrpe_mm"] is None and s2["counts"]["mrrpe_items"] == 0
    assert 0.5 < s2["left"]["iou"] < 1.0
    rows = list(csv.DictReader((tmp_path / "out4" / "per_item.csv").open()))
    assert {r["left_iou_box"] for r in rows} == {"bbox"}


def _perfect_folders(data, tmp_path):
    """Ground-truth and prediction folders holding the same meshes for every item."""
    _, items = data
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    names = sorted(items)
    for name in names:
        _write_item(gt, name, items[name][0])
        _write_item(pred, name, items[name][0])
    return gt, pred, items, names


def test_bad_files_fail_their_item_only(data, tmp_path):
    gt, pred, items, names = _perfect_folders(data, tmp_path)
    (pred / f"{names[0]}_left.obj").write_bytes(b"garbage\x00\xff\xfe not an obj\n")
    (pred / f"{names[1]}_keypoints.json").write_text("{not json")
    s = evaluate_folder(pred, gt, tmp_path / "out", n_points=POINTS, plots=False, progress=False)
    assert s["counts"]["failed"] == 2 and s["counts"]["evaluated"] == 1
    assert "OBJ" in s["failed"][names[0]] and "JSON" in s["failed"][names[1]]
    assert s["iou"] == 1.0


def test_unexpected_error_fails_its_item_only(data, tmp_path, monkeypatch):
    """Any exception while evaluating one item is reported in its row; the rest go on; exit code 1."""
    from im2hands.metrics import evaluator

    gt, pred, items, names = _perfect_folders(data, tmp_path)
    real, calls = evaluator.evaluate_item, []

    def broken_for_first(pred_hands, gt_hands, **kwargs):  # items run in name order
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("kd-tree exploded")
        return real(pred_hands, gt_hands, **kwargs)

    monkeypatch.setattr(evaluator, "evaluate_item", broken_for_first)
    out = tmp_path / "out"
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--points", str(POINTS),
                 "--no-plots"]) == 1  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["counts"]["failed"] == 1 and s["counts"]["evaluated"] == len(names) - 1
    assert s["failed"] == {names[0]: "RuntimeError: kd-tree exploded"}
    assert s["iou"] == 1.0  # the other items were evaluated as usual
    rows = list(csv.DictReader((out / "per_item.csv").open()))
    assert [r["status"] for r in rows] == ["failed"] + ["ok"] * (len(names) - 1)
    assert rows[0]["error"] == "RuntimeError: kd-tree exploded" and rows[0]["left_iou"] == ""


def test_read_obj_variants(tmp_path):
    p = tmp_path / "quad.obj"
    p.write_text("# a quad\no thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4 -3 -2\n")
    v, f = read_obj(p)
    assert v.shape == (4, 3) and f.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2]]
    for text, msg in [("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 5\n", "out of range"), ("v 0 0 nan\nf 1 1 1\n", "NaN"),
                      ("v 0 0 0\n", "no triangles"), ("hello world\n", "malformed"), ("v 0 0\nf 1 1 1\n", "malformed")]:
        p.write_text(text)
        with pytest.raises(DataError, match=msg):
            read_obj(p)
    with pytest.raises(DataError, match="not found"):
        read_obj(tmp_path / "missing.obj")


def test_read_keypoint_file(tmp_path):
    kp = np.random.default_rng(0).normal(size=(21, 3))
    p = tmp_path / "k.json"
    right = {"joints": convert(kp, "standard", "mano").tolist()}
    p.write_text(json.dumps({"order": "mano", "right": right, "left": None}))
    got = read_keypoint_file(p)
    assert list(got) == ["right"] and np.allclose(got["right"], kp)
    for bad, msg in [({"order": "xyz"}, "order"), ({"left": {"joints": [[0, 0, 0]]}}, "shape"),
                     ({"left": {"joints": [[math.nan] * 3] * 21}}, "NaN"), ({"left": {}}, "joints")]:
        p.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=msg):
            read_keypoint_file(p)


def test_align_root_undoes_a_per_hand_translation(data, tmp_path):
    """Ground truth moved by 2 cm (left) and 3 cm (right), keypoints with it: camera-frame IoU
    collapses, root-aligned IoU is back at 1, and MRRPE still sees the 5 cm relative move."""
    root, items = data
    name = sorted(items)[0]
    meshes, kps = items[name]
    shifts = {"left": np.array([0.02, 0.0, 0.0]), "right": np.array([0.0, -0.03, 0.0])}
    pred = tmp_path / "pred"
    pred.mkdir()
    _write_item(pred, name, {s: (v + shifts[s], f) for s, (v, f) in meshes.items()},
                {s: kp + shifts[s] for s, kp in kps.items()})
    (gt := tmp_path / "gt").mkdir()
    _write_item(gt, name, meshes, kps)
    plain = evaluate_folder(pred, gt, tmp_path / "plain", n_points=POINTS, plots=False, progress=False)
    aligned = evaluate_folder(pred, gt, tmp_path / "aligned", n_points=POINTS, plots=False, progress=False,
                              align="root")
    assert plain["iou"] < 0.3 and plain["chamfer_l1_mm"] > 10.0
    assert aligned["iou"] == pytest.approx(1.0, abs=1e-6) and aligned["chamfer_l1_mm"] < 1e-6
    assert aligned["settings"]["align"] == "root" and plain["settings"]["align"] == "none"
    row = next(csv.DictReader((tmp_path / "aligned" / "per_item.csv").open()))
    assert float(row["left_align_shift_mm"]) == pytest.approx(20.0) and float(row["right_align_shift_mm"]) == pytest.approx(30.0)
    expected_mrrpe = 1000 * np.linalg.norm(shifts["left"] - shifts["right"])
    assert aligned["mrrpe_mm"] == pytest.approx(expected_mrrpe, rel=1e-6) == plain["mrrpe_mm"]
    # root alignment needs predicted keypoints: without them the item fails, named
    (pred / f"{name}_keypoints.json").unlink()
    s = evaluate_folder(pred, gt, tmp_path / "nokp", n_points=POINTS, plots=False, progress=False, align="root")
    assert s["counts"]["failed"] == 1 and "--align root needs" in s["failed"][name]
    with pytest.raises(DataError, match="--align must be one of"):
        evaluate_folder(pred, gt, tmp_path / "bad", n_points=POINTS, align="wrist")


def test_an_item_missing_one_hand_scores_the_other(data, tmp_path):
    """A ground-truth hand without a prediction is a missing hand (counted, listed, in no mean);
    the item's other hand is scored; MRRPE and penetration need both and stay empty."""
    root, items = data
    names = sorted(items)
    pred = tmp_path / "pred"
    for name in names:
        meshes, kps = items[name]
        _write_item(pred, name, meshes, kps, order="standard", writer=write_obj)
    (pred / f"{names[0]}_left.obj").unlink()
    s = evaluate_folder(pred, root, tmp_path / "out", split="all", n_points=POINTS, seed=0, progress=False, plots=False)
    assert s["counts"]["evaluated"] == len(names) and s["counts"]["failed"] == 0
    assert s["counts"]["missing_hands"] == {"left": 1, "right": 0} and s["missing"] == {names[0]: ["left"]}
    assert s["counts"]["hands"] == {"left": len(names) - 1, "right": len(names)}
    assert s["iou"] == pytest.approx(1.0, abs=2e-3) and s["counts"]["mrrpe_items"] == len(names) - 1
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "out" / "per_item.csv").open())}
    assert rows[names[0]]["status"] == "ok" and rows[names[0]]["error"] == "no predicted left hand"
    assert rows[names[0]]["left_iou"] == "" and float(rows[names[0]]["right_iou"]) == pytest.approx(1.0, abs=2e-3)
