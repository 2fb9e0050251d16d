"""Fixed-seed loss-dict regression, one per stage: tiny models built from keyword arguments (no
YAML), a fixed synthetic batch, every loss term compared with ``tests/golden/losses.json``.

A refactor must not change what a model computes: a changed number here is a changed model. After
an intended change, regenerate with
``IM2HANDS_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/models/test_loss_regression.py``.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from tiny_stages import STAGES, one_thread, tiny_batch as _batch  # noqa: F401 - one_thread: autouse fixture

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "losses.json"


def _losses(stage: str) -> dict[str, float]:
    model = STAGES[stage]()
    model.train()  # training-mode losses (dropout is 0; BatchNorm uses batch statistics)
    torch.manual_seed(5)
    batch = _batch()
    losses = model.compute_loss(batch, model(batch))
    return {k: float(v.detach()) for k, v in sorted(losses.items())}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_loss_dict_is_unchanged(stage):
    got = _losses(stage)
    assert all(torch.isfinite(torch.tensor(v)) for v in got.values()) and "loss" in got
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if os.environ.get("IM2HANDS_UPDATE_GOLDEN"):
        golden[stage] = got
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    assert stage in golden, f"no golden losses for {stage}; see this module's docstring"
    assert sorted(got) == sorted(golden[stage])
    for key, value in golden[stage].items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
