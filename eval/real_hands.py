"""Measure the hand model and the keypoint-only network against real MANO-topology hands.

Two actions (see eval/README.md, "Real hands"):

``measure``
    bone-length ratios of a hand-model folder against the calibration hands' regressed joints,
    surface extents (reach past the wrist, palm width and thickness, finger thickness,
    volume), and a fit of the hand model (pose, shape, translation: first to the 21 joints,
    then by surface distance) to every calibration mesh, scored by two-way Chamfer-L1.
``transfer``
    the calibration hands' regressed keypoints through ``im2hands extract --keypoints`` (the
    same python function the CLI calls; default: the shipped keypoint-only model), scored with
    ``im2hands eval``'s metrics against the wrist-closed real meshes.

The calibration folder (default ``../shared/calibration`` relative to the repository root)
holds 20 right-hand meshes from FreiHAND photos, InterWild's demo pair (one left, one right
hand) and the 21 x 778 joint regressor (MANO's joints plus fingertip vertices, InterHand2.6M
order); see its README.md. Nothing from it enters the package.

Examples::

    python eval/real_hands.py measure --out runs/real_measure_v1
    python eval/real_hands.py transfer --out runs/real_transfer
    python eval/real_hands.py transfer --out runs/real_transfer_ann --convention annotation
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CALIBRATION = REPO.parent / "shared" / "calibration"
REGRESSOR_FILE = "J_regressor_mano_ih26m.npy"

log = logging.getLogger("real_hands")


@dataclasses.dataclass
class RealHand:
    """One calibration hand: closed mesh and regressed keypoints (metres, camera frame)."""

    item: str
    side: str
    vertices: np.ndarray  # (779, 3): MANO's 778 plus the wrist-cap centre
    faces: np.ndarray  # (F, 3) closed, outward
    keypoints: np.ndarray  # (21, 3) standard order


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def load_calibration(folder: Path) -> list[RealHand]:
    """Read every calibration hand: close the wrist, regress the 21 keypoints.

    Raises:
        SystemExit: the folder, its regressor or its meshes are missing (one message).
    """
    from im2hands.hands.calibration import signed_volume
    from im2hands.hands.joint_orders import convert
    from im2hands.hands.layer import close_wrist

    folder = Path(folder)
    reg_path = folder / REGRESSOR_FILE
    if not reg_path.is_file():
        raise SystemExit(f"real_hands: calibration folder {folder} not found or incomplete (no {REGRESSOR_FILE}); "
                         "pass --calib DIR (see /work/shared/calibration/README.md)")
    regressor = np.load(reg_path)
    sources = [(f"freihand_{p.name.split('_')[0]}", "right", p)
               for p in sorted((folder / "handmesh_freihand").glob("*_mesh.ply"))]
    sources += [("interwild", side, folder / "interwild" / f"image_{side}.obj") for side in ("left", "right")]
    hands = []
    for item, side, path in sources:
        if not path.is_file():
            raise SystemExit(f"real_hands: missing calibration mesh {path}")
        v, f = _read_mesh(path)
        if regressor.shape != (21, len(v)):
            raise SystemExit(f"real_hands: {path} has {len(v)} vertices; the regressor expects {regressor.shape[1]}")
        keypoints = convert(regressor @ v, "interhand", "standard")
        loop, closed = close_wrist(f, len(v), source=str(path))
        v = np.concatenate([v, v[loop].mean(0, keepdims=True)])
        if signed_volume(v, closed) < 0:
            closed = closed[:, [0, 2, 1]]
        hands.append(RealHand(item, side, v, closed, keypoints))
    if len(hands) < 3:
        raise SystemExit(f"real_hands: {folder} holds only {len(hands)} meshes")
    return hands


# ----------------------------------------------------------------------------------------------
# Output helpers


def _write_json(path: Path, data) -> None:
    from im2hands.utils.io import write_json

    write_json(path, data)


def _write_text(path: Path, text: str) -> None:
    from im2hands.utils.io import write_text

    write_text(path, text)  # temporary name, then rename


def _table(rows: list[list], header: list[str]) -> str:
    def fmt(x):
        return f"{x:.2f}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# transfer


def cmd_transfer(args: argparse.Namespace) -> int:
    from im2hands.extraction.inputs import write_keypoints
    from im2hands.extraction.run import extract_folder
    from im2hands.hands.conventions import to_convention
    from im2hands.metrics.evaluator import evaluate_folder
    from im2hands.extraction.run import write_obj

    hands = load_calibration(args.calib)
    if args.on_fits:
        hands = [_fitted(h) for h in hands]
    out = Path(args.out)
    gt_dir, kp_dir = out / "gt", out / "keypoints"
    items: dict[str, dict[str, RealHand]] = {}
    for h in hands:
        items.setdefault(h.item, {})[h.side] = h
    for item, sides in items.items():
        joints = {}
        for side, h in sides.items():
            write_obj(gt_dir / f"{item}_{side}.obj", h.vertices, h.faces)
            joints[side] = to_convention(h.keypoints, "mano", args.convention)
        write_keypoints(gt_dir / f"{item}_keypoints.json", {s: h.keypoints for s, h in sides.items()})
        write_keypoints(kp_dir / f"{item}.json", joints)
    log.info("wrote %d items (%d hands) to %s and %s", len(items), len(hands), gt_dir, kp_dir)
    if args.fit_hand_model:
        _fit_keypoints(items, out / "pred", args.convention)
    else:
        extract_folder(out / "pred", model=args.model, keypoints=kp_dir, progress=False, overlay=False)
    summary = evaluate_folder(out / "pred", gt_dir, out / "eval", split="all", n_points=args.points, plots=False,
                              progress=False)
    rows = []
    with open(out / "eval" / "per_item.csv") as fh:
        for rec in csv.DictReader(fh):
            for side in ("left", "right"):
                if rec.get(f"{side}_iou"):
                    distal, rest = region_completeness(items[rec["name"]][side], out / "pred" / f"{rec['name']}_{side}.obj")
                    rows.append([rec["name"], side, float(rec[f"{side}_iou"]), float(rec[f"{side}_chamfer_l1_mm"]),
                                 distal, rest])
    table = _table(rows, ["item", "side", "IoU", "Chamfer-L1 (mm)", "distal compl. (mm)", "rest compl. (mm)"])
    mean_distal, mean_rest = (float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in (4, 5))
    what = "the hand model fitted to the keypoints" if args.fit_hand_model else args.model or "shipped keypoint-only model"
    text = (f"# transfer: {what}, keypoints in the "
            f"'{args.convention}' convention\n\n{table}\n\nmean over {len(rows)} hands: IoU "
            f"{summary['iou']:.3f}, Chamfer-L1 {summary['chamfer_l1_mm']:.2f} mm; completeness (real vertices "
            f"to the predicted surface) {mean_distal:.1f} mm on the distal phalanges, {mean_rest:.1f} mm "
            f"elsewhere\n")
    _write_text(out / "table.md", text)
    print(text)
    if args.picture:
        from im2hands.data.files import read_obj

        folders = ([("before", Path(args.compare))] if args.compare else []) + [
            ("after" if args.compare else "prediction", out)]
        pic = []
        for key in args.picture_hands.split(","):
            item, side = key.rsplit("_", 1)
            if side not in items.get(item, {}):
                continue
            others = [(*read_obj(folder / "pred" / f"{item}_{side}.obj"), f"{label}: IoU {_score(folder, item, side):.2f}")
                      for label, folder in folders if (folder / "pred" / f"{item}_{side}.obj").is_file()]
            pic.append((items[item][side], others))
        if pic:
            render_rows(Path(args.picture), pic)
    return 0 if not summary["counts"]["failed"] else 1


@functools.lru_cache(maxsize=1)
def _shipped_hand_models() -> dict:
    import torch

    from im2hands.hands.layer import load_hand_models

    return load_hand_models(None, dtype=torch.float64)


def _fitted(hand: RealHand, keypoints: np.ndarray | None = None) -> RealHand:
    """The shipped hand model (pose, shape, translation; 300 steps) fitted to ``keypoints``
    (default: the hand's own 21) alone, as a hand: its mesh and keypoints, the real hand's pose.
    ``transfer --on-fits`` puts these in place of the real hands; ``--fit-hand-model`` scores
    their meshes as predictions (what the keypoints alone determine with our hand model)."""
    from im2hands.hands import calibration as cal

    model = _shipped_hand_models()[hand.side]
    kp = hand.keypoints if keypoints is None else keypoints
    fit = cal.fit_hand_model(model, hand.vertices[None], hand.faces, kp[None], joint_steps=300, surface_steps=0)
    return RealHand(hand.item, hand.side, fit.vertices[0].numpy(), model.closed_faces.numpy(),
                    fit.keypoints[0].numpy())


def _fit_keypoints(items: dict[str, dict[str, RealHand]], pred_dir: Path, convention: str) -> None:
    """``transfer --fit-hand-model``: each hand's :func:`_fitted` mesh written as its prediction."""
    from im2hands.extraction.run import write_obj
    from im2hands.hands.conventions import to_convention

    for item, sides in items.items():
        for side, h in sides.items():
            fit = _fitted(h, to_convention(h.keypoints, "mano", convention))
            write_obj(pred_dir / f"{item}_{side}.obj", fit.vertices, fit.faces)


def _score(folder: Path, item: str, side: str) -> float:
    """The IoU of one hand in an earlier ``transfer`` folder's ``eval/per_item.csv``."""
    with open(folder / "eval" / "per_item.csv") as fh:
        for rec in csv.DictReader(fh):
            if rec["name"] == item and rec.get(f"{side}_iou"):
                return float(rec[f"{side}_iou"])
    return float("nan")


DISTAL_KEYPOINTS = (3, 4, 7, 8, 11, 12, 15, 16, 19, 20)
"""Standard indices of the DIP joints and tips: a real vertex nearest one of them is on a distal
phalanx."""


def region_completeness(hand: RealHand, pred_obj: Path, n: int = 50_000) -> tuple[float, float]:
    """Mean distance (mm) from the real hand's vertices to the predicted surface, for the
    vertices on the distal phalanges (nearest keypoint a DIP joint or a tip) and for the rest.

    The predicted surface is ``n`` area-weighted samples of ``pred_obj``; NaN when it is missing.
    """
    import torch
    from scipy.spatial import cKDTree

    from im2hands.data.files import read_obj
    from im2hands.data.sampling import sample_surface

    if not pred_obj.is_file():
        return float("nan"), float("nan")
    v, f = read_obj(pred_obj)
    pts, _ = sample_surface(torch.as_tensor(np.asarray(v, dtype=np.float64)), torch.as_tensor(np.asarray(f)), n,
                            generator=torch.Generator().manual_seed(0))
    dist = cKDTree(pts.numpy()).query(hand.vertices)[0] * 1000.0  # (V,) mm
    nearest = np.argmin(np.linalg.norm(hand.vertices[:, None] - hand.keypoints[None], axis=-1), axis=1)  # (V,)
    distal = np.isin(nearest, DISTAL_KEYPOINTS)
    return float(dist[distal].mean()), float(dist[~distal].mean())


# ----------------------------------------------------------------------------------------------
# measure


def cmd_measure(args: argparse.Namespace) -> int:
    import torch

    from im2hands.hands import calibration as cal
    from im2hands.hands.layer import load_hand_models
    from im2hands.metrics.chamfer import mesh_surface_metrics

    torch.manual_seed(0)
    hands = load_calibration(args.calib)
    models = load_hand_models(args.mano_dir, dtype=torch.float64, source="--mano-dir")
    name = models["right"].model_name
    out = Path(args.out)
    report: dict = {"model": name, "mano_dir": str(args.mano_dir or "shipped")}

    # 1. bone ratios
    real = np.stack([cal.bone_ratios(h.keypoints) for h in hands])  # (22, 20)
    mean = real.mean(0)
    zero = torch.zeros(1, 48, dtype=torch.float64)
    rest = models["right"](zero, torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    mine = cal.bone_ratios(rest.keypoints[0].numpy())
    diff = cal.ratio_difference(mine, mean)
    spread = cal.ratio_difference(real, mean)
    bones = [i for i in range(20) if cal.BONES[i] != cal.REFERENCE_BONE]
    report["bone_ratios"] = {
        "names": list(cal.BONE_NAMES), "calibration_mean": mean.tolist(), "model": mine.tolist(),
        "relative_difference": diff.tolist(),
        "mean_relative_difference": float(diff[bones].mean()),
        "calibration_hand_mean_difference": spread[:, bones].mean(1).tolist(),
    }
    rows = [[cal.BONE_NAMES[i], float(mean[i]), float(real[:, i].min()), float(real[:, i].max()), float(mine[i]),
             100 * float(diff[i])] for i in bones]
    text = [f"# {name} against {len(hands)} real hands\n", "## Bone lengths / (wrist -> middle MCP)\n",
            _table(rows, ["bone", "real mean", "real min", "real max", "model", "diff %"]),
            f"\nmean difference {100 * diff[bones].mean():.1f} % (each real hand against the real mean: "
            f"{100 * spread[:, bones].mean(1).min():.1f}-{100 * spread[:, bones].mean(1).max():.1f} %)\n"]

    # 2. surface extents (real hands; the model at rest, mean shape)
    keys = ["past_wrist_mm", "palm_width_mm", "palm_thickness_mm", "proximal_width_mm", "distal_width_mm",
            "volume_cm3"]
    real_ext = [cal.surface_extents(h.vertices, h.faces, h.keypoints, h.side == "left") for h in hands]
    faces = models["right"].closed_faces.numpy()
    model_ext = cal.surface_extents(rest.vertices[0].numpy(), faces, rest.keypoints[0].numpy())

    # 3. fits
    fits: dict[str, dict] = {}
    for side in ("right", "left"):
        idx = [i for i, h in enumerate(hands) if h.side == side]
        if not idx:
            continue
        fit = cal.fit_hand_model(models[side], np.stack([hands[i].vertices for i in idx]), hands[idx[0]].faces,
                                 np.stack([hands[i].keypoints for i in idx]), joint_steps=args.joint_steps,
                                 surface_steps=args.surface_steps)
        mf = models[side].closed_faces.numpy()
        for j, i in enumerate(idx):
            h = hands[i]
            v = fit.vertices[j].numpy()
            m = mesh_surface_metrics(v, mf, h.vertices, h.faces, n_points=args.points, seed=0)
            fits[f"{h.item}_{h.side}"] = {
                "chamfer_l1_mm": m["chamfer_l1_mm"], "accuracy_mm": m["accuracy_mm"],
                "completeness_mm": m["completeness_mm"], "keypoint_error_mm": float(fit.keypoint_error_mm[j]),
                "betas": fit.shape[j].tolist(), "extents": cal.surface_extents(v, mf, fit.keypoints[j].numpy(),
                                                                               side == "left"),
                "_vertices": v, "_faces": mf, "_hand": h,
            }
    rows = []
    for h, ext in zip(hands, real_ext):
        rows.append([f"{h.item} ({h.side})", *[float(ext[k]) for k in keys]])
    rows.append(["real min", *[float(min(e[k] for e in real_ext)) for k in keys]])
    rows.append(["real max", *[float(max(e[k] for e in real_ext)) for k in keys]])
    rows.append([f"{name} rest, mean shape", *[float(model_ext[k]) for k in keys]])
    fit_ext = [f["extents"] for f in fits.values()]
    rows.append([f"{name} fits, min", *[float(min(e[k] for e in fit_ext)) for k in keys]])
    rows.append([f"{name} fits, max", *[float(max(e[k] for e in fit_ext)) for k in keys]])
    text += ["## Surface\n", _table(rows, ["hand", "past wrist mm", "palm width mm", "palm thickness mm",
                                            "proximal finger width mm", "distal finger width mm", "volume cm3"]), ""]
    report["surface"] = {"real": {f"{h.item}_{h.side}": e for h, e in zip(hands, real_ext)}, "model_rest": model_ext}

    rows = [[k, f["chamfer_l1_mm"], f["accuracy_mm"], f["completeness_mm"], f["keypoint_error_mm"],
             " ".join(f"{b:+.1f}" for b in f["betas"])] for k, f in fits.items()]
    cds = [f["chamfer_l1_mm"] for f in fits.values()]
    text += ["## Fit (pose + shape + translation; joints, then surface)\n",
             _table(rows, ["hand", "Chamfer-L1 mm", "model->real mm", "real->model mm", "keypoints mm", "betas"]),
             f"\nChamfer-L1: mean {np.mean(cds):.2f} mm, max {np.max(cds):.2f} mm, hands <= 2.0 mm: "
             f"{sum(c <= 2.0 for c in cds)} of {len(cds)}\n"]
    report["fit"] = {k: {kk: vv for kk, vv in f.items() if not kk.startswith("_")} for k, f in fits.items()}
    report["fit_chamfer_l1_mm"] = {"mean": float(np.mean(cds)), "max": float(np.max(cds))}
    report["settings"] = {"joint_steps": args.joint_steps, "surface_steps": args.surface_steps, "points": args.points}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "measure.json", report)
    _write_text(out / "measure.md", "\n".join(text))
    print("\n".join(text))
    if args.picture:
        render_fits(Path(args.picture), [fits[k] for k in args.picture_hands.split(",") if k in fits], name)
    return 0


def render_fits(path: Path, fits: list[dict], model_name: str) -> None:
    """Picture: each real hand (wrist closed) beside the model's fit."""
    render_rows(path, [(f["_hand"], [(f["_vertices"], f["_faces"], f"{model_name} fit, CD {f['chamfer_l1_mm']:.2f} mm")])
                       for f in fits])


def render_rows(path: Path, rows: list[tuple[RealHand, list[tuple[np.ndarray, np.ndarray, str]]]]) -> None:
    """Picture: one row per real hand (wrist closed), then its other meshes ``(vertices, faces,
    title)``, all in the hand's palm frame turned to the model frame (fingers +x, back up)."""
    import torch

    from im2hands.geometry.frames import apply_transform, palm_frame
    from im2hands.hands.render_docs import _figure

    flip = np.array([-1.0, 1.0, -1.0])  # palm frame (fingers -x, thumb +z) -> model frame
    panels = []
    for h, others in rows:
        T = palm_frame(torch.as_tensor(h.keypoints)[None], h.side == "left")
        meshes = [(h.vertices, h.faces, f"real: {h.item} ({h.side})"), *others]
        pts = [apply_transform(T, torch.as_tensor(v)[None])[0].numpy() * flip for v, _, _ in meshes]
        lo, hi = np.min([p.min(0) for p in pts], axis=0), np.max([p.max(0) for p in pts], axis=0)
        for p, (_, faces, title) in zip(pts, meshes):
            if h.side == "left":  # mirrored into a right hand: keep the faces outward
                faces = faces[:, [0, 2, 1]]
            panels.append(dict(vertices=p, faces=faces, view=(35.0, -70.0), title=title, limits=(lo, hi)))
    _figure(panels, path, cols=len(rows[0][1]) + 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    for name, func in (("measure", cmd_measure), ("transfer", cmd_transfer)):
        s = sub.add_parser(name)
        s.add_argument("--calib", type=Path, default=DEFAULT_CALIBRATION,
                       help=f"calibration folder (default {DEFAULT_CALIBRATION})")
        s.add_argument("--out", required=True, type=Path, help="output folder")
        s.add_argument("--points", type=int, default=100_000, help="surface samples / IoU points per mesh (100k)")
        s.set_defaults(func=func)
        s.add_argument("--picture", default=None, help="write a PNG of real hands beside their fits / predictions")
        s.add_argument("--picture-hands", default="freihand_3060_right,interwild_left",
                       help="comma-separated hands for --picture (ITEM_SIDE)")
        if name == "measure":
            s.add_argument("--mano-dir", default=None, help="hand-model folder to measure (default: the shipped one)")
            s.add_argument("--joint-steps", type=int, default=300)
            s.add_argument("--surface-steps", type=int, default=300)
        else:
            s.add_argument("--model", default=None,
                           help="run folder or checkpoint (default: the shipped keypoint-only model)")
            s.add_argument("--compare", default=None,
                           help="an earlier transfer --out folder: its predictions join --picture as 'before'")
            s.add_argument("--on-fits", action="store_true",
                           help="replace every real hand by the hand model fitted to its keypoints (mesh and "
                           "keypoints): the network on its own hand model in the real hands' poses")
            s.add_argument("--fit-hand-model", action="store_true",
                           help="instead of a network, fit the hand model to the keypoints (pose, shape, translation) "
                           "and score its meshes: what the keypoints alone determine")
            s.add_argument("--convention", default="mano", choices=("mano", "annotation"),
                           help="write the keypoints in this convention (annotation: PIP/DIP moved distally)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
