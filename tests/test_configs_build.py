"""Every shipped config loads and builds its model (issue: configs must stay buildable)."""

from pathlib import Path

import pytest
import torch

from im2hands.config import load_config
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """A tiny stage-1 checkpoint that stage-2 configs can point at."""
    run = tmp_path_factory.mktemp("stage1")
    cfg = load_config(REPO / "configs" / "smoke" / "init_occ.yaml")
    save_checkpoint(run / "last.pt", model=build_model(cfg), optimizer=None, scheduler=None, cfg=cfg,
                    state={"step": 0}, rng=[])
    return run


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_builds(path, stage1_run):
    torch.set_num_threads(1)
    overrides = []
    if load_config(path).model.type == "ref_occ":
        overrides.append(f"model.ref_occ.init_occ={stage1_run}")
    cfg = load_config(path, overrides)
    model = build_model(cfg)
    assert model.stage == cfg.model.type
    n_trainable = sum(p.numel() for p in model.trainable_parameters())
    assert n_trainable > 0
