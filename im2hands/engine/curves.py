"""Learning curves of training runs: one picture and one markdown table from ``metrics.jsonl``.

The library form of ``im2hands curves RUN [RUN ...] --out FILE.png``. Each run folder holds the
JSON-lines file written by :class:`im2hands.engine.logging.MetricsLogger` (format at the top of
``im2hands/engine/logging.py``); only its ``train`` and ``val`` events are read, other events
are ignored.

The picture has two panels: the training ``loss`` (the total of the loss terms, window means
as logged) and one validation metric, each against the step or against wall time in minutes,
one line per run. The table gives per run: the last step, the wall time, the last training
loss, the best validation value and its step.

Wall time is the ``time_s`` of each event. A resumed run restarts its clock, so when ``time_s``
goes down the new segment is added after the previous one (time lost between the last event
and the crash is not counted).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from im2hands.engine.logging import METRICS_FILE
from im2hands.utils.errors import DataError, Im2HandsError
from im2hands.utils.io import atomic_path

log = logging.getLogger(__name__)

FIGSIZE = (12.0, 4.5)
"""Picture size in inches (width, height); with :data:`DPI` the PNG is 1200 x 450 pixels."""
DPI = 100
"""Pixels per inch of the PNG."""

_MAX_WORDS = ("iou", "fscore", "f_score", "f1", "acc", "pck", "auc", "precision", "recall")
"""Metric names holding one of these are better when larger (used only when no ``val`` event
of any run names the metric as its ``best.metric``, i.e. with ``--metric`` for another value)."""


@dataclass(frozen=True)
class TrainRow:
    """One ``train`` event."""

    step: int
    time_s: float
    """Wall time since the start of the run, seconds (resumed segments added end to end)."""
    loss: float
    """The logged total ``losses["loss"]`` (NaN when missing or not finite)."""


@dataclass(frozen=True)
class ValRow:
    """One ``val`` event."""

    step: int
    time_s: float
    """Wall time since the start of the run, seconds (resumed segments added end to end)."""
    metrics: dict[str, float]
    """Validation values by name (NaN where the file holds null)."""
    best: dict[str, Any]
    """The event's ``best`` record (``metric``, ``mode``, ``value``, ``step``); {} if absent."""


@dataclass(frozen=True)
class RunLog:
    """The events of one run folder."""

    path: Path
    label: str
    train: list[TrainRow]
    val: list[ValRow]

    @property
    def steps(self) -> int:
        """The last step logged (train or val); 0 for an empty file."""
        return max([r.step for r in self.train] + [r.step for r in self.val] + [0])

    @property
    def wall_s(self) -> float:
        """Wall time of the last event, seconds; 0 for an empty file."""
        return max([r.time_s for r in self.train] + [r.time_s for r in self.val] + [0.0])


@dataclass(frozen=True)
class RunSummary:
    """The table row of one run for one validation metric."""

    label: str
    steps: int
    wall_min: float
    last_loss: float
    """The last training ``loss`` (NaN without train events)."""
    best_value: float
    best_step: int


# ----------------------------------------------------------------------------- reading


