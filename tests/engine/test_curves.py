"""``im2hands curves``: learning-curve picture and table from synthetic ``metrics.jsonl`` files.

Two runs are written in the trainer's event format; the expected numbers are computed from
the written events by plain loops, independently of ``im2hands.engine.curves``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from im2hands.cli import main
from im2hands.engine import curves
from im2hands.utils.errors import Im2HandsError

IOU_A = [0.30, 0.60, 0.60, 0.50]  # a tie: the best is the earlier step (as the trainer keeps it)
IOU_B = [0.20, 0.40, 0.70, 0.65, 0.68]
MPJPE_A = [40.0, 22.0, 25.0, 21.5]
MPJPE_B = [50.0, 30.0, 19.0, 20.0, 18.5]


def _events(iou: list[float], mpjpe: list[float], val_every: int, log_every: int, sec_per_step: float,
            resume_at: int | None = None) -> list[dict]:
    """Train events every ``log_every`` steps, val events every ``val_every``, as the trainer
    logs them (``best`` tracked with mode max). ``resume_at``: the clock restarts after that step."""
    events, best = [], {"metric": "iou", "mode": "max", "value": None, "step": None}
    last = val_every * len(iou)
    for step in range(log_every, last + 1, log_every):
        clock = step if resume_at is None or step <= resume_at else step - resume_at
        t = clock * sec_per_step
        events.append({"event": "train", "step": step, "epoch": 0, "lr": 1e-4,
                       "losses": {"mse_left": 0.5 / step, "loss": 3.0 / math.sqrt(step)},
                       "ms_per_step": 1000 * sec_per_step, "data_ms_per_step": 1.0, "samples_per_s": 4.0,
                       "time_s": t})
        if step % val_every == 0:
            k = step // val_every - 1
            if best["value"] is None or iou[k] > best["value"]:
                best.update(value=iou[k], step=step)
            events.append({"event": "val", "step": step, "epoch": 0,
                           "metrics": {"iou": iou[k], "mpjpe_mm": mpjpe[k], "loss": 0.1 / step},
                           "best": dict(best), "time_s": t + 0.5})
    return events


def _write(run: Path, events: list[dict], tail: str = "") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + tail)
    return run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = _write(tmp_path / "run_a", _events(IOU_A, MPJPE_A, val_every=50, log_every=10, sec_per_step=0.6))
    b = _write(tmp_path / "run_b", _events(IOU_B, MPJPE_B, val_every=40, log_every=20, sec_per_step=0.3,
                                           resume_at=100))
    return a, b


def _expected(run: Path, metric: str, mode: str) -> dict:
    """The table numbers by plain loops over the file."""
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [e for e in events if e["event"] == "train"]
    val = [e for e in events if e["event"] == "val"]
    wall, offset, prev = 0.0, 0.0, 0.0
    for e in events:  # the clock restarts on resume: segments add up
        if e["time_s"] < prev:
            offset += prev
        prev = e["time_s"]
        wall = offset + e["time_s"]
    values = [e["metrics"][metric] for e in val]
    best = max(values) if mode == "max" else min(values)
    return {"steps": max(e["step"] for e in events), "wall_min": wall / 60, "last_loss": train[-1]["losses"]["loss"],
            "best": best, "best_step": val[values.index(best)]["step"]}


def _table_rows(out: str) -> dict[str, list[str]]:
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return {r[0]: r[1:] for r in rows}


def _check_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (round(curves.FIGSIZE[0] * curves.DPI), round(curves.FIGSIZE[1] * curves.DPI))
        im.verify()
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _count_color(pixels: np.ndarray, hex_color: str) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - rgb).max(-1) <= 10).sum())


def test_table_and_picture(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = tmp_path / "pics" / "curves.png"
    assert main(["curves", str(a), str(b), "--out", str(out)]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert list(rows) == ["run_a", "run_b"]
    for run in (a, b):
        exp = _expected(run, "iou", "max")
        steps, wall, last_loss, best, best_step = rows[run.name]
        assert int(steps) == exp["steps"]
        assert float(wall) == pytest.approx(exp["wall_min"], abs=0.05)
        assert float(last_loss) == pytest.approx(exp["last_loss"], rel=1e-3)
        assert float(best) == pytest.approx(exp["best"], rel=1e-3)
        assert int(best_step) == exp["best_step"]
    assert rows["run_a"][3:] == ["0.6", "100"]  # the tie 0.6 at 100 and 150 goes to the earlier step
    assert rows["run_b"][3:] == ["0.7", "120"]

    pixels = _check_png(out)
    assert _count_color(pixels, "#1f77b4") > 200 and _count_color(pixels, "#ff7f0e") > 200  # C0, C1 lines
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # atomic write left no temp file


def test_library_numbers_and_resumed_clock(two_runs):
    a, b = two_runs
    train, val = curves.read_events(b)
    times = [r.time_s for r in sorted(train + val, key=lambda r: (r.step, r.time_s))]
    assert all(t1 >= t0 for t0, t1 in zip(times, times[1:]))  # monotone across the resume
    assert train[-1].time_s == pytest.approx(200 * 0.3)  # 100 steps before the restart + 100 after
    assert [r.step for r in val] == [40, 80, 120, 160, 200]
    assert [r.metrics["iou"] for r in val] == IOU_B

    metric, mode, rows = curves.summarize([a, b], metric="mpjpe_mm", labels=["A", "B"])
    assert (metric, mode) == ("mpjpe_mm", "min")  # not the logged best metric: guessed from the name
    for run, row in zip((a, b), rows):
        exp = _expected(run, "mpjpe_mm", "min")
        assert (row.steps, row.best_value, row.best_step) == (exp["steps"], exp["best"], exp["best_step"])
        assert row.last_loss == pytest.approx(exp["last_loss"], rel=1e-12)
        assert row.wall_min == pytest.approx(exp["wall_min"], rel=1e-12)
    assert [r.label for r in rows] == ["A", "B"]
    assert curves.resolve_metric(curves.load_runs([a]), None) == ("iou", "max")


def test_mode_guessed_from_the_name_without_best_records(tmp_path):
    events = [{"event": "val", "step": s, "metrics": {"fscore_5mm": f, "chamfer_mm": c}, "time_s": float(s)}
              for s, f, c in ((10, 0.2, 9.0), (20, 0.5, 4.0), (30, 0.4, 6.0))]
    logs = curves.load_runs([_write(tmp_path / "r", events)])
    assert curves.resolve_metric(logs, "fscore_5mm") == ("fscore_5mm", "max")
    assert curves.resolve_metric(logs, "chamfer_mm") == ("chamfer_mm", "min")
    _, _, (row,) = curves.summarize(logs, "fscore_5mm")
    assert (row.best_value, row.best_step, row.steps, math.isnan(row.last_loss)) == (0.5, 20, 30, True)
    with pytest.raises(Im2HandsError, match="name no best metric"):
        curves.resolve_metric(logs, None)


def test_time_axis_metric_and_labels(two_runs, tmp_path, capsys):
    a, b = two_runs
    by_step, by_time = tmp_path / "step.png", tmp_path / "time.png"
    assert main(["curves", str(a), str(b), "--out", str(by_step), "--metric", "mpjpe_mm"]) == 0
    capsys.readouterr()
    assert main(["curves", str(a), str(b), "--out", str(by_time), "--metric", "mpjpe_mm", "--time",
                 "--labels", "first", "second"]) == 0
    out = capsys.readouterr().out
    assert "best mpjpe_mm (min)" in out
    rows = _table_rows(out)
    assert list(rows) == ["first", "second"]
    assert rows["first"][3:] == ["21.5", "200"] and rows["second"][3:] == ["18.5", "200"]
    step_px, time_px = _check_png(by_step), _check_png(by_time)
    assert not np.array_equal(step_px, time_px)  # another x axis, another picture


def test_unfinished_last_line_is_skipped(two_runs):
    a, _ = two_runs
    with open(a / "metrics.jsonl", "a") as fh:
        fh.write('{"event": "train", "step": 21')  # being written by a run in progress
    train, val = curves.read_events(a)
    assert train[-1].step == 200 and len(val) == len(IOU_A)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in err if ln.startswith("im2hands: error:")]
    assert len(err) == 1
    return err[0]


@pytest.mark.parametrize("case", ["missing", "no_metrics", "malformed", "not_object", "bad_step", "no_val",
                                  "unknown_metric", "labels", "not_png"])
def test_bad_input_exit_2_naming_the_thing(two_runs, tmp_path, capsys, case):
    a, b = two_runs
    runs, extra, name = [str(a), str(b)], [], None
    out = tmp_path / "curves.png"
    if case == "missing":
        runs[1] = name = str(tmp_path / "nope")
    elif case == "no_metrics":
        (tmp_path / "empty").mkdir()
        runs[1] = str(tmp_path / "empty")
        name = "metrics.jsonl"
    elif case in ("malformed", "not_object", "bad_step"):
        lines = (b / "metrics.jsonl").read_text().splitlines(keepends=True)
        lines[2] = {"malformed": '{"event": "train", "step": 60,\n', "not_object": "[1, 2]\n",
                    "bad_step": '{"event": "val", "step": "x", "metrics": {}, "time_s": 1.0}\n'}[case]
        (b / "metrics.jsonl").write_text("".join(lines))
        name = f"{b / 'metrics.jsonl'}:3"
    elif case == "no_val":
        _write(tmp_path / "early", _events(IOU_A, MPJPE_A, 50, 10, 0.6)[:3])  # train events only
        runs[1] = str(tmp_path / "early")
        name = str(tmp_path / "early" / "metrics.jsonl")
    elif case == "unknown_metric":
        extra, name = ["--metric", "chamfer_mm"], "chamfer_mm"
    elif case == "labels":
        extra, name = ["--labels", "only_one"], "--labels"
    elif case == "not_png":
        out, name = tmp_path / "curves.jpg", "curves.jpg"
    assert main(["curves", *runs, "--out", str(out), *extra]) == 2
    assert name in _error(capsys)
    assert not any(tmp_path.glob("*.png")) and not any(tmp_path.glob("*.jpg"))
