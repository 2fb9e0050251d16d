"""The one trainer on tiny models: run folder contents, learning, exact resume, stopping,
builders, logging format and the ``train`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from im2hands.cli import main
from im2hands.engine import build_datasets, build_device, build_model, build_optimizer, build_scheduler, train
from im2hands.engine.builders import EpochDataset, EpochSampler, resolve_data_root
from im2hands.engine.checkpoint import load_checkpoint, load_model
from im2hands.engine.logging import format_train_line, read_events, truncate_events
from im2hands.engine.trainer import move_to
from im2hands.utils.errors import ConfigError, DataError, Im2HandsError

REPO = Path(__file__).resolve().parents[2]


def _events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "metrics.jsonl") if e["event"] == kind]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- runs


def test_run_folder_contents_occupancy_model(make_cfg):
    cfg = make_cfg("model.type=test_tiny_occ", "train.max_steps=4", "train.val_every=2",
                   "train.checkpoint_every=2", "train.log_every=2", "train.num_workers=1")  # fmt: skip
    res = train(cfg, progress=False)
    run = res.run_dir
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp*")), "temporary files left behind"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["stopped_by"] == "max_steps" and summary["world_size"] == 1
    assert set(summary["final_val"]) >= {"loss", "mse_left", "mse_right", "iou"}
    assert summary["best"]["metric"] == "iou" and summary["best"]["mode"] == "max"
    train_ev, val_ev = _events(run, "train"), _events(run, "val")
    assert [e["step"] for e in train_ev] == [2, 4] and [e["step"] for e in val_ev] == [2, 4]
    assert set(train_ev[0]["losses"]) == {"loss", "mse_left", "mse_right"}
    for key in ("epoch", "lr", "ms_per_step", "samples_per_s"):
        assert key in train_ev[0]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["state"]["step"] == 4 and ckpt["config"]["model"]["type"] == "test_tiny_occ"
    assert "type: test_tiny_occ" in ckpt["config_yaml"] and len(ckpt["rng"]) == 1
    assert "type: test_tiny_occ" in (run / "config.yaml").read_text()
    model, cfg2 = load_model(run, "last")
    assert _same_weights(model, res.model) and cfg2.data.root == str(cfg.data.root)


def test_loss_decreases(make_cfg):
    res = train(make_cfg("train.max_steps=40", "train.log_every=5", "train.val_every=40"), progress=False)
    losses = [e["losses"]["loss"] for e in _events(res.run_dir, "train")]
    assert len(losses) == 8 and losses[-1] < 0.3 * losses[0], losses
    val = _events(res.run_dir, "val")
    assert len(val) == 1 and val[0]["metrics"]["mpjpe_mm"] < 30.0


def test_exact_resume_matches_straight_run(make_cfg):
    # 3 batches per epoch: step 7 is mid-epoch and mid-log-window; the step LR and the model's
    # random keypoint noise (global torch RNG) must both be restored.
    common = ("train.log_every=3", "train.scheduler=step", "train.step_size=5", "train.gamma=0.5",
              "train.val_every=4", "train.checkpoint_every=100")  # fmt: skip
    straight = train(make_cfg(*common, "train.max_steps=14", run="straight"), progress=False)
    first = train(make_cfg(*common, "train.max_steps=7", run="split"), progress=False)
    assert load_checkpoint(first.run_dir / "last.pt")["state"]["batch_in_epoch"] == 1
    resumed = train(make_cfg(*common, "train.max_steps=14", run="split"), resume=first.run_dir, progress=False)
    assert _same_weights(straight.model, resumed.model)
    a, b = _events(straight.run_dir, "train"), _events(resumed.run_dir, "train")
    assert [e["step"] for e in a] == [e["step"] for e in b] == [3, 6, 9, 12]
    assert [e["losses"] for e in a] == [e["losses"] for e in b]
    assert [e["lr"] for e in a] == [e["lr"] for e in b]
    assert resumed.summary["resumed_from_step"] == 7 and resumed.summary["steps_this_run"] == 7


def test_resume_refuses_another_model_and_fresh_run_refuses_existing(make_cfg):
    first = train(make_cfg("train.max_steps=2"), progress=False)
    with pytest.raises(Im2HandsError, match="model differs.*model.type"):
        train(make_cfg("model.type=test_tiny_occ", "train.max_steps=4"), resume=first.run_dir)
    with pytest.raises(Im2HandsError, match="--resume"):
        train(make_cfg("train.max_steps=4"))
    with pytest.raises(Im2HandsError, match="no checkpoint"):
        train(make_cfg("train.max_steps=4"), resume=first.run_dir.parent / "nope")


def test_max_minutes_stops_and_writes_last(make_cfg):
    res = train(make_cfg("train.max_steps=1000", "train.max_minutes=1e-9"), progress=False)
    assert res.summary["stopped_by"] == "max_minutes" and res.summary["steps"] == 1
    assert load_checkpoint(res.run_dir / "last.pt")["state"]["step"] == 1
    assert _events(res.run_dir, "val")[-1]["step"] == 1  # validated at the end


def test_tqdm_progress_runs(make_cfg):
    assert train(make_cfg("train.max_steps=2"), progress=True).summary["steps"] == 2


# --------------------------------------------------------------------------- builders


def test_unknown_model_type_lists_known_names(make_cfg):
    with pytest.raises(ConfigError, match=r"model.type 'nope'.*known: .*test_tiny_kpts"):
        build_model(make_cfg("model.type=nope"))


def test_data_root_from_config_or_env(make_cfg, tiny_data, monkeypatch, tmp_path):
    cfg = make_cfg("data.root=null")
    monkeypatch.delenv("IM2HANDS_DATA", raising=False)
    with pytest.raises(Im2HandsError, match="data.root=DIR.*IM2HANDS_DATA"):
        resolve_data_root(cfg)
    monkeypatch.setenv("IM2HANDS_DATA", str(tiny_data))
    assert resolve_data_root(cfg) == tiny_data
    with pytest.raises(DataError, match="not found"):
        resolve_data_root(make_cfg(f"data.root={tmp_path / 'missing'}"))


def test_validation_set_is_fixed_and_uniform(make_cfg):
    _, val_a = build_datasets(make_cfg("model.type=test_tiny_occ", "data.seed=1", "train.val_samples=1"))
    train_b, val_b = build_datasets(make_cfg("model.type=test_tiny_occ", "data.seed=2", "train.val_samples=5"))
    assert len(val_a) == 1 and len(val_b) == 2 and len(train_b) == 6  # the split holds 2 items
    full = val_b.dataset
    assert full.uniform_ratio == 1.0 and full.num_points == 64 and full.fields >= {"occupancy"}
    torch.testing.assert_close(val_a[0]["points"], val_b[0]["points"])  # independent of data.seed
    train_b.set_epoch(1)
    p1 = train_b[0]["points"]
    train_b.set_epoch(2)
    assert not torch.equal(p1, train_b[0]["points"])


def test_optimizer_scheduler_and_device(make_cfg):
    cfg = make_cfg("train.lr=0.002", "train.betas=[0.8,0.9]", "train.weight_decay=0.01", "train.scheduler=cosine",
                   "train.max_steps=10")  # fmt: skip
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    group = opt.param_groups[0]
    assert group["lr"] == 0.002 and group["betas"] == (0.8, 0.9) and group["weight_decay"] == 0.01
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in group["params"]) == n_trainable < sum(p.numel() for p in model.parameters())
    sched = build_scheduler(cfg, opt)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(0.001) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert build_scheduler(make_cfg("train.scheduler=none"), opt) is None
    with pytest.raises(ConfigError, match="train.scheduler"):
        build_scheduler(make_cfg("train.scheduler=linear"), opt)
    assert build_device(make_cfg("train.device=auto")).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            build_device(make_cfg("train.device=cuda"))


class _Items(Dataset):
    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.tensor([self.epoch, i])


def test_sampler_epochs_reach_persistent_workers_and_resume_mid_epoch():
    sampler = EpochSampler(_Items(), num_replicas=1, rank=0, seed=0)
    loader = DataLoader(EpochDataset(sampler.dataset), batch_size=2, sampler=sampler, num_workers=1,
                        persistent_workers=True)  # fmt: skip
    seen = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen[epoch] = torch.cat(list(loader))
        assert (seen[epoch][:, 0] == epoch).all()  # the worker's dataset copy got the epoch
    assert sorted(seen[0][:, 1].tolist()) == list(range(6)) and seen[0][:, 1].tolist() != seen[1][:, 1].tolist()
    sampler.set_epoch(1)
    sampler.set_start(2)
    assert torch.equal(torch.cat(list(loader)), seen[1][2:])


# --------------------------------------------------------------------------- logging and helpers


def test_log_line_and_event_truncation(tmp_path):
    line = format_train_line({"step": 1200, "losses": {"loss": 0.2134, "mse_left": 0.1, "mse_right": 0.1134},
                              "ms_per_step": 85.2, "samples_per_s": 94.04, "lr": 1e-4})  # fmt: skip
    assert line == "step 1200 | loss 0.213 (mse_left 0.1, mse_right 0.113) | 85 ms/step | 94.0 samples/s | lr 0.0001"
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"event": "train", "step": s}) + "\n" for s in (1, 2, 3, 4)) + '{"torn')
    assert truncate_events(path, 2) == 2
    assert [e["step"] for e in read_events(path)] == [1, 2]


def test_move_to_nested():
    batch = {"a": torch.zeros(2), "b": [torch.ones(1), ("x", torch.ones(3))], "id": ["s0"]}
    out = move_to(batch, torch.device("cpu"))
    assert torch.equal(out["b"][1][1], torch.ones(3)) and out["id"] == ["s0"] and isinstance(out["b"][1], tuple)


# --------------------------------------------------------------------------- command line


def test_cli_train_and_resume(tiny_data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "cli_run"
    args = ["model.type=test_tiny_kpts", f"data.root={tiny_data}", f"train.out_dir={run}", "train.batch_size=2",
            "train.max_steps=2", "train.num_workers=0", "train.val_samples=1", "train.tensorboard=false"]  # fmt: skip
    assert main(["train", str(REPO / "configs" / "synth.yaml"), *args]) == 0
    assert load_checkpoint(run / "last.pt")["state"]["step"] == 2
    assert main(["train", "--resume", str(run), "train.max_steps=3"]) == 0
    assert load_checkpoint(run / "last.pt")["state"]["step"] == 3
    assert "max_steps: 3" in (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "model.type=test_tiny_occ"]) == 2
    assert "model differs" in capsys.readouterr().err
    monkeypatch.delenv("IM2HANDS_DATA", raising=False)
    assert main(["train", "model.type=test_tiny_kpts"]) == 2  # schema defaults: no data folder
    assert "data.root" in capsys.readouterr().err


def test_python_m_train_reports_unknown_model(tiny_data):
    res = subprocess.run(
        [sys.executable, "-m", "im2hands", "train", "model.type=nope", f"data.root={tiny_data}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert "model.type 'nope'" in err and "known:" in err


def test_tensorboard_scalars_when_installed(make_cfg):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = train(make_cfg("train.max_steps=2", "train.tensorboard=true"), progress=False)
    acc = EventAccumulator(str(res.run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/mpjpe_mm"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]


def test_runs_without_tensorboard(make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    res = train(make_cfg("train.max_steps=1", "train.tensorboard=true"), progress=False)
    assert not (res.run_dir / "tb").exists() and (res.run_dir / "metrics.jsonl").is_file()


def test_initialization_from_config_runs_on_fresh_runs_only(make_cfg, monkeypatch):
    """``model.initialize_from_config`` (e.g. stage 1's init_decoders) is applied before the first
    step of a fresh run, and never on resume (the checkpoint already holds the result)."""
    from tiny_models import TinyOcc  # the module conftest registers (imported by that name)

    calls = []

    def init(self, cfg):
        calls.append(cfg.train.out_dir)
        with torch.no_grad():
            self.net[-1].bias.fill_(3.0)  # a mark the first step's state starts from
        return ["marked output bias"]

    monkeypatch.setattr(TinyOcc, "initialize_from_config", init)
    common = ("model.type=test_tiny_occ", "train.lr=1e-6", "train.val_every=100", "train.checkpoint_every=100")
    first = train(make_cfg(*common, "train.max_steps=2"), progress=False)
    assert len(calls) == 1
    assert abs(float(first.model.net[-1].bias.detach()) - 3.0) < 1e-3  # trained 2 tiny steps from the mark
    resumed = train(make_cfg(*common, "train.max_steps=4"), resume=first.run_dir, progress=False)
    assert len(calls) == 1 and resumed.summary["resumed_from_step"] == 2


def test_init_weights_starts_a_fresh_run_from_trained_weights(make_cfg):
    """``train.init_weights=RUN``: the weights of RUN, a new step count and schedule; another
    model type is refused by name."""
    first = train(make_cfg("train.max_steps=3", run="a"), progress=False)
    still = ("train.max_steps=1", "train.lr=0")  # one step that moves nothing
    second = train(make_cfg(*still, f"train.init_weights={first.run_dir}", run="b"), progress=False)
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key
    assert second.summary.get("resumed_from_step") is None
    fresh = train(make_cfg(*still, run="c"), progress=False)
    assert any(not torch.equal(fresh.model.state_dict()[k], v) for k, v in first.model.state_dict().items())
    with pytest.raises(Im2HandsError, match="holds a test_tiny_kpts model, this run trains test_tiny_occ"):
        train(make_cfg("model.type=test_tiny_occ", f"train.init_weights={first.run_dir}", run="d"), progress=False)


def test_ctrl_c_writes_last_checkpoint_and_summary_then_resumes_exactly(make_cfg, monkeypatch):
    """SIGINT during step 4 (of 3 per epoch): the loop stops after that step with last.pt and
    summary.json written (no final validation); resuming reaches the straight run's weights."""
    import os
    import signal

    from im2hands.engine.trainer import Trainer

    common = ("train.log_every=3", "train.val_every=100", "train.checkpoint_every=100")
    straight = train(make_cfg(*common, "train.max_steps=8", run="straight"), progress=False)
    real_step = Trainer._train_step

    def step_then_ctrl_c(self, batch):
        out = real_step(self, batch)
        if self.state["step"] == 3:  # the 4th step: counted after it returns
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "_train_step", step_then_ctrl_c)
    first = train(make_cfg(*common, "train.max_steps=8", run="split"), progress=False)
    assert first.summary["stopped_by"] == "interrupted" and first.summary["steps"] == 4
    assert first.summary["final_val"] is None and (first.run_dir / "summary.json").is_file()
    assert load_checkpoint(first.run_dir / "last.pt")["state"]["step"] == 4
    assert _events(first.run_dir, "val") == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.setattr(Trainer, "_train_step", real_step)
    resumed = train(make_cfg(*common, "train.max_steps=8", run="split"), resume=first.run_dir, progress=False)
    assert resumed.summary["stopped_by"] == "max_steps" and _same_weights(straight.model, resumed.model)


