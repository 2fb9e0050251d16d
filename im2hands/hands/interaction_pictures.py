"""Pictures of two-hand interaction templates (:mod:`im2hands.hands.interactions`): one pair from
two views (:func:`render_pair`) and the gallery of every template in ``docs/img``
(:func:`render_gallery`). Needs matplotlib.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from im2hands.hands.interactions import TEMPLATES, TwoHandPose, _sampler, _to_np, pose_pair, sample_interaction

__all__ = ["render_pair", "render_gallery"]


def _draw_meshes(ax, meshes, colors, elev: float, azim: float) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    allv = np.concatenate([m[0] for m in meshes])
    e, a = math.radians(elev), math.radians(azim)
    cam = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    light = 0.7 * cam + 0.3 * np.array([0.3, 0.5, 0.8])
    light /= np.linalg.norm(light)
    tris, cols = [], []
    for (v, f), c in zip(meshes, colors):
        tri = v[f]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        shade = 0.3 + 0.7 * np.clip(n @ light, 0, 1)
        front = (n @ cam) > -0.2
        tris.append(tri[front])
        cols.append(np.clip(np.asarray(c)[None] * shade[front, None], 0, 1))
    # one collection, so that the painter's sort runs over both meshes
    ax.add_collection3d(Poly3DCollection(np.concatenate(tris), facecolors=np.concatenate(cols), edgecolors="none"))
    c = (allv.max(0) + allv.min(0)) / 2
    rad = (allv.max(0) - allv.min(0)).max() / 2
    ax.set_xlim(c[0] - rad, c[0] + rad)
    ax.set_ylim(c[1] - rad, c[1] + rad)
    ax.set_zlim(c[2] - rad, c[2] + rad)
    ax.view_init(elev=elev, azim=azim)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()


_SKIN = {"right": (0.93, 0.74, 0.58), "left": (0.55, 0.70, 0.92)}
_VIEW = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # model (x, y, z) -> display (x, -z, y): y up


def render_pair(pair: TwoHandPose, right_model, left_model, path, views=((25, -60), (-35, 120)), title: str = ""):
    """Save a picture of a pair (right hand orange, left hand blue) from two viewpoints."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pose_pair(pair, right_model, left_model)
    meshes = [(_to_np(out[s].vertices[0]) @ _VIEW.T, _to_np(out[s].faces)) for s in ("right", "left")]
    fig = plt.figure(figsize=(4 * len(views), 4))
    for i, (e, a) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection="3d")
        _draw_meshes(ax, meshes, [_SKIN["right"], _SKIN["left"]], e, a)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render_gallery(out_dir, right_model=None, left_model=None, seed: int = 0, per_template: int = 3,
                   names=TEMPLATES) -> list[str]:
    """Write ``interaction_<template>.png`` (``per_template`` random draws each, two views) and
    ``poses_<mode>.png`` (random single right hands) into ``out_dir``."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    if right_model is None or left_model is None:
        from im2hands.hands.layer import load_hand_models

        models = load_hand_models()
        right_model, left_model = models["right"], models["left"]
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    written = []
    views = ((25, -60), (-40, 110))
    for name in names:
        fig = plt.figure(figsize=(3.6 * len(views), 3.4 * per_template))
        for i in range(per_template):
            shapes = 0.8 * torch.randn(2, 10, generator=g)
            pair = sample_interaction(name, right_model, left_model, shapes, g)
            out = pose_pair(pair, right_model, left_model)
            meshes = [(_to_np(out[s].vertices[0]) @ _VIEW.T, _to_np(out[s].faces)) for s in ("right", "left")]
            for k, (e, a) in enumerate(views):
                ax = fig.add_subplot(per_template, len(views), i * len(views) + k + 1, projection="3d")
                _draw_meshes(ax, meshes, [_SKIN["right"], _SKIN["left"]], e, a)
                if k == 0:
                    ax.set_title(f"{name} #{i}  pen={pair.penetration_cm3:.2f} cm3"
                                 f"{'  (swapped)' if pair.swapped else ''}", fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"interaction_{name}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    sampler = _sampler(right_model)
    for mode_group in (("random",), ("open", "relaxed", "spread"), ("fist", "pointing", "pinch", "grasp")):
        rows, cols = (3, 4) if mode_group == ("random",) else (len(mode_group), 4)
        fig = plt.figure(figsize=(2.6 * cols, 2.6 * rows))
        for i in range(rows):
            mode = mode_group[0] if len(mode_group) == 1 else mode_group[i]
            ang = sampler.sample(cols, g, mode)
            pose = sampler.pose_from_angles(ang)
            with torch.no_grad():
                out = right_model(pose, torch.zeros(cols, 10), torch.zeros(cols, 3))
            for k in range(cols):
                ax = fig.add_subplot(rows, cols, i * cols + k + 1, projection="3d")
                v = _to_np(out.vertices[k]) @ _VIEW.T
                _draw_meshes(ax, [(v, _to_np(out.faces))], [_SKIN["right"]], -50 if k % 2 else 30, -70)
                ax.set_title(mode, fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"poses_{'_'.join(mode_group)}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
