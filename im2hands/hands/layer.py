"""The one hand-model layer: MANO-format files -> posed, watertight hand meshes and keypoints.

:class:`HandModel` wraps smplx's MANO code path (``smplx.MANO`` built from a ``data_struct``),
so the licensed MANO files and our open hand model run through exactly the same code. On top of
smplx it adds:

- fingertips, and the 21 keypoints in the library's ``standard`` order;
- a closed wrist: the single boundary loop of the mesh is capped with one extra vertex (the
  mean of the loop's posed vertices) and a fan of triangles, so meshes are watertight and
  outward-oriented;
- MANO's left-hand ``shapedirs`` sign fix (see :func:`~im2hands.hands.mano_io.fix_left_shapedirs`);
- batch-size-free forward passes (every input passed explicitly; the module has no parameters).

Frames and units: outputs are in the hand model's frame, in metres, plus ``trans``.
The hand-model arrays are non-persistent buffers: they never enter a ``state_dict`` (checkpoints
do not redistribute licensed model data).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from im2hands.hands.constants import (
    MANO_FINGERTIP_VERTEX_IDS,
    MANO_NUM_VERTICES,
    NUM_BETAS,
    NUM_POSE,
    SIDES,
)
from im2hands.hands.joint_orders import permutation
from im2hands.hands.mano_io import fix_left_shapedirs, load_mano_file, model_file, resolve_mano_dir
from im2hands.typing import Float, Int, Tensor
from im2hands.utils.errors import HandModelError

logger = logging.getLogger(__name__)

_SMPLX_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs",
               "hands_components", "hands_mean")


@dataclass
class HandOutput:
    """One forward pass of :class:`HandModel` (model frame plus ``trans``, metres)."""

    vertices: Float[Tensor, "B V 3"]
    """Posed vertices, including the wrist-cap centre vertex (last) when the wrist was closed."""
    faces: Int[Tensor, "F 3"]
    """Closed, outward-oriented triangles (int64), shared by the whole batch."""
    joints: Float[Tensor, "B K 3"]
    """The 16 hand-model joints in MANO joint order."""
    keypoints: Float[Tensor, "B J 3"]
    """The 16 joints plus 5 fingertip vertices, in the library's ``standard`` order."""


