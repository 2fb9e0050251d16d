"""Checkpoints: contents, RNG round trip, atomic writes (a crash keeps the previous file),
clear errors for bad files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import im2hands.engine.checkpoint as ckpt_mod
from im2hands.config import load_config
from im2hands.engine.checkpoint import (
    CHECKPOINT_VERSION, capture_rng_state, config_from_checkpoint, find_checkpoint, load_checkpoint,
    restore_rng_state, save_checkpoint,
)  # fmt: skip
from im2hands.utils.errors import Im2HandsError


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)], np.random.randn()


def _save(path, model, step=1, cfg=None):
    cfg = cfg or load_config(None, ["train.scheduler=step"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    return save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, cfg=cfg,
                           state={"step": step}, rng=[capture_rng_state()])  # fmt: skip


def test_rng_round_trip():
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    first = _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_contents_and_config_round_trip(tmp_path):
    cfg = load_config(None, ["train.scheduler=step", "model.init_occ.hidden=32", "name=x"])
    model = torch.nn.Linear(3, 2)
    _save(tmp_path / "last.pt", model, step=5, cfg=cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["version"] == CHECKPOINT_VERSION and ckpt["state"] == {"step": 5}
    assert ckpt["scheduler_type"] == "step" and ckpt["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert torch.equal(ckpt["model"]["weight"], model.weight) and len(ckpt["rng"]) == 1
    assert config_from_checkpoint(ckpt) == cfg and "hidden: 32" in ckpt["config_yaml"]
    assert find_checkpoint(tmp_path, "best") == tmp_path / "last.pt"  # best falls back to last


def test_atomic_write_leaves_no_temp_and_crash_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    model = torch.nn.Linear(3, 2)
    _save(path, model, step=1)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    before = path.read_bytes()

    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        real_save({"partial": torch.zeros(10)}, f)  # half a file at the temporary name...
        raise OSError("disk full")  # ...then the write dies

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        _save(path, model, step=2)
    assert path.read_bytes() == before and load_checkpoint(path)["state"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(Im2HandsError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Im2HandsError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(Im2HandsError, match="not an im2hands checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    _save(tmp_path / "new.pt", torch.nn.Linear(1, 1))
    ckpt = torch.load(tmp_path / "new.pt", weights_only=True)
    ckpt["version"] = CHECKPOINT_VERSION + 1
    torch.save(ckpt, tmp_path / "new.pt")
    with pytest.raises(Im2HandsError, match="newer"):
        load_checkpoint(tmp_path / "new.pt")
    with pytest.raises(Im2HandsError, match="no run folder"):
        find_checkpoint(tmp_path / "nothing")
