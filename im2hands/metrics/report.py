"""The tables and plots of ``im2hands eval``: ``per_item.csv`` (:func:`csv_text`) and the
histograms and F-score curve (:func:`write_plots`), from the per-item results and the summary of
:mod:`im2hands.metrics.evaluator`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from im2hands.hands.constants import SIDES
from im2hands.metrics.chamfer import fscore_key
from im2hands.utils.io import atomic_path

__all__ = ["csv_text", "write_plots"]

_ITEM_KEYS = ("mrrpe_mm", "penetration_cm3", "penetration_gt_cm3")


def _hand_keys(thresholds_mm: Sequence[float]) -> list[str]:
    return ["iou", "chamfer_l1_mm", "chamfer_l2_mm2", "normal_consistency",
            *[fscore_key(float(t)) for t in thresholds_mm], "mpjpe_wrist_mm", "mpjpe_mcp_scaled_mm"]


def csv_text(results: list[dict[str, Any]], thresholds_mm: Sequence[float]) -> str:
    hand_cols = [*_hand_keys(thresholds_mm), "accuracy_mm", "completeness_mm", "iou_box",
                 "pred_vertices", "pred_faces", "pred_closed", "align_shift_mm"]
    header = ["name", "status", "error", "seconds", *[f"{s}_{k}" for s in SIDES for k in hand_cols], *_ITEM_KEYS]

    def cell(x) -> str:
        if x is None:
            return ""
        if isinstance(x, (float, np.floating)):
            return f"{x:.6g}" if math.isfinite(x) else ""
        return str(x)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in results:
        row = [r["name"], r["status"], r.get("error", ""), cell(r.get("seconds"))]
        for s in SIDES:
            hand = r.get("hands", {}).get(s, {})
            row.extend(cell(hand.get(k)) for k in hand_cols)
        row.extend(cell(r.get(k)) for k in _ITEM_KEYS)
        w.writerow(row)
    return buf.getvalue()


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_plots(results: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> list[Path]:
    from matplotlib.figure import Figure

    ok = [r for r in results if r["status"] == "ok"]
    colors = {"left": "tab:blue", "right": "tab:orange"}
    paths = []
    for key, label, fname in (("iou", "IoU", "iou_hist.png"), ("chamfer_l1_mm", "Chamfer-L1 (mm)", "chamfer_hist.png")):
        fig = Figure(figsize=(5.5, 3.8))
        ax = fig.add_subplot()
        data = {s: [r["hands"][s][key] for r in ok if s in r["hands"] and math.isfinite(r["hands"][s][key])]
                for s in SIDES}
        vals = data["left"] + data["right"]
        if vals:
            lo, hi = (0.0, 1.0) if key == "iou" else (0.0, max(max(vals) * 1.05, 1e-6))
            bins = np.linspace(lo, hi, 21)
            for s in SIDES:
                if data[s]:
                    mean = float(np.mean(data[s]))
                    label = f"{s} (mean {mean:.3g}, n={len(data[s])})"
                    ax.hist(data[s], bins=bins, alpha=0.6, color=colors[s], label=label)
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no evaluated hands", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("hands")
        ax.set_title(f"{label} per hand")
        fig.tight_layout()
        _save_figure(fig, out / fname)
        paths.append(out / fname)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    curve = summary.get("fscore_curve")
    if curve and curve.get("all") is not None:
        t = curve["thresholds_mm"]
        ax.plot(t, curve["all"], "k-o", ms=3, label="both hands")
        for s in SIDES:
            if curve.get(s) is not None:
                ax.plot(t, curve[s], "--", color=colors[s], label=s)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluated hands", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("mean F-score")
    ax.set_title("F-score over thresholds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, out / "fscore_curve.png")
    paths.append(out / "fscore_curve.png")
    return paths


# ----------------------------------------------------------------------------- folders