def _number(value: Any) -> float:
    """A logged number as float; null (a cleaned NaN) and non-numbers become NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _bad(path: Path, lineno: int, what: str) -> DataError:
    return DataError(f"{path}:{lineno}: malformed event ({what})")


def _parse(path: Path, lineno: int, text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, lineno, f"not JSON: {exc.msg}") from None
    if not isinstance(event, dict):
        raise _bad(path, lineno, "not a JSON object")
    if event.get("event") in ("train", "val"):
        step = event.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise _bad(path, lineno, f"'step' must be an integer, got {step!r}")
        if isinstance(event.get("time_s"), bool) or not isinstance(event.get("time_s"), (int, float)):
            raise _bad(path, lineno, f"'time_s' must be a number, got {event.get('time_s')!r}")
        field = "losses" if event["event"] == "train" else "metrics"
        if not isinstance(event.get(field), dict):
            raise _bad(path, lineno, f"'{field}' must be an object")
        if event["event"] == "val" and not isinstance(event.get("best", {}), dict):
            raise _bad(path, lineno, "'best' must be an object")
    return event


def read_events(run: str | Path) -> tuple[list[TrainRow], list[ValRow]]:
    """The ``train`` and ``val`` events of a run folder, in file order.

    A last line without its newline that does not parse is taken as being written by a run in
    progress and skipped (with a warning); any other malformed line is an error.

    Args:
        run: a training run folder holding ``metrics.jsonl``.

    Returns:
        ``(train rows, val rows)``; ``time_s`` of each row is cumulative over resumed segments.

    Raises:
        DataError: a missing folder, a folder without ``metrics.jsonl``, or a malformed line
            (the message names the file and the line number).
    """
    run = Path(run)
    if not run.exists():
        raise DataError(f"{run}: no such run folder")
    if not run.is_dir():
        raise DataError(f"{run}: not a folder (expected a training run folder)")
    path = run / METRICS_FILE
    if not path.is_file():
        raise DataError(f"{run}: no {METRICS_FILE} in this folder (is it a training run folder?)")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")  # a complete file ends with "\n": its last piece is ""
    train: list[TrainRow] = []
    val: list[ValRow] = []
    offset = 0.0  # seconds before the current process's clock started (resumed runs)
    last_raw = -math.inf
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = _parse(path, lineno, line)
        except DataError:
            if lineno == len(lines):  # unterminated last line: still being written
                log.warning("%s:%d: skipping the unfinished last line", path, lineno)
                break
            raise
        kind = event.get("event")
        if kind not in ("train", "val"):
            continue
        raw = float(event["time_s"])
        if raw < last_raw:  # the clock restarted: a resumed run
            offset += last_raw
        last_raw = raw
        time_s = offset + raw
        if kind == "train":
            train.append(TrainRow(step=event["step"], time_s=time_s, loss=_number(event["losses"].get("loss"))))
        else:
            metrics = {str(k): _number(v) for k, v in event["metrics"].items()}
            val.append(ValRow(step=event["step"], time_s=time_s, metrics=metrics, best=dict(event.get("best") or {})))
    return train, val


def load_runs(runs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[RunLog]:
    """Read every run (labels default to the run folders' names).

    Raises:
        Im2HandsError: no runs, a labels count that differs from the runs count, or any error
            of :func:`read_events`.
    """
    if not runs:
        raise Im2HandsError("no run folders given")
    if labels is not None and len(labels) != len(runs):
        raise Im2HandsError(f"--labels: {len(labels)} label(s) for {len(runs)} run(s); give one label per run")
    out = []
    for i, run in enumerate(runs):
        train, val = read_events(run)
        path = Path(run)
        label = labels[i] if labels is not None else (path.resolve().name or str(path))
        out.append(RunLog(path=path, label=label, train=train, val=val))
    return out


def _as_logs(runs: Sequence[str | Path | RunLog], labels: Sequence[str] | None) -> list[RunLog]:
    if runs and all(isinstance(r, RunLog) for r in runs):
        if labels is not None:
            raise Im2HandsError("labels are given with already-loaded runs; pass them to load_runs")
        return list(runs)  # type: ignore[arg-type]
    if any(isinstance(r, RunLog) for r in runs):
        raise TypeError("runs must be all paths or all RunLog objects")
    return load_runs(runs, labels)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the metric


def resolve_metric(logs: Sequence[RunLog], metric: str | None = None) -> tuple[str, str]:
    """The validation metric to show and whether larger or smaller is better.

    Args:
        logs: the runs.
        metric: a metric name; None: the ``best.metric`` of the first run that has ``val``
            events (the model's ``val_metric``, e.g. ``iou``).

    Returns:
        ``(metric, mode)`` with mode ``"max"`` or ``"min"``: the ``best.mode`` logged with that
        metric by any run, else guessed from the name (IoU, F-score... are maxima; errors,
        losses and distances minima).

    Raises:
        Im2HandsError: a run without validation values of the metric (the message names the run
            and lists the metrics it has).
    """
    if metric is None:
        for run in logs:
            named = [r.best.get("metric") for r in run.val if r.best.get("metric")]
            if named:
                metric = str(named[-1])
                break
        else:
            first = logs[0]
            raise Im2HandsError(
                f"{first.path / METRICS_FILE}: no validation events yet, so no metric to plot"
                if not first.val else
                f"{first.path / METRICS_FILE}: the validation events name no best metric; choose one with --metric "
                f"(available: {', '.join(sorted(first.val[-1].metrics))})"
            )
    for run in logs:
        if not any(math.isfinite(r.metrics.get(metric, math.nan)) for r in run.val):
            have = sorted({k for r in run.val for k in r.metrics})
            which = f"available: {', '.join(have)}" if have else "it has no validation events yet"
            raise Im2HandsError(f"{run.path / METRICS_FILE}: no validation values of '{metric}' ({which})")
    modes = [r.best.get("mode") for run in logs for r in run.val if r.best.get("metric") == metric]
    mode = next((m for m in reversed(modes) if m in ("max", "min")), None)
    if mode is None:
        mode = "max" if any(w in metric.lower() for w in _MAX_WORDS) else "min"
    return metric, mode


def _best(run: RunLog, metric: str, mode: str) -> tuple[float, int]:
    """Best finite value of ``metric`` and its step (the earliest on ties, as the trainer keeps it)."""
    best_value, best_step = math.nan, -1
    for r in run.val:
        v = r.metrics.get(metric, math.nan)
        if not math.isfinite(v):
            continue
        if best_step < 0 or (v > best_value if mode == "max" else v < best_value):
            best_value, best_step = v, r.step
    return best_value, best_step


def summarize(runs: Sequence[str | Path | RunLog], metric: str | None = None,
              labels: Sequence[str] | None = None) -> tuple[str, str, list[RunSummary]]:
    """Per-run numbers of the table.

    Returns:
        ``(metric, mode, rows)``, one :class:`RunSummary` per run in the given order.
    """
    logs = _as_logs(runs, labels)
    metric, mode = resolve_metric(logs, metric)
    rows = []
    for run in logs:
        value, step = _best(run, metric, mode)
        rows.append(RunSummary(
            label=run.label, steps=run.steps, wall_min=run.wall_s / 60.0,
            last_loss=run.train[-1].loss if run.train else math.nan, best_value=value, best_step=step,
        ))
    return metric, mode, rows


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def curves_table(runs: Sequence[str | Path | RunLog], metric: str | None = None,
                 labels: Sequence[str] | None = None) -> str:
    """A markdown table: run, steps, wall minutes, last train loss, best metric and its step.

    Example (two runs)::

        | run | steps | wall (min) | last train loss | best iou (max) | at step |
        |---|---:|---:|---:|---:|---:|
        | halo_b | 1000 | 55.2 | 0.02131 | 0.6412 | 800 |
    """
    metric, mode, rows = summarize(runs, metric, labels)
    lines = [
        f"| run | steps | wall (min) | last train loss | best {metric} ({mode}) | at step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = r.label.replace("|", "\\|")
        lines.append(
            f"| {label} | {r.steps} | {r.wall_min:.1f} | {_fmt(r.last_loss, '.4g')} | "
            f"{_fmt(r.best_value, '.4g')} | {r.best_step} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the picture


def plot_curves(runs: Sequence[str | Path | RunLog], out: str | Path, labels: Sequence[str] | None = None,
                metric: str | None = None, by_time: bool = False) -> Path:
    """Draw the learning curves of one or more runs into a PNG (written atomically).

    Left panel: the training ``loss`` (log scale when all values are positive); right panel:
    the validation ``metric`` with a marker on each validation, the best one ringed and its
    value in the legend. One colour per run in both panels.

    Args:
        runs: run folders (or :class:`RunLog` from :func:`load_runs`).
        out: the PNG file (``.png``); its folder is created.
        labels: one legend label per run (default: the run folders' names).
        metric: validation metric (default: the runs' ``best.metric``, e.g. ``iou``).
        by_time: x axis in wall-time minutes instead of steps.

    Returns:
        ``out`` as a Path. Nothing is written when the input is bad.

    Raises:
        Im2HandsError: a bad run folder or line, a labels count mismatch, a metric without
            values in some run, or an ``out`` that is not a ``.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise Im2HandsError(f"--out {out}: the picture is a PNG; give a file name ending in .png")
    logs = _as_logs(runs, labels)
    metric, mode = resolve_metric(logs, metric)

    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)
    xlabel = "wall time (min)" if by_time else "step"
    all_loss = []
    for i, run in enumerate(logs):
        color = f"C{i % 10}"
        if run.train:
            x = [r.time_s / 60.0 if by_time else r.step for r in run.train]
            y = [r.loss for r in run.train]
            all_loss.extend(v for v in y if math.isfinite(v))
            ax_loss.plot(x, y, "-", color=color, lw=1.4, label=run.label)
        rows = [r for r in run.val if metric in r.metrics]
        x = [r.time_s / 60.0 if by_time else r.step for r in rows]
        y = [r.metrics[metric] for r in rows]
        value, step = _best(run, metric, mode)
        ax_val.plot(x, y, "-o", color=color, lw=1.4, ms=4,
                    label=f"{run.label} (best {value:.4g} at step {step})")
        b = next(r for r in rows if r.step == step and r.metrics[metric] == value)
        ax_val.plot([b.time_s / 60.0 if by_time else b.step], [value], "o", ms=11, mfc="none", mec=color, mew=1.6)
    if all_loss and min(all_loss) > 0:
        ax_loss.set_yscale("log")
    if not all_loss:
        ax_loss.text(0.5, 0.5, "no training losses logged", ha="center", va="center", transform=ax_loss.transAxes)
    else:
        ax_loss.legend(fontsize=8)
    ax_loss.set_xlabel(xlabel)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss")
    ax_val.set_xlabel(xlabel)
    ax_val.set_ylabel(f"validation {metric}")
    ax_val.set_title(f"validation {metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax_val.legend(fontsize=8)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves: training loss and validation {metric}", fontsize=11)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
