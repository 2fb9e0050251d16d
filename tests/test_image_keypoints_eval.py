"""eval/image_keypoints.py: constructed cases with known answers, and the whole script on a tiny
synthetic split with exact and with side-swapped predictions."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from im2hands.config.schema import SynthConfig
from im2hands.data import format as fmt
from im2hands.data.synthetic import synthesize
from im2hands.extraction.inputs import write_keypoints

SCRIPT = Path(__file__).resolve().parents[1] / "eval" / "image_keypoints.py"
_spec = importlib.util.spec_from_file_location("image_keypoints_eval", SCRIPT)
ik = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ik)

L = np.stack([np.arange(21.0), np.zeros(21)], -1)
R = L + [100.0, 0.0]


def test_exact_swapped_and_missing_hands():
    exact = ik.score_item({"left": L, "right": R}, {"left": L, "right": R})
    assert all(h["found"] and h["error_2d_px"] == 0.0 and h["side_right"] for h in exact.values())
    swapped = ik.score_item({"left": L, "right": R}, {"left": R, "right": L})
    assert all(h["error_2d_px"] == pytest.approx(100.0) and not h["side_right"] for h in swapped.values())
    one = ik.score_item({"left": L, "right": R}, {"right": R + [3.0, 4.0]})
    assert one["left"] == {"found": False, "error_2d_px": None, "side_right": None}
    assert one["right"]["error_2d_px"] == pytest.approx(5.0) and one["right"]["side_right"]
    total = ik.summarize({"a": exact, "b": swapped, "c": one})
    assert total["gt_hands"] == 6 and total["found"] == 5
    assert total["side_right_pct"] == pytest.approx(60.0)
    assert total["error_2d_px_median"] == pytest.approx(5.0)


def test_script_on_a_split(tmp_path):
    root = tmp_path / "data"
    synthesize(root, 2, 5, workers=1, settings=SynthConfig(image_size=64), progress=False)
    ids = fmt.list_samples(root, "all")
    for name, swap in (("exact", False), ("swapped", True)):
        pred = tmp_path / name
        pred.mkdir()
        for sid in ids:
            ann = fmt.read_annotation(root, sid)
            joints = {s: np.asarray(ann.hands[s].keypoints, float) for s in ("left", "right")}
            if swap:
                joints = {"left": joints["right"], "right": joints["left"]}
            write_keypoints(pred / f"{sid}_keypoints.json", joints, ann.K)
        assert ik.main(["--pred", str(pred), "--gt", str(root), "--split", "all", "--out", str(tmp_path / f"o_{name}")]) == 0
        total = json.loads((tmp_path / f"o_{name}" / "image_keypoints.json").read_text())["total"]
        assert total["gt_hands"] == total["found"] == 4
        if swap:
            assert total["side_right_pct"] == 0.0 and total["error_2d_px_mean"] > 5.0
        else:
            assert total["side_right_pct"] == 100.0 and total["error_2d_px_mean"] < 1e-3
    (tmp_path / "exact" / f"{ids[0]}_keypoints.json").write_text("{not json")
    assert ik.main(["--pred", str(tmp_path / "exact"), "--gt", str(root), "--split", "all", "--out", str(tmp_path / "o")]) == 0
    total = json.loads((tmp_path / "o" / "image_keypoints.json").read_text())["total"]
    assert total["found"] == 2 and total["unreadable_items"] == [ids[0]]
    assert ik.main(["--pred", str(tmp_path / "nope"), "--gt", str(root), "--out", str(tmp_path / "o2")]) == 2
