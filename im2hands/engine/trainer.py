"""The one training loop, for every stage (stage differences live in the models).

``train(cfg)`` builds everything through :mod:`im2hands.engine.builders`, then repeats
batch transform (augmentation, keypoint noise: :mod:`im2hands.data.transforms`) -> forward -> ``compute_loss`` -> backward -> (clip) -> optimizer and scheduler step until
``train.max_steps`` or ``train.max_minutes``. It validates every ``train.val_every`` steps and
at the end (``best.pt`` when the model's ``val_metric`` improves), writes ``last.pt`` every
``train.checkpoint_every`` steps and at the end, and logs to ``metrics.jsonl`` (see
:mod:`im2hands.engine.logging`). Under torchrun it runs DistributedDataParallel; only rank 0
logs, shows progress and writes files. ``docs/training.md`` is the user guide.

Ctrl-C (SIGINT) asks the loop to stop after the current step: it writes ``last.pt`` and
``summary.json`` (``stopped_by: interrupted``) and returns; a second Ctrl-C aborts at once.
DataLoader workers ignore SIGINT (the main process decides).

Exact resume: data order is a pure function of ``(seed, epoch)`` with a skip to the position
within the epoch, occupancy points of ``(data.seed, epoch, index)``, and the checkpoint holds
every RNG state; validation runs under a forked, fixed-seed RNG so it never perturbs training.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from im2hands.config.load import load_config, save_config
from im2hands.engine import builders
from im2hands.engine import distributed as du
from im2hands.engine.checkpoint import (
    BEST, LAST, capture_rng_state, config_dict, load_checkpoint, restore_rng_state, save_checkpoint,
    load_init_weights,
)  # fmt: skip
from im2hands.engine.logging import METRICS_FILE, MetricsLogger, truncate_events
from im2hands.engine.stop import StopRequest
from im2hands.models.base import HandsModel
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import write_json

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    """The run folder (config.yaml, last.pt, best.pt, metrics.jsonl, summary.json)."""
    summary: dict[str, Any]
    """The content of summary.json."""
    model: torch.nn.Module
    """The trained model (unwrapped, in eval mode, on the training device)."""


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors in (nested) dicts, lists and tuples moved to ``device`` (non-blocking); others as is."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [move_to(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(move_to(v, device) for v in obj)
    return obj


def batch_size_of(batch: Any) -> int:
    """Leading size of the first tensor in a (nested) batch."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    for v in values:
        if isinstance(v, (torch.Tensor, dict, list, tuple)):
            n = batch_size_of(v)
            if n:
                return n
    return 0


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dict_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _dict_diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]}: {b!r} -> {a!r}"]


