"""Tiny synthetic MANO-format hand models for the hand-model tests.

The "hand" is an ellipsoid (a subdivided icosahedron, V ~ 150) with a hole cut at the bottom as
the wrist opening, 16 joints, smooth skinning weights and random shape directions. The left
file is the exact x-mirror of the right one, unless ``left_bug=True`` gives it MANO's known
shapedirs bug (x components copied from the right file unmirrored).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import trimesh

from im2hands.hands.constants import MANO_KINTREE_PARENTS

_SIGNS45 = np.tile([1.0, -1.0, -1.0], 15)


def make_hand_arrays(
    *,
    hole: bool = True,
    two_holes: bool = False,
    posedirs_scale: float = 0.0,
    hands_mean_scale: float = 0.0,
    flip_faces: bool = False,
    seed: int = 0,
) -> dict:
    """Right-hand MANO-format arrays (float64/int64 numpy) of a small ellipsoidal hand."""
    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=2)  # V=162, outward faces
    verts = np.asarray(sphere.vertices) * np.array([0.04, 0.09, 0.025])
    faces = np.asarray(sphere.faces, dtype=np.int64)
    centroid_y = np.asarray(sphere.vertices)[faces].mean(axis=1)[:, 1]
    keep = np.ones(len(faces), dtype=bool)
    if hole:
        keep &= centroid_y > -0.85
    if two_holes:
        keep &= centroid_y < 0.85
    faces = faces[keep]
    used = np.unique(faces)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    verts, faces = verts[used], remap[faces]
    if flip_faces:
        faces = faces[:, [0, 2, 1]]
    nv = len(verts)

    joints = np.concatenate([[[0.0, -0.07, 0.0]], rng.uniform([-0.03, -0.05, -0.015], [0.03, 0.08, 0.015], (15, 3))])
    d2 = ((verts[:, None] - joints[None]) ** 2).sum(-1)  # (V, 16)
    regressor = np.zeros((16, nv))
    for j in range(16):
        regressor[j, np.argsort(d2[:, j])[:4]] = 0.25
    weights = np.exp(-d2 / 0.02**2 + d2.min(1, keepdims=True) / 0.02**2)
    weights /= weights.sum(1, keepdims=True)
    return {
        "v_template": verts,
        "f": faces,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.stack([np.array(MANO_KINTREE_PARENTS), np.arange(16)]),
        "shapedirs": rng.normal(0.0, 0.003, (nv, 3, 10)),
        "posedirs": rng.normal(0.0, posedirs_scale, (nv, 3, 135)) if posedirs_scale else np.zeros((nv, 3, 135)),
        "hands_components": np.eye(45),
        "hands_mean": rng.normal(0.0, hands_mean_scale, 45) if hands_mean_scale else np.zeros(45),
        "fingertip_vertex_ids": np.argsort(-verts[:, 1])[:5],
    }


def mirror_arrays(right: dict, *, left_bug: bool = False) -> dict:
    """The left-hand arrays: x-mirror of ``right`` (posedirs must be zero to mirror exactly)."""
    left = {k: np.array(v, copy=True) for k, v in right.items()}
    left["v_template"][:, 0] *= -1
    left["f"] = right["f"][:, [0, 2, 1]]
    if not left_bug:
        left["shapedirs"][:, 0, :] *= -1
    left["hands_mean"] = right["hands_mean"] * _SIGNS45
    left["hands_components"] = right["hands_components"] * _SIGNS45[None, :]
    return left


def write_pair(folder: Path, right: dict, left: dict, *, protocol: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arrays in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        with open(folder / name, "wb") as fh:
            pickle.dump(arrays, fh, protocol=protocol)
    return folder


@pytest.fixture
def hand_arrays() -> Callable[..., dict]:
    """Builder of synthetic right-hand arrays (see :func:`make_hand_arrays`)."""
    return make_hand_arrays


@pytest.fixture
def make_hand_dir(tmp_path) -> Callable[..., Path]:
    """Builder ``make_hand_dir(name="model", left_bug=False, **array_options) -> folder``."""

    def build(name: str = "model", *, left_bug: bool = False, **options) -> Path:
        right = make_hand_arrays(**options)
        return write_pair(tmp_path / name, right, mirror_arrays(right, left_bug=left_bug))

    return build


@pytest.fixture
def hand_dir(make_hand_dir) -> Path:
    """A correctly mirrored synthetic pair with a wrist hole and random posedirs on neither side."""
    return make_hand_dir()
