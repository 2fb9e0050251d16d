"""eval/est_metrics.py on a tiny synthetic split: a keypoint refinement (``kpts_ref``) is scored
on its own seeded validation noise (the script once fed it no noisy keypoints and stopped), and
the same item gets the same noise in every run."""

import importlib.util
import json
from pathlib import Path

import pytest

from im2hands.config import load_config
from im2hands.config.schema import SynthConfig
from im2hands.data.synthetic import synthesize
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("est_metrics_eval", REPO / "eval" / "est_metrics.py")
em = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(em)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_kpts_ref_scored_on_its_validation_noise(tmp_path):
    root = tmp_path / "data"
    synthesize(root, 6, 3, workers=1, settings=SynthConfig(image_size=64), progress=False)
    cfg = load_config(REPO / "configs/smoke/kpts_ref.yaml")
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "last.pt", model=build_model(cfg), optimizer=None, scheduler=None, cfg=cfg,
                    state={"step": 0}, rng=[])
    first = em.main(str(run), str(root), "train", str(tmp_path / "a.json"))
    again = em.main(str(run), str(root), "train", str(tmp_path / "b.json"))
    assert first == again == json.loads((tmp_path / "a.json").read_text())
    # the noisy input is the configured noise: millimetres off the ground truth, not zero
    assert 1.0 < first["mpjpe_in_mm"] < 100.0
    assert first["mpjpe_mm"] > 0.0 and first["baseline_zero_pose_mm"] > 10.0
