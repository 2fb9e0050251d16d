"""``im2hands demo`` end to end on 2 samples with the shipped weights: it writes what the README
says, and reproduces the held-out numbers recorded for the shipped weights (MANIFEST.json,
measured with ``im2hands weights check --num 8 --write``) on those 2 items."""

from __future__ import annotations

import json

import pytest

from im2hands.cli import main
from im2hands.demo import RUNS
from im2hands.engine.weights import read_manifest

NUM = 2
IOU_TOL = 0.02  # absolute, per item (float16 storage and CPU summation order move it by ~1e-3)
CHAMFER_TOL = 0.05  # relative, per item


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--num", str(NUM), "--workers", "1", "--no-progress"]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_demo_writes_meshes_pictures_and_tables(demo):
    out, results = demo
    assert (out / "strip.png").stat().st_size > 0 and (out / "results.md").is_file()
    table = (out / "results.md").read_text()
    for run in RUNS.values():
        assert run["label"] in table
        assert (out / run["eval"] / "per_item.csv").is_file()
    summary = json.loads((out / "meshes" / "summary.json").read_text())
    records = {r["name"]: r for r in summary["items"]}
    meshed = 0
    for name in sorted(results["runs"]["images"]["items"]):
        for suffix in (".png", "_keypoints.json"):
            assert (out / "meshes" / f"{name}{suffix}").is_file()
        for side in ("left", "right"):  # a mesh for every hand the image path found, none for the others
            found = records[name]["hands"][side]["status"] == "ok"
            assert (out / "meshes" / f"{name}_{side}.obj").is_file() == found, (name, side)
            meshed += found
    assert meshed >= len(results["runs"]["images"]["items"])  # at least one hand per image on average
    # images only: the keypoints came from the default per-hand crop pipeline (the shipped crop network)
    settings = summary["settings"]
    assert settings["inputs"]["keypoints"] == "auto" and settings["estimator"].endswith("crop_net.pt")
    assert settings["refiner"] is None and settings["model"].endswith("ref_occ.pt")
    finding = settings["hand_finding"]  # the crop pipeline's defaults, recorded (docs/estimator.md)
    assert finding["min_size_ratio"] == 0.3 and finding["flip_average"] is True and finding["pair_depth_range"] is None


@pytest.mark.slow
def test_demo_reproduces_the_recorded_heldout_numbers(demo):
    _, results = demo
    recorded = read_manifest()["heldout"]
    assert recorded["seed"] == results["seed"] and recorded["num"] >= NUM
    compared = 0
    for name, run in results["runs"].items():
        want = recorded["runs"][name]["items"]
        for item, got in run["items"].items():
            assert got["iou"] is not None, (name, item)
            assert got["iou"] == pytest.approx(want[item]["iou"], abs=IOU_TOL), (name, item)
            assert got["chamfer_l1_mm"] == pytest.approx(want[item]["chamfer_l1_mm"], rel=CHAMFER_TOL), (name, item)
            compared += 1
    assert compared == NUM * len(RUNS)