class _Meter:
    """Loss sums over the current log window (on the device: no sync until logged)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.reset_clock()

    def reset_clock(self) -> None:
        self.t_start, self.data_s = time.perf_counter(), 0.0

    def update(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            v = v.detach().double()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: float(v.item()) / max(self.count, 1) for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0
        self.reset_clock()

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {k: float(v.item()) for k, v in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: dict[str, Any] | None, device: torch.device) -> None:
        if state:
            self.sums = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in state["sums"].items()}
            self.count = int(state["count"])


def _new_run_dir(cfg: Any) -> Path:
    base = Path("runs") / cfg.name / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


class Trainer:
    """One training job; use :func:`train` rather than this class directly."""

    def __init__(self, cfg: Any, info: du.DistInfo, *, resume: str | os.PathLike | None = None,
                 progress: bool | None = None, t0: float | None = None) -> None:  # fmt: skip
        self.t0 = time.perf_counter() if t0 is None else t0
        self.info = info
        self.cfg = cfg = copy.deepcopy(cfg)
        t = cfg.train
        cfg.data.root = str(builders.resolve_data_root(cfg))  # the run folder records the folder used
        self.device = builders.build_device(cfg, info.local_rank)
        self.progress = (sys.stderr.isatty() if progress is None else progress) and info.is_main
        ckpt = None
        if resume is not None:
            self.run_dir = Path(resume)
            ckpt = load_checkpoint(self.run_dir / LAST)  # an unreadable one names best.pt when it is there
            diff = _dict_diff(config_dict(cfg)["model"], ckpt["config"].get("model", {}), "model.")
            if diff:
                raise Im2HandsError(
                    f"cannot resume {self.run_dir}: the config's model differs from the checkpoint's ("
                    + "; ".join(diff[:5]) + (" ..." if len(diff) > 5 else "") + ")"
                )
        elif t.out_dir:
            self.run_dir = Path(t.out_dir)
            if (self.run_dir / LAST).exists():
                raise Im2HandsError(
                    f"{self.run_dir} already holds a training run; continue it with --resume {self.run_dir} "
                    "or choose another train.out_dir"
                )
        else:
            self.run_dir = Path(du.broadcast_object(str(_new_run_dir(cfg)) if info.is_main else None, info))
        t.out_dir = str(self.run_dir)

        seed_everything(cfg.seed + info.rank)
        self.raw = builders.build_model(cfg)
        self.transform = builders.build_batch_transform(cfg)
        if ckpt is None:  # a fresh run: initialisation from other trained weights (none on resume)
            for line in self.raw.initialize_from_config(cfg):
                log.info("initialised %s", line)
            if cfg.train.init_weights:
                log.info("initialised the model from %s", load_init_weights(self.raw, cfg.train.init_weights, cfg.model.type))
        self.raw = self.raw.to(self.device)
        if not isinstance(self.raw, HandsModel):
            raise TypeError(f"model.type '{cfg.model.type}' builds a {type(self.raw).__name__}, not a HandsModel")
        for name, value in (("val_metric", self.raw.val_metric), ("val_mode", self.raw.val_mode)):
            if not isinstance(value, str):
                raise TypeError(f"{type(self.raw).__name__}.{name} must be a string")
        if self.raw.val_mode not in ("max", "min"):
            raise ValueError(f"{type(self.raw).__name__}.val_mode must be 'max' or 'min', got {self.raw.val_mode!r}")
        self.optimizer = builders.build_optimizer(cfg, self.raw)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "batch_in_epoch": 0,
            "best": {"metric": self.raw.val_metric, "mode": self.raw.val_mode, "value": None, "step": None},
        }  # fmt: skip
        self.meter = _Meter()
        self.start_step = 0
        self.train_set, val_set = builders.build_datasets(cfg)
        self.skipped_samples = {"train": len(self.train_set.skipped), "val": len(val_set.dataset.skipped)}
        self.train_loader, self.sampler, self.val_loader = builders.build_loaders(
            cfg, self.train_set, val_set, rank=info.rank, world_size=info.world_size,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        self.model = du.wrap_model(self.raw, info, self.device)
        self.use_amp = bool(t.amp) and self.device.type == "cuda"
        self.last_val: tuple[int, dict[str, float]] | None = None
        self.last_save = -1
        if ckpt is not None:
            self._load(ckpt)
        self.logger = None
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir)
            # a resumed run logs the steps after its checkpoint again; a fresh one starts empty
            dropped = truncate_events(self.run_dir / METRICS_FILE, self.state["step"])
            if ckpt is not None:
                log.info("resuming %s at step %d (%d later log events dropped)",
                         self.run_dir, self.state["step"], dropped)  # fmt: skip
            self.logger = MetricsLogger(self.run_dir, tensorboard=t.tensorboard, console=log)

    # ------------------------------------------------------------------ state

    def _load(self, ckpt: dict[str, Any]) -> None:
        cfg = self.cfg
        self.raw.load_state_dict(ckpt["model"])
        if ckpt.get("scheduler_type") != cfg.train.scheduler:
            raise Im2HandsError(
                f"cannot resume: the checkpoint used train.scheduler={ckpt.get('scheduler_type')}, "
                f"the config says {cfg.train.scheduler}"
            )
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise Im2HandsError(f"cannot resume: optimizer state does not fit the model ({exc})") from None
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        old = ckpt["config"].get("train", {})
        for key in ("lr", "betas", "weight_decay"):
            if old.get(key) is not None and old.get(key) != getattr(cfg.train, key):
                log.warning("resume: train.%s=%s is ignored; the optimizer continues with the checkpoint's %s",
                            key, getattr(cfg.train, key), old.get(key))  # fmt: skip
        state = dict(ckpt["state"])
        self.meter.load_state_dict(state.pop("meter", None), self.device)
        self.state.update(state)
        self.start_step = self.state["step"]
        rng = ckpt["rng"]
        if len(rng) == self.info.world_size:
            restore_rng_state(rng[self.info.rank], self.device)
        else:
            log.warning("resume: checkpoint written by %d process(es), now %d; random streams are reseeded",
                        len(rng), self.info.world_size)  # fmt: skip
            seed_everything(self.cfg.seed + self.info.rank + 7919 * self.start_step)

    def _save(self, name: str) -> None:
        """Write ``<run>/<name>`` (all ranks call: RNG states are gathered; rank 0 writes)."""
        rng = du.all_gather_objects(capture_rng_state(self.device), self.info)
        if self.info.is_main:
            state = dict(self.state, meter=self.meter.state_dict())
            save_checkpoint(self.run_dir / name, model=self.raw, optimizer=self.optimizer,
                            scheduler=self.scheduler, cfg=self.cfg, state=state, rng=rng,
                            hand_model=self.train_set.meta.get("hand_model", {}).get("name"))  # fmt: skip
        if name == LAST:
            self.last_save = self.state["step"]

    # ------------------------------------------------------------------ steps

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def _train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        batch = move_to(batch, self.device)
        with self._autocast():
            if self.transform is not None:
                batch = self.transform(batch, training=True)
            outputs = self.model(batch)
            losses = self.raw.compute_loss(batch, outputs)
        if "loss" not in losses:
            raise KeyError(f"{type(self.raw).__name__}.compute_loss must return a 'loss' entry; got {sorted(losses)}")
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        out = {k: v.detach().float() for k, v in losses.items()}
        if self.cfg.train.grad_clip is not None:
            out["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip).detach()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return out

    def _log_train(self, bar: tqdm) -> None:
        t, step = self.cfg.train, self.state["step"]
        means = self.meter.means()
        if du.any_rank(not math.isfinite(means.get("loss", 0.0)), self.info, self.device):
            raise Im2HandsError(f"the loss is not finite at step {step}; lower train.lr or set train.grad_clip")
        if self.logger is not None:
            elapsed = max(time.perf_counter() - self.meter.t_start, 1e-9)
            n = max(self.meter.count, 1)
            grad = {"grad_norm": means.pop("grad_norm")} if "grad_norm" in means else {}
            self.logger.train({
                "step": step, "epoch": self.state["epoch"], "lr": float(self.optimizer.param_groups[0]["lr"]),
                "losses": means, **grad, "ms_per_step": 1000.0 * elapsed / n,
                "data_ms_per_step": 1000.0 * self.meter.data_s / n,
                "samples_per_s": n * t.batch_size * self.info.world_size / elapsed,
                "time_s": time.perf_counter() - self.t0,
            })  # fmt: skip
            bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3g}", refresh=False)
        self.meter.reset()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Average the loss terms and ``model.metrics`` over the validation items (all ranks
        share the items and the sums are gathered); update ``best.pt``; log. Returns the metrics."""
        raw, step = self.raw, self.state["step"]
        raw.eval()
        sums_local: dict[str, float] = {}
        counts_local: dict[str, int] = {}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():
            torch.manual_seed(self.cfg.seed)  # the same validation whenever it runs
            for batch in self.val_loader:
                batch = move_to(batch, self.device)
                if self.transform is not None:
                    batch = self.transform(batch, training=False)
                out = raw(batch)
                values = {k: float(v) for k, v in raw.compute_loss(batch, out).items()}
                values.update({k: float(v) for k, v in raw.metrics(batch, out).items()})
                n = batch_size_of(batch)
                for k, v in values.items():  # NaN (e.g. no valid hand in the batch) counts as missing
                    ok = math.isfinite(v)
                    sums_local[k] = sums_local.get(k, 0.0) + (v * n if ok else 0.0)
                    counts_local[k] = counts_local.get(k, 0) + (n if ok else 0)
        raw.train()
        sums, counts = {}, {}  # every rank merges all ranks' parts in rank order: identical results
        for part_sums, part_counts in du.all_gather_objects((sums_local, counts_local), self.info):
            for k, v in part_sums.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + part_counts[k]
        metrics = {k: (sums[k] / counts[k] if counts[k] else float("nan")) for k in sorted(sums)}
        best = self.state["best"]
        if best["metric"] not in metrics:
            raise KeyError(
                f"{type(raw).__name__}.val_metric '{best['metric']}' is not among the validation values {sorted(metrics)}"
            )
        value = metrics[best["metric"]]
        prev = best["value"]
        if math.isfinite(value) and (prev is None or (value > prev if best["mode"] == "max" else value < prev)):
            best.update(value=value, step=step)
            self._save(BEST)
        if self.logger is not None:
            self.logger.val({"step": step, "epoch": self.state["epoch"], "metrics": metrics, "best": dict(best),
                             "time_s": time.perf_counter() - self.t0})  # fmt: skip
        self.last_val = (step, metrics)
        return metrics

    def _stop_reason(self, stop: StopRequest) -> str | None:
        """"interrupted" (Ctrl-C), "max_minutes", or None to go on; all ranks agree."""
        t = self.cfg.train
        if t.max_minutes is None and not self.info.enabled and not stop.requested:
            return None
        if self.info.enabled and self.state["step"] % t.log_every:  # ranks agree every log_every steps
            return None
        up = t.max_minutes is not None and time.perf_counter() - self.t0 >= 60.0 * t.max_minutes
        if du.any_rank(stop.requested, self.info, self.device):
            return "interrupted"
        return "max_minutes" if du.any_rank(up, self.info, self.device) else None

    # ------------------------------------------------------------------ loop

    def run(self) -> TrainResult:
        cfg, t, st = self.cfg, self.cfg.train, self.state
        stopped_by = "max_steps"
        t_loop = time.perf_counter()
        self.raw.train()
        self.meter.reset_clock()
        bar = tqdm(total=t.max_steps, initial=st["step"], disable=not self.progress, unit="step",
                   dynamic_ncols=True, desc=cfg.name, file=sys.stderr)  # fmt: skip
        redirect = logging_redirect_tqdm() if self.progress else contextlib.nullcontext()
        try:
            with redirect, StopRequest() as stop:
                while st["step"] < t.max_steps and stopped_by == "max_steps":
                    self.sampler.set_epoch(st["epoch"])
                    self.sampler.set_start(st["batch_in_epoch"] * t.batch_size)
                    self.train_set.set_epoch(st["epoch"])
                    t_data = time.perf_counter()
                    for batch in self.train_loader:
                        self.meter.data_s += time.perf_counter() - t_data
                        self.meter.update(self._train_step(batch))
                        st["step"] += 1
                        st["batch_in_epoch"] += 1
                        bar.update(1)
                        step = st["step"]
                        if step % t.log_every == 0:
                            self._log_train(bar)
                        if step % t.val_every == 0:
                            self.validate()
                        if step % t.checkpoint_every == 0:
                            self._save(LAST)
                        if step >= t.max_steps:
                            break
                        reason = self._stop_reason(stop)
                        if reason is not None:
                            stopped_by = reason
                            break
                        t_data = time.perf_counter()
                    else:
                        st["epoch"] += 1
                        st["batch_in_epoch"] = 0
        finally:
            bar.close()
        loop_s = time.perf_counter() - t_loop
        if stopped_by == "max_minutes":
            minutes = (time.perf_counter() - self.t0) / 60
            log.info("stopping after %.1f minutes (train.max_minutes=%s)", minutes, t.max_minutes)
        if stopped_by == "interrupted":  # leave quickly: no final validation
            log.info("interrupted at step %d; continue with --resume %s", st["step"], self.run_dir)
            final = self.last_val[1] if self.last_val and self.last_val[0] == st["step"] else None
        else:
            final = self.last_val[1] if self.last_val and self.last_val[0] == st["step"] else self.validate()
        if self.last_save != st["step"]:
            self._save(LAST)
        steps_run = st["step"] - self.start_step
        summary = {
            "run_dir": str(self.run_dir), "model": cfg.model.type, "stage": self.raw.stage,
            "steps": st["step"], "steps_this_run": steps_run, "resumed_from_step": self.start_step or None,
            "epoch": st["epoch"], "stopped_by": stopped_by, "wall_time_s": time.perf_counter() - self.t0,
            "train_loop_s": loop_s, "ms_per_step": 1000.0 * loop_s / steps_run if steps_run else None,
            "samples_per_s": steps_run * t.batch_size * self.info.world_size / loop_s if steps_run else None,
            "best": dict(st["best"]), "final_val": final, "device": str(self.device),
            "world_size": self.info.world_size, "skipped_samples": self.skipped_samples,
        }  # fmt: skip
        if self.info.is_main:
            write_json(self.run_dir / SUMMARY_FILE, {k: _json_num(v) for k, v in summary.items()})
            log.info("done: %d steps in %.1f s; best %s %s; run folder %s", st["step"], summary["wall_time_s"],
                     st["best"]["metric"], st["best"]["value"], self.run_dir)  # fmt: skip
        if self.logger is not None:
            self.logger.close()
        du.barrier(self.info)
        self.raw.eval()
        return TrainResult(run_dir=self.run_dir, summary=summary, model=self.raw)