def test_dataloader_workers_ignore_ctrl_c():
    import signal

    from im2hands.engine.builders import seed_worker

    before = signal.getsignal(signal.SIGINT)
    try:
        seed_worker(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_bad_samples_are_counted_and_training_goes_on(make_cfg, tiny_data, tmp_path):
    """A truncated training image and a broken validation annotation are found at start-up
    (not at the first validation), left out, and counted in summary.json; with
    data.skip_bad_samples=false the job stops naming the first one."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    image = root / "images" / "0000001.png"
    image.write_bytes(image.read_bytes()[:200])
    (root / "annotations" / "0000007.json").write_text("{broken")  # a validation sample
    res = train(make_cfg(f"data.root={root}", "train.max_steps=2"), progress=False)
    assert res.summary["skipped_samples"] == {"train": 1, "val": 1}
    assert json.loads((res.run_dir / "summary.json").read_text())["skipped_samples"] == {"train": 1, "val": 1}
    with pytest.raises(DataError, match=r"0000001\.png: truncated PNG"):
        train(make_cfg(f"data.root={root}", "data.skip_bad_samples=false", run="strict"), progress=False)


def test_truncated_last_checkpoint_on_resume_points_at_best(make_cfg):
    first = train(make_cfg("train.max_steps=3"), progress=False)
    last = first.run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(Im2HandsError, match=r"last\.pt: unreadable checkpoint.*best\.pt is there"):
        train(make_cfg("train.max_steps=6"), resume=first.run_dir, progress=False)
    (first.run_dir / "best.pt").unlink()
    with pytest.raises(Im2HandsError, match=r"unreadable checkpoint") as info:
        train(make_cfg("train.max_steps=6"), resume=first.run_dir, progress=False)
    assert "best.pt" not in str(info.value)
