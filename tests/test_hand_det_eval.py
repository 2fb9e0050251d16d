"""eval/hand_det.py: matching detections to hands on constructed cases, the totals, and the whole
script on a tiny synthetic split (MediaPipe's palm detector; skipped without its file)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "eval" / "hand_det.py"
sys.path.insert(0, str(SCRIPT.parent))
_spec = importlib.util.spec_from_file_location("hand_det_eval", SCRIPT)
hd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hd)

BOXES = {0: np.array([50.0, 60.0, 20.0, 20.0]), 1: np.array([150.0, 60.0, 30.0, 30.0])}


def test_matching_by_box_centre_within_half_a_side():
    hit = hd.score_image(np.array([[55.0, 60.0], [150.0, 74.0]]), np.array([0.2, 0.9]), BOXES)
    assert hit["found"] == 2 and hit["false"] == 0 and hit["sides_ok"] == [True, True]
    assert hit["errors"] == pytest.approx([5.0, 14.0])
    far = hd.score_image(np.array([[61.0, 60.0], [100.0, 100.0]]), None, BOXES)  # 11 px > half of 20
    assert far["found"] == 0 and far["false"] == 2 and far["sides_ok"] == []
    twice = hd.score_image(np.array([[50.0, 60.0], [52.0, 60.0]]), np.array([0.9, 0.1]), BOXES)
    assert twice["found"] == 1 and twice["false"] == 1 and twice["sides_ok"] == [False]  # the better one counts
    total = hd.summarise([hit, far, twice])
    assert total["hands"] == 6 and total["found_pct"] == pytest.approx(50.0)
    assert total["all_found_pct"] == pytest.approx(100.0 / 3) and total["false_per_image"] == pytest.approx(1.0)
    assert total["side_right_pct"] == pytest.approx(200.0 / 3)


def test_script_on_a_tiny_split(tmp_path):
    from im2hands.config.schema import SynthConfig
    from im2hands.data.synthetic import synthesize
    from im2hands.models.mediapipe.fetch import missing_files

    if missing_files() is not None:
        pytest.skip(f"MediaPipe files not cached: {missing_files()}")
    synthesize(tmp_path / "d", 3, 5, workers=1, settings=SynthConfig(image_size=128), progress=False)
    assert hd.main(["--data", str(tmp_path / "d"), "--split", "all", "--photos", "", "--scores", "0.5", "0.9",
                    "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    result = json.loads((tmp_path / "o" / "hand_det.json").read_text())
    low, high = result["mediapipe @ 0.5"]["renders all"], result["mediapipe @ 0.9"]["renders all"]
    assert low["images"] == 3 and low["hands"] == 6 and low["side_right_pct"] is None  # the palm detector has no sides
    assert high["found_pct"] <= low["found_pct"] and high["false_per_image"] <= low["false_per_image"]
    assert "| mediapipe @ 0.5 | renders all (3) |" in (tmp_path / "o" / "hand_det.md").read_text()
