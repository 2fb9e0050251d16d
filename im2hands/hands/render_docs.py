"""Pictures and measurements of the open hand model, for ``docs/hand_model.md``.

``render_docs(out_dir, model_dir)`` writes ``hand_model_{rest,poses,shapes,rig}.png``
(matplotlib, shaded triangles, several views); ``measure_hand_model(model)`` and
``summarize(model_dir)`` return the numbers quoted in the docs (the tests check them);
``named_pose`` gives a few test poses. Poses go through smplx's MANO layer, exactly as the
toolkit uses the model.

Run: ``python -c "from im2hands.hands.render_docs import render_docs;
render_docs('docs/img', 'im2hands/assets/handmodel')"``.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import trimesh

from im2hands.hands import builder
from im2hands.geometry.frames import CM3_PER_M3, m_to_mm
from im2hands.hands.constants import MANO_KINTREE_PARENTS
from im2hands.utils.io import atomic_path

logger = logging.getLogger(__name__)

VIEWS: dict[str, tuple[float, float]] = {
    "dorsal": (90.0, -90.0), "volar": (-90.0, -90.0), "radial": (0.0, -90.0),
    "oblique": (35.0, -60.0),
}
"""Camera (elevation, azimuth) in degrees for matplotlib, in the model frame (y up)."""


POSE_NAMES: tuple[str, ...] = ("rest", "fist", "point", "pinch", "oppose", "flex90", "spread")
"""Poses known to :func:`named_pose`."""

# Per pose: finger flexion (MCP, PIP, DIP) in radians for the chains index, middle, pinky, ring
# (about each joint's flexion axis), then the thumb: CMC axis-angle (rest frame, right hand)
# and MCP / IP flexion. The thumb values were found by fitting the thumb tip to a target with
# smplx (oppose: 8 mm off the palm over the little finger's MCP; pinch: the index tip).
_POSES: dict[str, tuple] = {
    "rest": (((0, 0, 0),) * 4, (0.0, 0.0, 0.0), (0.0, 0.0)),
    "fist": (((1.45, 1.65, 1.0),) * 4, (0.054, 0.246, -0.053), (0.788, 1.251)),
    "point": (((0.0, 0.0, 0.0),) + ((1.45, 1.65, 1.0),) * 3, (0.054, 0.246, -0.053),
              (0.788, 1.251)),
    "pinch": (((0.6, 0.7, 0.4),) * 4, (-0.307, -0.320, -0.291), (-0.02, -0.133)),
    "oppose": (((0.0, 0.0, 0.0),) * 4, (-0.532, -0.536, 0.253), (0.887, 1.101)),
    "flex90": (((np.pi / 2,) * 3,) * 4, (0.0, 0.0, 0.0), (0.0, 0.0)),
    "spread": (((0.0, 0.0, 0.0),) * 4, (0.0, 0.35, 0.0), (0.0, 0.0)),
}
_SPREAD = (0.30, 0.0, -0.40, -0.20)  # abduction about +y per chain (index, middle, pinky, ring)


def named_pose(name: str, side: str = "right") -> np.ndarray:
    """A few hand poses as 45 axis-angle values (15 joints, MANO order, rest-pose frame).

    Args:
        name: one of :data:`POSE_NAMES`: ``"flex90"`` bends every finger joint by 90 degrees
            (thumb straight); ``"oppose"`` brings the thumb tip across the palm to the little
            finger's base; ``"pinch"`` thumb tip to index tip.
        side: ``"right"`` or ``"left"``; the left pose is the mirror image (an axis-angle
            vector (x, y, z) becomes (x, -y, -z)).

    Returns:
        ``(45,)`` float64 radians.
    """
    from im2hands.hands.anatomy import rest_skeleton

    if name not in _POSES:
        raise ValueError(f"unknown pose {name!r}; expected one of {', '.join(POSE_NAMES)}")
    fingers, cmc, thumb = _POSES[name]
    axes = builder.flexion_axes(rest_skeleton())
    pose = np.zeros((15, 3))
    for c in range(4):
        for s in range(3):
            pose[3 * c + s] = fingers[c][s] * axes[1 + 3 * c + s]
        if name == "spread":
            pose[3 * c] = np.array([0.0, _SPREAD[c], 0.0])
    pose[12] = cmc
    pose[13] = thumb[0] * axes[14]
    pose[14] = thumb[1] * axes[15]
    if side == "left":
        pose *= np.array([1.0, -1.0, -1.0])
    return pose.ravel()


def pose_model(model_dir: str | os.PathLike, side: str, hand_pose: np.ndarray,
               betas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pose the hand model through smplx MANO.

    Args:
        model_dir: folder holding ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``.
        side: ``"right"`` or ``"left"``.
        hand_pose: ``(B, 45)`` or ``(45,)`` axis-angle (MANO order, rest frame).
        betas: ``(B, 10)`` or ``(10,)``; zeros if None.

    Returns:
        ``vertices (B, V, 3)`` and ``joints (B, 16, 3)`` in metres, float64, no global rotation.
    """
    import smplx

    hand_pose = np.atleast_2d(np.asarray(hand_pose, dtype=np.float64))
    b = len(hand_pose)
    betas = np.zeros((b, 10)) if betas is None else np.array(np.broadcast_to(np.atleast_2d(betas), (b, 10)))
    layer = smplx.MANO(str(model_dir), is_rhand=side == "right", use_pca=False,
                       flat_hand_mean=False, batch_size=b)
    with torch.no_grad():
        out = layer(global_orient=torch.zeros(b, 3), transl=torch.zeros(b, 3),
                    hand_pose=torch.as_tensor(hand_pose, dtype=torch.float32),
                    betas=torch.as_tensor(betas, dtype=torch.float32))
    return out.vertices.double().numpy(), out.joints.double().numpy()


