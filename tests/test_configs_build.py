"""Every shipped config loads, resolves to its golden dump, and builds its model (the one
every-config test; configs must stay buildable, and a default that changes shows in a diff).

The golden dumps in ``tests/golden/configs`` are the resolved configs (schema defaults <
``inherit_from`` chain < the file) as ``config_to_yaml`` writes them. After an intended change
of a default, regenerate them with
``IM2HANDS_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/test_configs_build.py -k golden``.
"""

import os
from pathlib import Path

import pytest
import torch

from im2hands.config import config_to_yaml, load_config
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
GOLDEN = Path(__file__).resolve().parent / "golden" / "configs"


def _golden_path(path: Path) -> Path:
    return GOLDEN / path.relative_to(REPO / "configs")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_resolved_config_matches_its_golden_dump(path):
    text = config_to_yaml(load_config(path))
    golden = _golden_path(path)
    if os.environ.get("IM2HANDS_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden dump for {path.name}; see this module's docstring"
    assert text == golden.read_text()


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
    groups = [g if isinstance(g, dict) else {"params": [g]} for g in model.trainable_parameters()]  # params or groups
    n_trainable = sum(p.numel() for g in groups for p in g["params"])
    assert n_trainable > 0