def close_wrist(faces: np.ndarray, num_vertices: int, *, source: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """Cap the single boundary loop of a triangle mesh with a fan around a new centre vertex.

    Boundary edges are the edges used by exactly one face. Each boundary half-edge ``a -> b``
    (as ordered in its face) gets the fan triangle ``(b, a, c)``, where ``c = num_vertices`` is
    the new vertex, so the cap's winding agrees with the adjacent faces.

    Args:
        faces: ``(F, 3)`` int triangles.
        num_vertices: vertex count ``V``; the centre vertex gets index ``V``.
        source: name used in error messages (the hand-model file).

    Returns:
        ``(loop, closed_faces)``: the loop's vertex ids in order ``(L,)`` (empty when the mesh
        has no boundary: nothing is added) and the ``(F + L, 3)`` int64 faces.

    Raises:
        HandModelError: more than one boundary loop, or a boundary that is not a simple loop.
    """
    faces = np.asarray(faces, dtype=np.int64)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # (3F, 2) half-edges
    _, inverse, counts = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True, return_counts=True)
    per_edge = counts[inverse.ravel()]
    if (counts > 2).any():
        n_bad = int((counts > 2).sum())
        logger.warning("%s: %d edges are shared by more than two faces (non-manifold mesh)", source, n_bad)
    boundary = directed[per_edge == 1]
    if len(boundary) == 0:
        return np.zeros(0, dtype=np.int64), faces
    nxt: dict[int, int] = {}
    for a, b in boundary.tolist():
        if a in nxt:
            raise HandModelError(f"{source}: boundary vertex {a} starts two boundary edges (pinched hole)")
        nxt[a] = b
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            if v not in nxt:
                raise HandModelError(f"{source}: the boundary at vertex {v} does not form a closed loop")
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v != start:
            raise HandModelError(f"{source}: the boundary at vertex {v} does not form a simple loop")
        loops.append(loop)
    if len(loops) != 1:
        sizes = sorted(len(lp) for lp in loops)
        raise HandModelError(
            f"{source}: the mesh has {len(loops)} boundary loops (sizes {sizes}); expected exactly one "
            "(the wrist opening) or none"
        )
    loop = np.asarray(loops[0], dtype=np.int64)
    centre = np.full_like(loop, num_vertices)
    fan = np.stack([np.roll(loop, -1), loop, centre], axis=1)  # (L, 3): (b, a, c) per edge a -> b
    return loop, np.concatenate([faces, fan], axis=0)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[faces]  # (F, 3, 3)
    return float(np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


class HandModel(torch.nn.Module):
    """One hand (left or right) of a MANO-format hand model, through smplx's MANO code path.

    The pose convention is smplx's ``flat_hand_mean=False`` (as in InterHand2.6M): the 45
    finger values are added to the file's ``hands_mean``, so a zero pose is MANO's mean
    relaxed hand. ``use_pca=False``: the pose is full axis-angle, not PCA coefficients.

    Attributes:
        side: ``"left"`` or ``"right"``.
        model_name: which hand model produced the file (``"mano"`` for the licensed files).
        source: the file the arrays came from.
        parents: parent of each of the 16 joints (``-1`` for the wrist), MANO joint order.
        fingertip_vertex_ids: vertex ids of the 5 tips (thumb, index, middle, ring, pinky).
        num_vertices: ``V'``, vertices per output mesh (file's ``V``, plus 1 if the wrist was closed).
        shapedirs_fixed: whether MANO's left-hand shapedirs fix was applied.
        closed_faces: ``(F', 3)`` int64 buffer, the watertight outward-oriented faces.
        wrist_loop: ``(L,)`` int64 buffer, ids of the wrist-opening vertices (empty if none).
        skinning_weights: ``(V', 16)`` buffer; the cap centre gets the mean of the loop's weights.
        rest_joints: ``(16, 3)`` buffer, joints of the mean shape in the unposed template (metres).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        side: str = "right",
        *,
        dtype: torch.dtype = torch.float32,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Load one side.

        Args:
            model_dir: folder holding ``MANO_RIGHT.pkl``/``MANO_LEFT.pkl``; ``None``: the
                ``IM2HANDS_MANO_DIR`` environment variable, else the shipped open model
                (see :func:`~im2hands.hands.mano_io.resolve_mano_dir`).
            side: ``"right"`` or ``"left"``. A left model is checked against the right file of
                the same folder for MANO's shapedirs bug.
            dtype: floating dtype of the buffers (``model.double()`` also works later).
            data: arrays already read by :func:`~im2hands.hands.mano_io.load_mano_file` (and
                fixed); then nothing is read and ``model_dir`` only names the source.

        Raises:
            HandModelError: missing folder/file/key, bad shapes, no fingertip ids, or a mesh
                with more than one boundary loop.
        """
        super().__init__()
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.side = side
        self.shapedirs_fixed = False
        if data is None:
            folder = resolve_mano_dir(model_dir)
            path = model_file(folder, side)
            data = load_mano_file(path)
            if side == "left":
                right = load_mano_file(model_file(folder, "right"))
                fixed = fix_left_shapedirs(data, right, source=str(path))
                self.shapedirs_fixed, data = fixed is not data, fixed
            source = str(path)
        else:
            source = str(model_dir) if model_dir is not None else "<arrays>"
        self.source = source
        self.model_name = str(data.get("model_name", "mano"))
        nv = int(data["v_template"].shape[0])

        struct = Struct(**{k: data[k] for k in _SMPLX_KEYS})
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):  # smplx prints a warning about 10 betas per load
            self.mano = smplx.MANO(
                model_path=source, data_struct=struct, is_rhand=side == "right", use_pca=False,
                num_pca_comps=45, flat_hand_mean=False, batch_size=1, dtype=dtype,
                create_global_orient=False, create_hand_pose=False, create_betas=False,
                create_transl=False, create_body_pose=False,
            )
        for line in captured.getvalue().splitlines():
            logger.debug("smplx (%s): %s", source, line.strip())
        for module in self.mano.modules():  # keep model data out of state_dict / checkpoints
            for name, buf in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buf, persistent=False)
        self.parents: tuple[int, ...] = tuple(int(p) for p in self.mano.parents.tolist())

        tips = data.get("fingertip_vertex_ids")
        if tips is None:
            if nv != MANO_NUM_VERTICES:
                raise HandModelError(
                    f"{source}: no 'fingertip_vertex_ids' key, and the mesh has {nv} vertices, not "
                    f"MANO's {MANO_NUM_VERTICES}, so MANO's fingertip ids do not apply; add the key (5 ids)"
                )
            tips = MANO_FINGERTIP_VERTEX_IDS
        tips = tuple(int(t) for t in np.asarray(tips).ravel())
        if len(tips) != 5 or min(tips) < 0 or max(tips) >= nv:
            raise HandModelError(f"{source}: 'fingertip_vertex_ids' must be 5 ids in [0, {nv}), got {tips}")
        self.fingertip_vertex_ids = tips

        loop, faces = close_wrist(data["f"], nv, source=source)
        template = np.asarray(data["v_template"], dtype=np.float64)
        if len(loop):
            template = np.concatenate([template, template[loop].mean(axis=0, keepdims=True)], axis=0)
        if _signed_volume(template, faces) < 0:
            faces = faces[:, [0, 2, 1]]
            logger.info("%s: faces were inward-oriented; flipped their winding", source)
        weights = np.asarray(data["weights"], dtype=np.float64)
        if len(loop):
            weights = np.concatenate([weights, weights[loop].mean(axis=0, keepdims=True)], axis=0)
        self.num_vertices = int(template.shape[0])

        self.register_buffer("closed_faces", torch.as_tensor(faces, dtype=torch.int64), persistent=False)
        self.register_buffer("wrist_loop", torch.as_tensor(loop, dtype=torch.int64), persistent=False)
        self.register_buffer("fingertip_ids", torch.tensor(tips, dtype=torch.int64), persistent=False)
        self.register_buffer(
            "keypoint_perm", torch.tensor(permutation("mano", "standard"), dtype=torch.int64), persistent=False
        )
        self.register_buffer("skinning_weights", torch.as_tensor(weights, dtype=dtype), persistent=False)
        rest = np.asarray(data["J_regressor"], dtype=np.float64) @ np.asarray(data["v_template"], dtype=np.float64)
        self.register_buffer("rest_joints", torch.as_tensor(rest, dtype=dtype), persistent=False)

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers."""
        return self.rest_joints.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's buffers (and of its outputs)."""
        return self.rest_joints.dtype

    def forward(
        self,
        pose: Float[Tensor, "B 48"],
        shape: Float[Tensor, "B 10"],
        trans: Float[Tensor, "B 3"],
    ) -> HandOutput:
        """Pose and shape the hand.

        Args:
            pose: ``(B, 48)`` axis-angle (radians): global rotation of the wrist (3), then the
                15 finger joints in MANO joint order (45), relative to ``hands_mean``.
            shape: ``(B, 10)`` shape coefficients (betas).
            trans: ``(B, 3)`` translation in metres, added to every output point.

        Inputs are cast to the model's dtype; they must be on the model's device. Any batch
        size works with one module.

        Returns:
            :class:`HandOutput` with ``vertices (B, V', 3)``, ``faces (F', 3)`` int64,
            ``joints (B, 16, 3)`` (MANO order) and ``keypoints (B, 21, 3)`` (``standard``
            order), model frame plus ``trans``, metres.
        """
        batch = pose.shape[0] if pose.ndim == 2 else -1
        for name, value, width in (("pose", pose, NUM_POSE), ("shape", shape, NUM_BETAS), ("trans", trans, 3)):
            if value.ndim != 2 or value.shape != (batch, width):
                raise ValueError(
                    f"{name} must have shape (B, {width}) with the same B for pose, shape and trans; got "
                    f"pose {tuple(pose.shape)}, shape {tuple(shape.shape)}, trans {tuple(trans.shape)}"
                )
        dtype = self.dtype
        pose, shape, trans = pose.to(dtype), shape.to(dtype), trans.to(dtype)
        out = self.mano(betas=shape, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=trans)
        vertices, joints = out.vertices, out.joints  # (B, V, 3), (B, 16, 3)
        tips = vertices[:, self.fingertip_ids]  # (B, 5, 3)
        keypoints = torch.cat([joints, tips], dim=1)[:, self.keypoint_perm]  # (B, 21, 3) standard order
        if self.wrist_loop.numel():
            centre = vertices[:, self.wrist_loop].mean(dim=1, keepdim=True)  # (B, 1, 3)
            vertices = torch.cat([vertices, centre], dim=1)  # (B, V + 1, 3)
        return HandOutput(vertices=vertices, faces=self.closed_faces, joints=joints, keypoints=keypoints)

    def extra_repr(self) -> str:
        return (
            f"side={self.side!r}, model_name={self.model_name!r}, num_vertices={self.num_vertices}, "
            f"faces={tuple(self.closed_faces.shape)}, source={self.source!r}"
        )


def load_hand_models(
    model_dir: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32, source: str = "model_dir"
) -> dict[str, HandModel]:
    """Load both hands from one folder (read once; MANO's left-hand fix applied if needed).

    Args:
        model_dir: hand-model folder, or ``None`` (see :func:`~im2hands.hands.mano_io.resolve_mano_dir`).
        dtype: floating dtype of the buffers.
        source: how the user gave ``model_dir`` (e.g. ``--mano-dir``), named in errors.

    Returns:
        ``{"left": HandModel, "right": HandModel}``.
    """
    folder = resolve_mano_dir(model_dir, source=source)
    paths = {side: model_file(folder, side) for side in SIDES}
    data = {side: load_mano_file(path) for side, path in paths.items()}
    left = fix_left_shapedirs(data["left"], data["right"], source=str(paths["left"]))
    fixed, data["left"] = left is not data["left"], left
    models = {side: HandModel(Path(paths[side]), side, dtype=dtype, data=data[side]) for side in SIDES}
    models["left"].shapedirs_fixed = fixed
    return models
