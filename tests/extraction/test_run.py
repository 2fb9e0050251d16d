"""Keypoint files, the batch job (summary, failures, atomic outputs) and ``im2hands extract``."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from im2hands.config.schema import SynthConfig
from im2hands.cli import main
from im2hands.config import config_to_yaml, load_config
from im2hands.data import format as fmt
from im2hands.data.synthetic import synthesize
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import save_checkpoint
from im2hands.engine.weights import shipped_path
from im2hands.extraction import run as run_mod
from im2hands.extraction.inputs import (
    KEYPOINT_ORDERS,
    keypoints_to_dict,
    list_items,
    parse_keypoints,
    prepare_image,
    read_keypoints,
    write_keypoints,
)
from im2hands.extraction.oracle import MeshOccupancy, SkeletonOccupancy
from im2hands.extraction.run import extract_folder, load_model
from im2hands.hands.joint_orders import convert
from im2hands.utils.errors import DataError, Im2HandsError

FAST = dict(resolution=16, upsampling_steps=2, progress=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_synth")
    cfg = SynthConfig(image_size=96, test_every=2, val_every=3)
    synthesize(root, 3, seed=5, workers=1, settings=cfg, progress=False)
    return root


@pytest.fixture
def kp_dir(tmp_path, synth):
    """Three keypoint files from the dataset (a.json, b.json, c.json), the last one malformed."""
    d = tmp_path / "kp"
    for name, sid in zip("ab", fmt.list_samples(synth)):
        ann = fmt.read_annotation(synth, sid)
        write_keypoints(d / f"{name}.json", {s: h.keypoints for s, h in ann.hands.items()}, ann.K)
    (d / "c.json").write_text('{"order": "standard", "left": {"joints": [[0, 0, 0.5]')  # truncated
    return d


def leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if ".tmp" in p.name or p.name.startswith(".")]


# --------------------------------------------------------------------------- keypoint files


@pytest.mark.parametrize("order", KEYPOINT_ORDERS)
def test_keypoint_file_round_trip(tmp_path, order):
    rng = np.random.default_rng(0)
    std = {"left": rng.normal(0, 0.05, (21, 3)) + [0, 0, 0.5], "right": rng.normal(0, 0.05, (21, 3)) + [0.1, 0, 0.6]}
    K = np.array([[500.0, 0, 128], [0, 500.0, 128], [0, 0, 1]])
    data = keypoints_to_dict(std, K, order)
    assert data["order"] == order
    np.testing.assert_allclose(np.asarray(data["left"]["joints"]), convert(std["left"], "standard", order), atol=1e-6)
    path = write_keypoints(tmp_path / "k.json", std, K, order)
    parsed = read_keypoints(path)
    assert parsed.order == order and np.allclose(parsed.K, K)
    for side in ("left", "right"):
        np.testing.assert_allclose(parsed.joints[side], std[side], atol=1e-6)  # back in standard order


def test_keypoint_file_absent_hand_and_defaults():
    kp = (np.random.default_rng(1).normal(0, 0.03, (21, 3)) + [0, 0, 0.4]).tolist()
    parsed = parse_keypoints({"right": {"joints": kp}, "left": None})
    assert parsed.order == "standard" and parsed.K is None and set(parsed.joints) == {"right"}


@pytest.mark.parametrize(
    "data, match",
    [
        ([1, 2], "JSON object"),
        ({"order": "biomech", "left": {"joints": [[0, 0, 1]] * 21}}, "unknown 'order'"),
        ({"left": {"joints": [[0, 0, 1]] * 20}}, r"shape \(20, 3\)"),
        ({"left": {"joints": [[0, 0]] * 21}}, r"shape \(21, 2\)"),
        ({"left": {"joints": [[0, 0, "a"]] * 21}}, "array of numbers"),
        ({"left": {"joints": [[0, 0, float("nan")]] * 21}}, "NaN"),
        ({"left": {"joints": [[0, 0, 0.5]] * 20 + [[0, 0, -0.1]]}}, r"non-positive depth z at joint\(s\) \[20\]"),
        ({"left": {"joints": [[0, 0, 500.0]] * 21}}, "millimetres"),
        ({"left": [[0, 0, 1]] * 21}, "'left' must be an object"),
        ({"order": "standard"}, "no hand"),
        ({"camera": {"K": [[0, 0, 1], [0, 1, 1], [0, 0, 1]]}, "left": {"joints": [[0, 0, 1]] * 21}}, "focal"),
        ({"camera": {}, "left": {"joints": [[0, 0, 1]] * 21}}, "'camera' must be an object with 'K'"),
    ],
)
def test_keypoint_file_errors(data, match):
    with pytest.raises(DataError, match=match):
        parse_keypoints(data, where="x.json")


def test_malformed_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        read_keypoints(p)


def test_prepare_image_crop_keeps_projection():
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    K = np.array([[3000.0, 0, 100], [0, 3000.0, 60], [0, 0, 1]])  # the crop reaches past the image
    pts = np.array([[0.0, 0.0, 1.0], [0.05, 0.02, 1.0], [-0.03, 0.04, 1.2]])
    img, K2 = prepare_image(image, K, 64, pts, fill=0.8)
    assert img.shape == (3, 64, 64) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    uv = pts @ K2.T
    uv = uv[:, :2] / uv[:, 2:]
    span = (uv.max(0) - uv.min(0)).max()
    assert span == pytest.approx(0.8 * 64, rel=0.05) and np.allclose((uv.max(0) + uv.min(0)) / 2, 32, atol=1.0)


# --------------------------------------------------------------------------- the job


def test_batch_job_one_malformed_file(tmp_path, kp_dir, monkeypatch):
    """Through the CLI: 2 ok, 1 failed, exit code 1, valid summary, no temporary files."""
    monkeypatch.setattr(run_mod, "load_model", lambda path, device="cpu", **kw: (SkeletonOccupancy(), None))
    out = tmp_path / "out"
    code = main(["extract", "--model", "stand-in", "--keypoints", str(kp_dir), "--out", str(out),
                 "--resolution", "16", "--upsampling-steps", "2", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["format"] == "im2hands-extract-summary"
    items = {r["name"]: r for r in summary["items"]}
    assert [items[n]["status"] for n in "abc"] == ["ok", "ok", "failed"]
    assert "c.json: malformed JSON" in items["c"]["message"]
    t = summary["totals"]
    assert (t["items"], t["processed"], t["ok"], t["failed"], t["hands_ok"]) == (3, 3, 2, 1, 4)
    for n in "ab":
        for side in ("left", "right"):
            h = items[n]["hands"][side]
            assert h["status"] == "ok" and h["watertight"] and h["vertices"] > 0 and h["faces"] > 0
            lines = (out / f"{n}_{side}.obj").read_text().splitlines()
            assert sum(line.startswith("v ") for line in lines) == h["vertices"]
            assert sum(line.startswith("f ") for line in lines) == h["faces"]
        assert set(items[n]["seconds"]) >= {"load", "encode", "decode", "mise", "marching", "write", "overlay", "total"}
    assert not list(out.glob("c*")) and not leftovers(out)
    assert summary["settings"]["resolution"] == 64 and summary["settings"]["threshold"] == 0.5


def test_dataset_job_with_oracle_overlay_and_limit(tmp_path, synth, caplog):
    out = tmp_path / "ds_out"
    caplog.set_level("INFO")
    summary = extract_folder(out, model=MeshOccupancy(), dataset=synth, split="all", limit=2, **FAST)
    assert [r["status"] for r in summary["items"]] == ["ok", "ok"] and summary["totals"]["items"] == 3
    assert "split 'all': 3 items" in caplog.text
    name = summary["items"][0]["name"]
    assert {f"{name}_left.obj", f"{name}_right.obj", f"{name}.png"} <= {p.name for p in out.iterdir()}
    with Image.open(out / f"{name}.png") as im:
        assert im.size == (192, 96)  # input | overlay
        pic = np.asarray(im).astype(int)
    assert np.abs(pic[:, :96] - pic[:, 96:]).sum() > 0  # the meshes changed the right half
    assert not leftovers(out)


def test_absent_hand_missing_image_and_bad_image(tmp_path, synth):
    sid = fmt.list_samples(synth)[0]
    ann = fmt.read_annotation(synth, sid)
    kp, img = tmp_path / "kp", tmp_path / "img"
    write_keypoints(kp / "one.json", {"right": ann.hands["right"].keypoints}, ann.K)
    write_keypoints(kp / "two.json", {s: h.keypoints for s, h in ann.hands.items()}, ann.K)
    write_keypoints(kp / "three.json", {s: h.keypoints for s, h in ann.hands.items()}, ann.K)
    img.mkdir()
    Image.open(synth / ann.image).save(img / "one.png")
    (img / "two.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    summary = extract_folder(out, model=SkeletonOccupancy(), images=img, keypoints=kp, **FAST)
    items = {r["name"]: r for r in summary["items"]}
    assert items["one"]["status"] == "ok" and items["one"]["hands"]["left"]["status"] == "skipped"
    assert (out / "one_right.obj").exists() and not (out / "one_left.obj").exists() and (out / "one.png").exists()
    assert items["two"]["status"] == "failed" and "unreadable image" in items["two"]["message"]
    assert items["three"]["status"] == "failed" and "no image three" in items["three"]["message"]
    assert summary["totals"]["hands_skipped"] == 1


def test_default_model_is_the_shipped_keypoint_only_stage1(tmp_path, kp_dir):
    """Keypoint files without images and without --model: the shipped keypoint-only stage 1."""
    summary = extract_folder(tmp_path / "o", keypoints=kp_dir, limit=1, **FAST)
    assert summary["settings"]["model"] == str(shipped_path("keypoint_only"))
    assert summary["settings"]["model_type"] == "init_occ" and summary["totals"]["ok"] == 1
    assert "use_image: false" in (tmp_path / "o" / "config.yaml").read_text()


def test_clear_errors(tmp_path, kp_dir, capsys):
    assert main(["extract", "--images", str(kp_dir), "--out", str(tmp_path / "o"), "--model", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run folder or checkpoint file at x" in err[0]
    with pytest.raises(Im2HandsError, match="no .json files"):
        list_items(keypoints=tmp_path)


def test_checkpoint_models(tmp_path, kp_dir):
    """A keypoint-only stage-1 checkpoint runs on keypoint files; an image model asks for images."""
    for use_image in (False, True):
        overrides = [f"model.init_occ.use_image={str(use_image).lower()}", "model.init_occ.hidden=8",
                     "model.encoder.width=8", "model.encoder.head_channels=8", "model.encoder.image_size=64"]  # fmt: skip
        cfg = load_config(None, overrides)
        run = tmp_path / f"run_{use_image}"
        save_checkpoint(run / "last.pt", model=build_model(cfg), optimizer=None, scheduler=None, cfg=cfg, state={"step": 0}, rng=[])
        model, _ = load_model(run)
        assert model.use_image == use_image and not model.training
        if use_image:
            with pytest.raises(Im2HandsError, match="reads images"):
                extract_folder(tmp_path / "o2", model=run, keypoints=kp_dir, progress=False)
        else:
            summary = extract_folder(tmp_path / "o1", model=run, keypoints=kp_dir, resolution=8, upsampling_steps=1,
                                     limit=1, progress=False)  # fmt: skip
            assert summary["finished"] and summary["totals"]["processed"] == 1
            assert summary["settings"]["model_type"] == "init_occ"
            assert summary["items"][0]["status"] in ("ok", "failed")  # random weights: any outcome, no crash
            assert "hands" in summary["items"][0] and summary["items"][0]["hands"]["left"]["points_evaluated"] > 0
            # the resolved config of the model used, next to the meshes
            assert summary["settings"]["config_files"] == ["config.yaml"]
            assert (tmp_path / "o1" / "config.yaml").read_text() == config_to_yaml(cfg)
            again = load_config(tmp_path / "o1" / "config.yaml")
            assert again.model.init_occ.use_image is False and again.model.init_occ.hidden == 8
            assert not leftovers(tmp_path / "o1")
    # a model object has no stored config: a stale config.yaml of an earlier run is removed
    summary = extract_folder(tmp_path / "o1", model=SkeletonOccupancy(), keypoints=kp_dir, limit=1, existing="overwrite",
                             **FAST)  # fmt: skip
    assert summary["settings"]["config_files"] == [] and not (tmp_path / "o1" / "config.yaml").exists()
    with pytest.raises(Im2HandsError, match="no run folder or checkpoint"):
        load_model(tmp_path / "nothing")


def test_interrupted_job_leaves_a_valid_summary(tmp_path, kp_dir, monkeypatch):
    real = run_mod._process
    calls = []

    def interrupt_second(src, *args, **kwargs):
        calls.append(src.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, *args, **kwargs)

    monkeypatch.setattr(run_mod, "_process", interrupt_second)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, **FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] is False and [r["name"] for r in summary["items"]] == ["a"]
    assert summary["totals"]["processed"] == 1 and summary["totals"]["items"] == 3
    assert not leftovers(out)


def test_write_obj_round_trip(tmp_path):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    path = run_mod.write_obj(tmp_path / "s.obj", m.vertices, m.faces, header="a\nb")
    back = trimesh.load(path, process=False)
    np.testing.assert_allclose(back.vertices, m.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, m.faces)
    assert path.read_text().startswith("# a\n# b\n") and not leftovers(tmp_path)


def test_write_obj_text_matches_savetxt(tmp_path):
    """The one-format writer gives byte for byte what np.savetxt (the naive reference) writes."""
    import io

    rng = np.random.default_rng(0)
    v = rng.normal(scale=0.1, size=(50, 3))
    v[0] = [-0.0, 1e-9, -123.4567894]  # signed zero, rounding to zero, many digits
    f = rng.integers(0, 50, size=(90, 3))
    path = run_mod.write_obj(tmp_path / "r.obj", v, f, header="h")
    ref = io.StringIO()
    ref.write("# h\n# 50 vertices, 90 faces\n")
    np.savetxt(ref, v, fmt="v %.6f %.6f %.6f")
    np.savetxt(ref, f + 1, fmt="f %d %d %d")
    assert path.read_text() == ref.getvalue()
    with pytest.raises(ValueError, match="vertices"):
        run_mod.write_obj(tmp_path / "bad.obj", v[:, :2], f)
    assert not (tmp_path / "bad.obj").exists() and not leftovers(tmp_path)


def test_models_declare_what_the_extractor_needs(tmp_path):
    """The extractor reads declared capabilities (models/base.py), not probed attributes: an
    image model says so and names its input side, the stand-ins decode occupancy without images,
    keypoint stages do not decode occupancy, and an object that is not a HandsModel is refused."""
    from torch import nn

    from im2hands.models.encoder import ImageEncoder
    from im2hands.models.init_occ import InitOccNet
    from im2hands.models.kpts_est import KptsEstModel

    with_image = InitOccNet(encoder=ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=8, image_size=32))
    assert with_image.uses_image is True and with_image.image_size == 32 and with_image.decodes_occupancy
    without = InitOccNet(encoder=None)
    assert without.uses_image is False and without.image_size is None and without.decodes_occupancy
    assert SkeletonOccupancy().uses_image is False and SkeletonOccupancy().decodes_occupancy
    assert MeshOccupancy().needs_ground_truth and not SkeletonOccupancy().needs_ground_truth
    assert KptsEstModel.decodes_occupancy is False and KptsEstModel.uses_image is True
    with pytest.raises(Im2HandsError, match="HandsModel"):
        extract_folder(tmp_path / "o", model=nn.Identity(), keypoints=_one_keypoint_file(tmp_path), **FAST)


# --------------------------------------------------------------------------- keypoints for eval


def _eval(pred, gt, out):
    """``im2hands eval`` on an extraction folder (dataset ground truth, every sample)."""
    code = main(["eval", "--pred", str(pred), "--gt", str(gt), "--split", "all", "--out", str(out),
                 "--points", "2000", "--no-plots"])  # fmt: skip
    return code, json.loads((Path(out) / "summary.json").read_text())


def test_extract_writes_the_keypoints_eval_reads(tmp_path, synth):
    """Dataset input (ground-truth keypoints) -> the oracle's meshes and NAME_keypoints.json ->
    eval: IoU near 1 and every keypoint metric 0 mm."""
    out = tmp_path / "pred"
    summary = extract_folder(out, model=MeshOccupancy(), dataset=synth, split="all", overlay=False, **FAST)
    ids = fmt.list_samples(synth)
    assert [r["status"] for r in summary["items"]] == ["ok"] * len(ids)
    for rec, sid in zip(summary["items"], ids):
        assert rec["keypoints_source"] == "dataset" and f"{sid}_keypoints.json" in rec["files"]
        ann = fmt.read_annotation(synth, sid)
        data = json.loads((out / f"{sid}_keypoints.json").read_text())
        assert data["order"] == "standard" and np.allclose(data["camera"]["K"], ann.K)
        written = read_keypoints(out / f"{sid}_keypoints.json")  # the input format, valid as input
        assert set(written.joints) == {"left", "right"}
        for side, hand in ann.hands.items():
            np.testing.assert_allclose(written.joints[side], hand.keypoints, atol=1e-6)
    assert not leftovers(out)
    code, ev = _eval(out, synth, tmp_path / "eval")
    assert code == 0 and ev["counts"]["evaluated"] == len(ids)
    assert ev["counts"]["mpjpe_hands"] == {"left": len(ids), "right": len(ids)}
    assert ev["counts"]["mrrpe_items"] == len(ids)
    assert ev["mpjpe_wrist_mm"] == pytest.approx(0.0, abs=1e-3)  # 7-decimal (0.1 um) rounding only
    assert ev["mpjpe_mcp_scaled_mm"] == pytest.approx(0.0, abs=1e-3)
    assert ev["mrrpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert ev["iou"] > 0.7


def test_extract_shifted_keypoints_give_known_errors(tmp_path, synth, monkeypatch):
    """Keypoint files with the left hand moved 10 mm and each pinky tip 5 mm, through both CLI
    commands: MPJPE (both protocols) 5/21 mm per hand, MRRPE 10 mm."""
    hand_shift, tip_shift = np.array([0.010, 0.0, 0.0]), np.array([0.0, 0.005, 0.0])
    kp = tmp_path / "kp"
    ids = fmt.list_samples(synth)
    given = {}
    for sid in ids:
        ann = fmt.read_annotation(synth, sid)
        joints = {s: np.array(h.keypoints, dtype=np.float64) for s, h in ann.hands.items()}
        joints["left"] += hand_shift
        for j in joints.values():
            j[20] += tip_shift  # the pinky tip (standard order)
        given[sid] = joints
        write_keypoints(kp / f"{sid}.json", joints, ann.K, order="interhand")  # read back as standard
    monkeypatch.setattr(run_mod, "load_model", lambda path, device="cpu", **kw: (SkeletonOccupancy(), None))
    out = tmp_path / "pred"
    assert main(["extract", "--model", "stand-in", "--keypoints", str(kp), "--out", str(out),
                 "--resolution", "16", "--upsampling-steps", "2", "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert {r["keypoints_source"] for r in summary["items"]} == {"file"}
    for sid in ids:
        written = read_keypoints(out / f"{sid}_keypoints.json")
        for side in ("left", "right"):
            np.testing.assert_allclose(written.joints[side], given[sid][side], atol=1e-6)
    code, ev = _eval(out, synth, tmp_path / "eval")
    assert code == 0 and ev["counts"]["evaluated"] == len(ids)
    expected = 5.0 / 21.0  # mm: one of 21 joints off by 5 mm; the wrist and middle MCP are exact
    for side in ("left", "right"):
        assert ev[side]["mpjpe_wrist_mm"] == pytest.approx(expected, abs=1e-3)
        assert ev[side]["mpjpe_mcp_scaled_mm"] == pytest.approx(expected, abs=1e-3)
    assert ev["mrrpe_mm"] == pytest.approx(10.0, abs=1e-3)
    rows = (tmp_path / "eval" / "per_item.csv").read_text().splitlines()
    header = rows[0].split(",")
    for row in rows[1:]:
        cells = dict(zip(header, row.split(",")))
        assert float(cells["mrrpe_mm"]) == pytest.approx(10.0, abs=1e-3)
        assert float(cells["left_mpjpe_wrist_mm"]) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("refined", [False, True])
def test_estimated_keypoints_are_written_with_their_source(tmp_path, synth, monkeypatch, refined):
    """``--keypoints auto``: the estimator's (or refiner's) keypoints go to NAME_keypoints.json,
    an absent hand is left out, and summary.json says where they came from."""
    sid = fmt.list_samples(synth)[0]
    ann = fmt.read_annotation(synth, sid)
    right = np.array(ann.hands["right"].keypoints) + [0.0, 0.0, 0.02]
    seen = []

    def fake_pipeline(image, K):
        seen.append(K)
        return SimpleNamespace(joints={"right": right}, K=np.asarray(K), refined=refined)

    monkeypatch.setattr(run_mod, "load_estimator", lambda *args: (fake_pipeline, {}))
    out = tmp_path / "pred"
    summary = extract_folder(out, model=SkeletonOccupancy(), dataset=synth, split="all", keypoints="auto",
                             estimator="stand-in", limit=1, overlay=False, **FAST)  # fmt: skip
    rec = summary["items"][0]
    assert rec["status"] == "ok" and rec["keypoints_source"] == ("refined" if refined else "estimator")
    assert len(seen) == 1 and np.allclose(seen[0], ann.K)  # dataset items pass their camera
    data = json.loads((out / f"{sid}_keypoints.json").read_text())
    assert "left" not in data and rec["hands"]["left"]["status"] == "skipped"
    np.testing.assert_allclose(read_keypoints(out / f"{sid}_keypoints.json").joints["right"], right, atol=1e-6)


def test_write_configs(tmp_path):
    """One file per model config given; a role without one loses its stale file."""
    (tmp_path / "config_refiner.yaml").write_text("stale: 1\n")
    written = run_mod.write_configs(tmp_path, {"model": "a: 1\n", "init_occ": "b: 2", "estimator": None})
    assert written == ["config.yaml", "config_init_occ.yaml"]
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
    assert (tmp_path / "config_init_occ.yaml").read_text() == "b: 2\n"
    assert not (tmp_path / "config_refiner.yaml").exists() and not leftovers(tmp_path)

    class Stage2Like(SkeletonOccupancy):
        init_occ_config = "model:\n  type: init_occ\n"  # what a stage-2 model carries for its stage 1

    out = tmp_path / "out"
    summary = extract_folder(out, model=Stage2Like(), keypoints=_one_keypoint_file(tmp_path), **FAST)
    assert summary["settings"]["config_files"] == ["config_init_occ.yaml"]
    assert (out / "config_init_occ.yaml").read_text() == Stage2Like.init_occ_config


def _one_keypoint_file(tmp_path):
    rng = np.random.default_rng(3)
    d = tmp_path / "kp1"
    write_keypoints(d / "x.json", {"right": rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.5]})
    return d


def test_overlay_draws_the_found_regions_with_their_sides():
    from im2hands.data.show import HAND_COLORS
    from im2hands.extraction.overlay import draw_regions as _draw_regions

    image = np.zeros((100, 120, 3), np.uint8)
    drawn = _draw_regions(image, {"left": (30.0, 50.0, 40.0, 0.0), "right": (90.0, 50.0, 30.0, np.pi / 4)}, 1.0)
    left = tuple(int(255 * c) for c in HAND_COLORS["left"])
    assert tuple(drawn[50, 10]) == left and tuple(drawn[30, 30]) == left  # left and top edges of the square
    assert tuple(drawn[50, 30]) == (0, 0, 0)  # its centre stays the image
    right = tuple(int(255 * c) for c in HAND_COLORS["right"])
    corner = 90 - 15 * np.sqrt(2)  # the turned square's left corner (68.8)
    assert right in {tuple(drawn[50, u]) for u in range(int(corner) - 1, int(corner) + 2)}
    assert not drawn[:, : int(corner) - 1][:, 60:].any()  # nothing of it further left
    half = _draw_regions(np.zeros((50, 60, 3), np.uint8), {"left": (30.0, 50.0, 40.0, 0.0)}, 0.5)
    assert tuple(half[25, 5]) == left  # regions follow a resized picture


def test_output_folder_that_is_an_input_folder_is_refused(tmp_path, capsys):
    """``--images same --out same`` would write the overlays NAME.png over the photos."""
    from im2hands.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    picture = np.full((32, 32, 3), 90, np.uint8)
    Image.fromarray(picture).save(photos / "a.png")
    before = (photos / "a.png").read_bytes()
    for args in (["--images", str(photos)], ["--keypoints", str(photos)], ["--dataset", str(tmp_path)]):
        out = photos if args[0] != "--dataset" else tmp_path
        assert main(["extract", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is the {args[0]} folder" in err and len(err.strip().splitlines()) == 1
    assert main(["extract", "--dataset", str(tmp_path), "--out", str(tmp_path / "images")]) == 2
    assert (photos / "a.png").read_bytes() == before and sorted(p.name for p in photos.iterdir()) == ["a.png"]


def test_tiny_images_fail_their_item_and_more_formats_are_listed(tmp_path):
    from im2hands.extraction.inputs import MIN_IMAGE_SIDE, list_items, read_input_image
    from im2hands.utils.errors import DataError

    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "ok.webp")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "ok2.BMP")
    (folder / "notes.txt").write_text("not an image")
    names = sorted(src.name for src in list_items(images=folder, keypoints=None, dataset=None, split="test"))
    assert names == ["dot", "ok", "ok2"]
    with pytest.raises(DataError, match=rf"dot\.png: image of 1 x 1 pixels is too small.*{MIN_IMAGE_SIDE}"):
        read_input_image(folder / "dot.png")
    assert read_input_image(folder / "ok.webp").shape == (40, 50, 3)


def test_a_folder_holds_one_run(tmp_path, kp_dir, monkeypatch):
    """A second run into a folder is refused, replaces the first (--overwrite: no stale item of
    it stays) or continues it (--resume: finished items kept, same settings only); a second
    writer is locked out while the first runs."""
    import os

    from im2hands.extraction.outfolder import LOCK

    out = tmp_path / "o"
    first = extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, **FAST)
    n = first["totals"]["processed"]
    with pytest.raises(Im2HandsError, match=rf"holds an earlier extract run \({n} items\).*--resume.*--overwrite"):
        extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, limit=1, **FAST)
    names = sorted(p.name for p in out.iterdir())
    resumed = extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, existing="resume", **FAST)
    ok = [r for r in first["items"] if r["status"] == "ok"]
    assert ok and [r for r in resumed["items"] if r["status"] == "ok"] == ok  # finished items kept as they were
    redone = [r for r in resumed["items"] if r["status"] != "ok"]  # unfinished ones (a malformed file) done again
    assert [(r["name"], r["message"]) for r in redone] == [(r["name"], r["message"]) for r in first["items"] if r["status"] != "ok"]
    assert sorted(p.name for p in out.iterdir()) == names
    with pytest.raises(Im2HandsError, match=r"--resume: .*other settings \(resolution"):
        extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, existing="resume", resolution=8,
                       upsampling_steps=1, progress=False)  # fmt: skip
    two = extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, limit=1, existing="overwrite", **FAST)
    kept = {f for r in two["items"] for f in r["files"]} | {"summary.json"}
    assert two["totals"]["processed"] == 1 and {p.name for p in out.iterdir()} == kept  # the folder matches its summary
    (out / LOCK).write_text(str(os.getppid()))  # a live process holds the folder
    with pytest.raises(Im2HandsError, match=rf"another im2hands extract \(process {os.getppid()}\)"):
        extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, existing="overwrite", **FAST)
    (out / LOCK).write_text("999999999")  # left by a process that is gone: taken over
    extract_folder(out, model=SkeletonOccupancy(), keypoints=kp_dir, existing="overwrite", **FAST)
    assert not (out / LOCK).exists()


@pytest.mark.parametrize("mesh_format", ["ply", "glb"])
def test_mesh_formats_hold_the_same_meshes(tmp_path, kp_dir, mesh_format):
    import trimesh

    from im2hands.cli import main
    from im2hands.data.files import read_obj

    obj = extract_folder(tmp_path / "obj", model=SkeletonOccupancy(), keypoints=kp_dir, limit=1, **FAST)
    other = extract_folder(tmp_path / mesh_format, model=SkeletonOccupancy(), keypoints=kp_dir, limit=1,
                           mesh_format=mesh_format, **FAST)  # fmt: skip
    name = obj["items"][0]["name"]
    assert other["settings"]["mesh_format"] == mesh_format
    for side in ("left", "right"):
        v, f = read_obj(tmp_path / "obj" / f"{name}_{side}.obj")
        if mesh_format == "ply":
            mesh = trimesh.load(tmp_path / "ply" / f"{name}_{side}.ply", process=False)
        else:
            scene = trimesh.load(tmp_path / "glb" / f"{name}.glb", process=False)
            mesh = scene.geometry[f"{side}_hand"]
            assert tuple(mesh.visual.vertex_colors[0][:3]) == ((242, 115, 38) if side == "left" else (38, 115, 242))
        assert mesh.faces.shape == f.shape and np.abs(np.asarray(mesh.vertices) - v).max() < 1e-5
    assert {p.suffix for p in (tmp_path / mesh_format).iterdir()} >= {f".{mesh_format}"}
    assert not list((tmp_path / mesh_format).glob("*.obj"))
    with pytest.raises(SystemExit) as exc:  # argparse: an unknown format is an argument error
        main(["extract", "--keypoints", str(kp_dir), "--out", str(tmp_path / "x"), "--mesh-format", "stl"])
    assert exc.value.code == 2
    with pytest.raises(Im2HandsError, match="--mesh-format must be one of obj, ply, glb"):
        extract_folder(tmp_path / "y", model=SkeletonOccupancy(), keypoints=kp_dir, mesh_format="stl", **FAST)