def _to_plot(points: np.ndarray) -> np.ndarray:
    """Model (x, y, z) -> matplotlib (x, -z, y): model y (dorsal) is drawn up; det = +1."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], -1)


def draw_mesh(ax: Any, vertices: np.ndarray, faces: np.ndarray, *, view: tuple[float, float],
              color: Sequence[float] = (0.93, 0.76, 0.64), face_colors: np.ndarray | None = None,
              title: str = "", zoom: float = 1.1, alpha: float = 1.0,
              joints: np.ndarray | None = None,
              limits: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Draw a shaded triangle mesh on a matplotlib 3-D axis (Lambert + ambient, head light).

    Args:
        ax: a ``projection="3d"`` axis.
        vertices: ``(V, 3)`` model-frame vertices (m); faces ``(F, 3)`` outward-wound.
        view: (elevation, azimuth) in degrees, see :data:`VIEWS`.
        color: RGB of the skin; face_colors ``(F, 3)`` overrides it per face.
        title: panel title; zoom: matplotlib box zoom; alpha: face opacity.
        joints: optional ``(16, 3)`` joints drawn as a skeleton (MANO parents) on top.
        limits: optional model-frame (lo, hi) corners of the box to show (a common scale for
            several panels); default: the mesh's own bounds.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    elev, azim = np.deg2rad(view[0]), np.deg2rad(view[1])
    pts = _to_plot(vertices)
    eye = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    light = eye + np.array([0.0, 0.0, 0.6])
    light /= np.linalg.norm(light)
    tri = pts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0.0, 1.0)
    base = np.broadcast_to(np.asarray(color, dtype=np.float64)[:3], (len(faces), 3)) \
        if face_colors is None else face_colors[:, :3]
    rgb = np.clip(base * shade[:, None], 0.0, 1.0)
    rgba = np.c_[rgb, np.full(len(rgb), alpha)]
    coll = Poly3DCollection(tri, facecolors=rgba, edgecolors=rgba, linewidths=0.15)
    ax.add_collection3d(coll)
    if joints is not None:
        jp = _to_plot(joints)
        for k, parent in enumerate(MANO_KINTREE_PARENTS):
            if parent >= 0:
                ax.plot(*np.stack([jp[parent], jp[k]]).T, color="k", lw=1.2, zorder=10)
        ax.scatter(*jp.T, color="crimson", s=10, depthshade=False, zorder=11)
    used = pts[np.unique(faces)] if limits is None else _to_plot(np.stack(limits))
    lo, hi = used.min(0), used.max(0)
    center, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 0.2 * (hi - lo).max())
    ax.set_xlim(center[0] - half[0], center[0] + half[0])
    ax.set_ylim(center[1] - half[1], center[1] + half[1])
    ax.set_zlim(center[2] - half[2], center[2] + half[2])
    ax.set_box_aspect(tuple(half), zoom=zoom)
    ax.view_init(elev=view[0], azim=view[1])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def _figure(panels: list[dict[str, Any]], path: Path, cols: int, panel_inches: float = 3.2,
            title: str = "") -> None:
    """Render panels (keyword dicts for :func:`draw_mesh`) in a grid and save a PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = (len(panels) + cols - 1) // cols
    height = panel_inches * rows * 0.8 + 0.5
    fig = Figure(figsize=(panel_inches * cols, height), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        draw_mesh(ax, **panel)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1.0 - (0.7 if title else 0.3) / height,
                        wspace=0, hspace=0.12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    logger.info("wrote %s", path)


def _load(model_dir: Path, side: str) -> dict[str, Any]:
    with open(model_dir / f"MANO_{side.upper()}.pkl", "rb") as fh:
        return pickle.load(fh)


def render_docs(out_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None
                ) -> list[Path]:
    """Write the documentation pictures ``hand_model_{rest,poses,shapes,rig}.png``.

    Args:
        out_dir: destination folder (e.g. ``docs/img``).
        model_dir: folder with ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``; None builds the model
            into a temporary folder first.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    if model_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            builder.write_hand_model(tmp)
            return render_docs(out_dir, tmp)
    model_dir = Path(model_dir)
    right, left = _load(model_dir, "right"), _load(model_dir, "left")
    paths = [out_dir / f"hand_model_{n}.png" for n in ("rest", "poses", "shapes", "rig")]

    panels = []
    for side, m in (("right", right), ("left", left)):
        mirror = 1.0 if side == "right" else -1.0
        for name in ("dorsal", "volar", "radial", "oblique"):
            elev, azim = VIEWS[name]
            panels.append(dict(vertices=m["v_template"], faces=m["f"], title=f"{side}, {name}",
                               view=(elev, azim if mirror > 0 else 180.0 - azim)))
    _figure(panels, paths[0], cols=4, panel_inches=3.4,
            title="Rest pose (flat hand), both sides; fingers +x (right) / -x (left), palm -y")

    panels = []
    shown = ("fist", "point", "pinch", "oppose", "flex90", "spread")
    for side, m in (("right", right), ("left", left)):
        verts, _ = pose_model(model_dir, side, np.stack([named_pose(n, side) for n in shown]))
        for v, name in zip(verts, shown):
            view = (25.0, -65.0) if side == "right" else (25.0, -115.0)
            if name in ("oppose", "pinch"):
                view = (-35.0, -80.0) if side == "right" else (-35.0, -100.0)
            panels.append(dict(vertices=v, faces=m["f"], view=view, title=f"{side}, {name}"))
    _figure(panels, paths[1], cols=4, panel_inches=3.4, title="Poses through smplx MANO")

    names = list(right["shape_names"])
    betas = np.zeros((2 * len(names), 10))
    for i in range(len(names)):
        betas[2 * i: 2 * i + 2, i] = (-3.0, 3.0)
    verts, _ = pose_model(model_dir, "right", np.zeros((len(betas), 45)), betas)
    box = (verts.min((0, 1)), verts.max((0, 1)))
    panels = [dict(vertices=v, faces=right["f"], view=VIEWS["dorsal"], zoom=1.0, limits=box,
                   title=f"{names[i // 2]} {'-3' if i % 2 == 0 else '+3'}")
              for i, v in enumerate(verts)]
    _figure(panels, paths[2], cols=4, panel_inches=2.6,
            title="Shape coefficients at -3 and +3 (dorsal view, one common scale)")

    colors = np.array([[0.75, 0.75, 0.75]] + [
        [0.85, 0.3, 0.3], [0.95, 0.6, 0.2], [0.95, 0.9, 0.3],
        [0.3, 0.6, 0.9], [0.4, 0.8, 0.9], [0.6, 0.9, 1.0],
        [0.55, 0.35, 0.8], [0.75, 0.55, 0.9], [0.9, 0.75, 1.0],
        [0.3, 0.7, 0.35], [0.5, 0.85, 0.5], [0.75, 0.95, 0.7],
        [0.6, 0.4, 0.25], [0.8, 0.6, 0.4], [0.95, 0.8, 0.6]])
    face_colors = (np.asarray(right["weights"], np.float64) @ colors)[right["f"]].mean(1)
    joints = np.asarray(right["J_regressor"]) @ right["v_template"]
    panels = [dict(vertices=right["v_template"], faces=right["f"], view=VIEWS[n],
                   face_colors=face_colors, title=f"skinning weights, {n}")
              for n in ("dorsal", "volar")]
    panels += [dict(vertices=right["v_template"], faces=right["f"], view=VIEWS[n], alpha=0.25,
                    joints=joints, title=f"joints (J_regressor), {n}") for n in ("dorsal", "radial")]
    _figure(panels, paths[3], cols=2, panel_inches=4.5,
            title="Rig: blended bone colours (grey = palm) and the regressed skeleton")
    return paths


def render_versions(path: str | os.PathLike, model_dirs: Sequence[str | os.PathLike]) -> Path:
    """Picture of several hand-model versions at rest (right hand, dorsal and radial views, one
    common scale) with their regressed skeletons, one row per version; written atomically.

    Args:
        path: the PNG to write (e.g. ``docs/img/hand_model_versions.png``).
        model_dirs: folders with ``MANO_RIGHT.pkl`` (e.g. the shipped one and a version-2 build).

    Returns:
        ``path``.
    """
    models = [_load(Path(d), "right") for d in model_dirs]
    allv = np.concatenate([m["v_template"] for m in models])
    box = (allv.min(0), allv.max(0))
    panels = []
    for m in models:
        joints = np.asarray(m["J_regressor"]) @ m["v_template"]
        for view in ("dorsal", "radial"):
            panels.append(dict(vertices=m["v_template"], faces=m["f"], view=VIEWS[view], alpha=0.3,
                               joints=joints, limits=box, zoom=1.0, title=f"{m['model_name']}, {view}"))
    _figure(panels, Path(path), cols=2, panel_inches=4.2,
            title="Versions at rest, mean shape: surface and regressed joints (one scale)")
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Measurements


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of mesh edges that pierce a triangle they do not belong to (0 = no
    self-intersection), via ray casts along every edge (embree when installed)."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    edges = mesh.edges_unique
    start, end = vertices[edges[:, 0]], vertices[edges[:, 1]]
    length = np.linalg.norm(end - start, axis=1)
    direction = (end - start) / length[:, None]
    tri, ray, loc = mesh.ray.intersects_id(start, direction, multiple_hits=True,
                                          return_locations=True)
    dist = np.einsum("ij,ij->i", loc - start[ray], direction[ray])
    touching = (faces[tri] == edges[ray, 0:1]).any(1) | (faces[tri] == edges[ray, 1:2]).any(1)
    hits = (~touching) & (dist > 1e-9) & (dist < length[ray] - 1e-9)
    return int(len(np.unique(ray[hits])))


def _width_through(mesh: trimesh.Trimesh, inside: np.ndarray, direction: np.ndarray) -> float:
    """Distance between the first surface hits of rays from an inside point along +-direction
    (median over 9 parallel ray pairs within 0.3 mm, robust to rays grazing an edge)."""
    side = np.cross(direction, [0.3, 0.5, 0.7])
    side /= np.linalg.norm(side)
    up = np.cross(direction, side)
    offsets = [(i * side + j * up) * 3e-4 for i in (-1, 0, 1) for j in (-1, 0, 1)]
    widths = []
    for off in offsets:
        origin = inside + off
        total = 0.0
        for sign in (1.0, -1.0):
            loc, _, _ = mesh.ray.intersects_location(origin[None], sign * direction[None])
            dist = (loc - origin) @ (sign * direction)
            total += float(dist[dist > 0].min()) if (dist > 0).any() else np.inf
        widths.append(total)
    return float(np.median(widths))


def measure_hand_model(model: dict[str, Any]) -> dict[str, Any]:
    """Measure a RIGHT open-hand model at rest (mean shape). Lengths in mm, volume in cm^3.

    Palm width: extent along z of the non-thumb vertices (dominant skinning weight not on
    joints 13-15) within 2.5 mm (in x) of the mean x of the four MCP joints, i.e. across the
    knuckles from the index side to the little-finger side. Palm thickness: along y through
    (45, 0, 0) mm. Finger widths: along the in-palm lateral direction (bone x y) through the
    bone 65 % along the proximal phalanx (past the web) and 40 % along the distal one (DIP
    joint). Widths and thickness are distances between the surface hits of two opposite rays.
    """
    v, f = np.asarray(model["v_template"], np.float64), np.asarray(model["f"], np.int64)
    joints = np.asarray(model["J_regressor"]) @ v
    tips = np.asarray(model["fingertip_vertex_ids"])
    mesh = trimesh.Trimesh(v, f, process=False)
    thumb = np.asarray(model["weights"]).argmax(1) >= 13
    mcp_x = joints[[1, 4, 7, 10], 0].mean()
    band = (~thumb) & (np.abs(v[:, 0] - mcp_x) < 0.0025)
    out: dict[str, Any] = {
        "vertices": len(v), "faces": len(f), "watertight": bool(mesh.is_watertight),
        "winding_consistent": bool(mesh.is_winding_consistent),
        "euler_number": int(mesh.euler_number), "volume_cm3": mesh.volume * CM3_PER_M3,
        "wrist_to_middle_tip_mm": m_to_mm(float(np.linalg.norm(v[tips[2]] - joints[0]))),
        "palm_width_mm": m_to_mm(float(np.ptp(v[band, 2]))),
        "palm_thickness_mm": m_to_mm(_width_through(mesh, np.array([0.045, 0.0, 0.0]),
                                                    np.array([0.0, 1.0, 0.0]))),
        "self_intersections": self_intersections(v, f),
    }
    names = ("index", "middle", "pinky", "ring", "thumb")
    tip_of_chain = {4: tips[0], 0: tips[1], 1: tips[2], 3: tips[3], 2: tips[4]}
    for c, name in enumerate(names):
        j = joints[1 + 3 * c: 4 + 3 * c]
        tip = v[tip_of_chain[c]]
        lengths = [np.linalg.norm(j[1] - j[0]), np.linalg.norm(j[2] - j[1]),
                   np.linalg.norm(tip - j[2])]
        out[f"{name}_lengths_mm"] = [round(m_to_mm(float(x)), 1) for x in lengths]
        widths = []
        first = (j[1], j[2]) if name == "thumb" else (j[0], j[1])  # thumb: proximal phalanx
        for a, b, t in (first + (0.65,), (j[2], tip, 0.4)):
            axis = (b - a) / np.linalg.norm(b - a)
            lateral = np.cross(axis, [0.0, 1.0, 0.0])
            lateral /= np.linalg.norm(lateral)
            widths.append(m_to_mm(_width_through(mesh, a + t * (b - a), lateral)))
        out[f"{name}_widths_mm"] = [round(w, 1) for w in widths]
    return out


def summarize(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything ``docs/hand_model.md`` quotes: rest measurements, posed volume ratios (through
    smplx), shape-coefficient checks, the left-hand sign-fix sum and file sizes.

    Args:
        model_dir: folder with ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``.
    """
    from im2hands.hands.anatomy import rest_skeleton

    model_dir = Path(model_dir)
    right, left = _load(model_dir, "right"), _load(model_dir, "left")
    out = measure_hand_model(right)
    faces = np.asarray(right["f"], np.int64)
    rest = trimesh.Trimesh(right["v_template"], faces, process=False).volume
    axes = builder.flexion_axes(rest_skeleton())
    groups = {"MCP x4": [1, 4, 7, 10], "PIP x4": [2, 5, 8, 11], "DIP x4": [3, 6, 9, 12],
              "all 12 finger joints": list(range(1, 13)), "thumb CMC+MCP+IP": [13, 14, 15]}
    poses = []
    for joints in groups.values():
        pose = np.zeros((15, 3))
        pose[np.array(joints) - 1] = np.pi / 2 * axes[joints]
        poses.append(pose.ravel())
    names = [f"{g} at 90 deg" for g in groups] + ["fist", "oppose"]
    poses += [named_pose("fist"), named_pose("oppose")]
    verts, _ = pose_model(model_dir, "right", np.stack(poses))
    out["volume_ratio"] = {n: round(trimesh.Trimesh(v, faces, process=False).volume / rest, 4)
                           for n, v in zip(names, verts)}
    betas = np.concatenate([3.0 * np.eye(10), -3.0 * np.eye(10)])
    verts, _ = pose_model(model_dir, "right", np.zeros((20, 45)), betas)
    out["beta_pm3_self_intersections"] = sum(self_intersections(v, faces) for v in verts)
    out["beta_pm3_volume_cm3"] = [round(float(trimesh.Trimesh(v, faces, process=False).volume)
                                        * CM3_PER_M3, 1) for v in verts]
    out["left_signfix_sum"] = float(np.abs(np.asarray(left["shapedirs"])[:, 0]
                                           - np.asarray(right["shapedirs"])[:, 0]).sum())
    out["file_bytes"] = {n: (model_dir / n).stat().st_size for n in ("MANO_RIGHT.pkl",
                                                                     "MANO_LEFT.pkl")}
    out["fingertip_vertex_ids"] = [int(i) for i in right["fingertip_vertex_ids"]]
    return out
