"""eval/pose_collisions.py: the exact mesh test on analytic cases, and the script's counts."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import trimesh

SCRIPT = Path(__file__).resolve().parents[1] / "eval" / "pose_collisions.py"
_spec = importlib.util.spec_from_file_location("pose_collisions_eval", SCRIPT)
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)


def test_mesh_test_finds_a_mesh_passing_through_itself():
    box = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    assert not pc.penetrating(np.asarray(box.vertices), np.asarray(box.faces))
    # two boxes overlapping by 2 cm, one mesh (both closed, outward): their overlap is winding 2
    other = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    other.apply_translation((0.02, 0.0, 0.0))
    both = trimesh.util.concatenate([box, other])
    assert pc.penetrating(np.asarray(both.vertices), np.asarray(both.faces))
    apart = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    apart.apply_translation((0.1, 0.0, 0.0))
    two = trimesh.util.concatenate([box, apart])
    assert not pc.penetrating(np.asarray(two.vertices), np.asarray(two.faces))


def test_counts_add_up_and_the_rest_pose_passes(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert pc.main(["--num", "12", "--seed", "0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r == json.loads(capsys.readouterr().out)
    assert r["penetrating"] + r["clean"] == 12 and r["reject"] is False
    assert 0 <= r["flagged_of_penetrating"] <= r["penetrating"] and 0 <= r["flagged_of_clean"] <= r["clean"]
    assert r["rest_pose_margin_mm"] > 0 and len(r["palm_limits_mm"]) == 5
    assert max(r["palm_limits_mm"]) <= 19.0 * 1.2  # 19 mm x the hand's scale at most