def _json_num(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_num(x) for k, x in v.items()}
    return None if isinstance(v, float) and not math.isfinite(v) else v


def load_train_config(
    config: str | os.PathLike | None, overrides: Sequence[str] = (), resume: str | os.PathLike | None = None
) -> Any:
    """The config of a training job: ``config`` plus overrides; without a config file, the
    run folder's own ``config.yaml`` when resuming, else the schema defaults.

    Raises:
        Im2HandsError: a run folder without config.yaml; any config error.
    """
    if config is None and resume is not None:
        config = Path(resume) / "config.yaml"
        if not Path(config).is_file():
            raise Im2HandsError(f"{resume}: no config.yaml (is this a training run folder?)")
    return load_config(config, overrides)


def train(cfg: Any, *, resume: str | os.PathLike | None = None, progress: bool | None = None) -> TrainResult:
    """Train the model described by ``cfg`` (any stage); the library form of ``im2hands train``.

    Args:
        cfg: a resolved :class:`~im2hands.config.schema.ExperimentConfig`. The dataset folder
            is ``data.root`` or the ``IM2HANDS_DATA`` environment variable.
        resume: a run folder to continue from its ``last.pt`` (exactly: same data order, RNG
            and optimizer state). The config's ``model`` section must equal the checkpoint's;
            other keys (e.g. a larger ``train.max_steps``) may change.
        progress: show a tqdm bar (rank 0); None: when stderr is a terminal.

    Under torchrun (``WORLD_SIZE`` > 1 in the environment) this joins the process group and
    trains with DistributedDataParallel; ``train.batch_size`` is per process.

    Returns:
        :class:`TrainResult` (run folder, summary, trained model).
    """
    t0 = time.perf_counter()
    device = builders.build_device(cfg)  # before joining the group: NCCL or gloo
    info = du.init_distributed(device.type == "cuda")
    try:
        trainer = Trainer(cfg, info, resume=resume, progress=progress, t0=t0)
        return trainer.run()
    finally:
        du.cleanup(info)
