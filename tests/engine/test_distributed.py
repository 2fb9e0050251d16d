"""Distributed set-up: no-ops for one process, and a real 2-process gloo DDP run on CPU whose
ranks must end with identical weights."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from im2hands.engine import distributed as du
from im2hands.utils.errors import Im2HandsError

WORLD = 2


def test_single_process_is_a_no_op(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = du.init_distributed(use_cuda=False)
    assert info == du.DistInfo() and info.is_main and not info.enabled
    assert du.broadcast_object("x", info) == "x" and du.all_gather_objects(3, info) == [3]
    assert du.any_rank(True, info, torch.device("cpu")) is True
    model = torch.nn.Linear(2, 2)
    assert du.wrap_model(model, info, torch.device("cpu")) is model and du.unwrap(model) is model
    du.barrier(info)
    du.cleanup(info)


def test_bad_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(Im2HandsError, match="RANK=5"):
        du.env_world()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(Im2HandsError, match="MASTER_ADDR"):
        du.init_distributed(use_cuda=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _worker(rank: int, cfg, port: int, out: str) -> None:
    """One rank: the torchrun environment, then the library's train()."""
    import tiny_models

    from im2hands.engine import train

    tiny_models.register()  # in the spawned process
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    res = train(cfg, progress=False)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"hash": _state_hash(res.model), "summary": res.summary}))


@pytest.mark.slow
def test_ddp_two_cpu_processes_hold_identical_weights(make_cfg, tmp_path):
    cfg = make_cfg("train.max_steps=4", "train.val_every=2", "train.checkpoint_every=2", "train.log_every=2")
    ctx = mp.start_processes(_worker, args=(cfg, _free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="spawn")  # fmt: skip
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("DDP run did not finish in 180 s")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert results[0]["hash"] == results[1]["hash"]
    # validation sums are gathered: every rank sees the same averages and the same best
    assert results[0]["summary"]["final_val"] == results[1]["summary"]["final_val"]
    assert results[0]["summary"]["best"] == results[1]["summary"]["best"]
    run = Path(cfg.train.out_dir)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == WORLD and summary["steps"] == 4
    assert summary["samples_per_s"] is not None and summary["final_val"]["mpjpe_mm"] > 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert len(ckpt["rng"]) == WORLD and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "train"] == [2, 4]  # rank 0 only: no duplicates
    # the trained weights are not the initial ones
    untrained = __import__("im2hands.engine", fromlist=["build_model"]).build_model(cfg)
    assert _state_hash(untrained) != results[0]["hash"]
