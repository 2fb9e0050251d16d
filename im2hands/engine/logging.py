"""Training metrics: a JSON-lines file (always), TensorBoard (optional), one console line.

Events (one JSON object per line of ``<run>/metrics.jsonl``)::

    {"event": "train", "step": 1200, "epoch": 3, "lr": 1e-4, "losses": {"loss": 0.213, ...},
     "ms_per_step": 85.1, "data_ms_per_step": 2.0, "samples_per_s": 94.0, "time_s": 102.4}
    {"event": "val", "step": 2000, "epoch": 5, "metrics": {"iou": 0.81, "loss": 0.05, ...},
     "best": {"metric": "iou", "mode": "max", "value": 0.81, "step": 2000}, "time_s": 170.2}

TensorBoard scalars are ``train/<loss>``, ``train/lr``, ``train/ms_per_step``,
``train/samples_per_s`` and ``val/<metric>``, written to ``<run>/tb`` when the ``tensorboard``
package is installed (``pip install tensorboard``) and ``train.tensorboard`` is true.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable

from im2hands.utils.io import write_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    """JSON-safe numbers (NaN and infinities become None)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JSONLinesWriter:
    """Appends one JSON object per event to a file, flushed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(_clean(event)) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All parseable events of a metrics file (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def truncate_events(path: str | Path, last_step: int) -> int:
    """Drop events after ``last_step`` (a run resumed from that step logs them again).

    Returns:
        The number of events dropped. The file is rewritten atomically.
    """
    path = Path(path)
    events = read_events(path)
    keep = [e for e in events if int(e.get("step", 0)) <= last_step]
    if path.is_file():
        write_text(path, "".join(json.dumps(e) + "\n" for e in keep))
    return len(events) - len(keep)


class TensorBoardWriter:
    """Scalars to TensorBoard event files; :meth:`create` returns None without tensorboard."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    @classmethod
    def create(cls, log_dir: str | Path) -> "TensorBoardWriter | None":
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed (pip install tensorboard); metrics go to %s only", METRICS_FILE)
            return None
        return cls(SummaryWriter(log_dir=str(log_dir)))

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def _fmt(value: float | None) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.3g}"


def format_train_line(event: dict[str, Any]) -> str:
    """``step 1200 | loss 0.213 (mse_left 0.1, mse_right 0.113) | 85 ms/step | 94 samples/s | lr 0.0001``."""
    losses = dict(event["losses"])
    total = losses.pop("loss", None)
    parts = f" ({', '.join(f'{k} {_fmt(v)}' for k, v in losses.items())})" if losses else ""
    return (
        f"step {event['step']} | loss {_fmt(total)}{parts} | {event['ms_per_step']:.0f} ms/step | "
        f"{event['samples_per_s']:.1f} samples/s | lr {event['lr']:.2g}"
    )


def format_val_line(event: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    """``val step 2000 | iou 0.81, loss 0.05 | best iou 0.81 (step 2000)``."""
    metrics = event["metrics"]
    keys = list(keys) if keys is not None else list(metrics)
    best = event.get("best") or {}
    shown = ", ".join(f"{k} {_fmt(metrics[k])}" for k in keys if k in metrics)
    best_s = f"best {best.get('metric')} {_fmt(best.get('value'))} (step {best.get('step')})"
    return f"val step {event['step']} | {shown} | {best_s}"


class MetricsLogger:
    """Fans each event out to the JSON-lines file, TensorBoard and the console.

    Args:
        run_dir: the run folder (``metrics.jsonl`` and ``tb/`` go there).
        tensorboard: also write TensorBoard events when the package is installed.
        console: a ``logging.Logger`` for the one-line summaries (None: silent).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, console: logging.Logger | None = log) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl = JSONLinesWriter(self.run_dir / METRICS_FILE)
        self.tb = TensorBoardWriter.create(self.run_dir / "tb") if tensorboard else None
        self.console = console

    def train(self, event: dict[str, Any]) -> None:
        event = {"event": "train", **event}
        self.jsonl.write(event)
        if self.tb is not None:
            step = event["step"]
            self.tb.scalars("train", event["losses"], step)
            self.tb.scalars("train", {k: event[k] for k in ("lr", "ms_per_step", "samples_per_s")}, step)
        if self.console is not None:
            self.console.info(format_train_line(event))

    def val(self, event: dict[str, Any]) -> None:
        event = {"event": "val", **event}
        self.jsonl.write(event)
        if self.tb is not None:
            self.tb.scalars("val", event["metrics"], event["step"])
        if self.console is not None:
            self.console.info(format_val_line(event))

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
