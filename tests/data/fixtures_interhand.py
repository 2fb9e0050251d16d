"""A tiny InterHand2.6M v1.0 download, built at test time (no binaries in the repository).

The annotation files follow the v1.0 schema exactly (see ``im2hands/data/interhand_io.py``):
2 captures x 2 cameras x a few frames, 334 x 512 portrait images. The open hand model stands in
for MANO through the same loading path (``--mano-dir im2hands/assets/handmodel``), and every
annotation is consistent with it: the NeuralAnnot parameters pose the model in the world frame,
``joint_3d.json`` holds the model's keypoints in millimetres (InterHand order, right hand first),
and the images are renders of those meshes through the cameras of ``camera.json``
(``x_cam = camrot (x_world - campos)``, principal point in OpenCV's integer-centre convention).

Frames (hand type, NeuralAnnot fits), each seen by both cameras of its capture:

====================  ===========  ===========  ====================================
capture, frame        hand_type    valid        NeuralAnnot
====================  ===========  ===========  ====================================
0, 10                 interacting  1            both                    -> kept
0, 16                 interacting  1            left is null            -> dropped
0, 22                 right        1            both                    -> dropped (single hand)
1, 1200               interacting  1            both (camera 1 is dark) -> kept; one dark
1, 1206               interacting  0            both                    -> dropped (type invalid)
1, 1212               interacting  1            both; one annotation has an invalid left joint -> kept
1, 1218               interacting  1            frame missing           -> dropped
====================  ===========  ===========  ====================================

Annotations are written in reverse id order, so the reader's sort by id is exercised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from im2hands.geometry.raster import render
from im2hands.hands.joint_orders import convert
from im2hands.hands.layer import load_hand_models
from im2hands.hands.mano_io import DEFAULT_MODEL_DIR

WIDTH, HEIGHT = 334, 512
SKIN = {"right": (0.92, 0.62, 0.48), "left": (0.86, 0.56, 0.44)}
BACKGROUND = (0.12, 0.22, 0.55)

CAPTURES = {
    0: {"subject": 8, "seq_name": "0051_dh_fixture_touch", "cameras": ("400262", "400263"),
        "target": (0.02, -0.05, 1.0)},
    1: {"subject": 9, "seq_name": "0102_dh_fixture_clap", "cameras": ("410001", "410014"),
        "target": (-0.03, 0.02, 1.05)},
}
# (capture, frame_idx, hand_type, hand_type_valid, neuralannot: "both" | "no_left" | "absent")
FRAMES = [
    (0, 10, "interacting", 1, "both"),
    (0, 16, "interacting", 1, "no_left"),
    (0, 22, "right", 1, "both"),
    (1, 1200, "interacting", 1, "both"),
    (1, 1206, "interacting", 0, "both"),
    (1, 1212, "interacting", 1, "both"),
    (1, 1218, "interacting", 1, "absent"),
]
DARK = (1, 1200, "410014")
INVALID_JOINT = (1, 1212, "410001", 21 + 16)  # (capture, frame, camera, joint index): the left pinky tip


@dataclass
class InterHandFixture:
    """Where the fixture lies and what a correct preparation must produce."""

    root: Path
    split: str
    mano_dir: Path
    kept: list[tuple[int, int, str]]  # (capture, frame, camera) passing the annotation filter, by annotation id
    dark: list[tuple[int, int, str]]
    single_right: list[tuple[int, int, str]]  # the hand_type "right" annotations, by annotation id
    images: dict[tuple[int, int, str], Path] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def expected_complete(self) -> int:
        return len(self.kept) - len(self.dark)


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation (rows: camera x right, y down, z forward) for a world with y down."""
    z = target - position
    z /= np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _cameras(rng: np.random.Generator) -> dict:
    cams = {}
    directions = [np.array([-0.25, -0.15, -1.0]), np.array([0.3, 0.1, -1.0])]
    for cap, info in CAPTURES.items():
        target = np.asarray(info["target"])
        entry = {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
        for name, d in zip(info["cameras"], directions):
            pos = target + 1.1 * d / np.linalg.norm(d)
            entry["campos"][name] = (pos * 1000.0).round(4).tolist()
            entry["camrot"][name] = _look_at(pos, target).round(8).tolist()
            f = 1250.0 + rng.uniform(-20, 20)
            entry["focal"][name] = [round(f, 4), round(f + rng.uniform(-1, 1), 4)]
            centre = np.array([WIDTH / 2, HEIGHT / 2]) + rng.uniform(-4, 4, 2)
            entry["princpt"][name] = centre.round(4).tolist()
        cams[str(cap)] = entry
    return cams


def _hand_params(models, rng: np.random.Generator, shape: np.ndarray, centre: np.ndarray, side: str) -> dict:
    pose = np.concatenate([Rotation.random(random_state=rng).as_rotvec(), rng.normal(0.0, 0.2, 45)])
    pose, shape = pose.round(6), shape.round(6)
    with torch.no_grad():
        out = models[side](torch.as_tensor(pose)[None], torch.as_tensor(shape)[None], torch.zeros(1, 3))
    trans = (centre - out.vertices[0].double().numpy().mean(axis=0)).round(6)
    return {"pose": pose.tolist(), "shape": shape.tolist(), "trans": trans.tolist()}


def _pose_world(models, params: dict, side: str):
    with torch.no_grad():
        out = models[side](*(torch.as_tensor([params[k]]) for k in ("pose", "shape", "trans")))
    return out.vertices[0].double().numpy(), out.keypoints[0].double().numpy(), models[side].closed_faces


def _background(rng: np.random.Generator) -> torch.Tensor:
    ramp = np.linspace(0.8, 1.2, HEIGHT)[:, None, None]
    bg = np.asarray(BACKGROUND)[None, None] * ramp + rng.normal(0.0, 0.02, (HEIGHT, WIDTH, 3))
    return torch.as_tensor(np.clip(bg, 0.0, 1.0), dtype=torch.float32)


def build_interhand_fixture(root: str | Path, split: str = "test", mano_dir: str | Path = DEFAULT_MODEL_DIR,
                            seed: int = 0) -> InterHandFixture:
    """Write the fixture under ``root`` (``annotations/<split>/`` and ``images/<split>/``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small renders: one thread is several times faster on a busy machine
    try:
        return _build(Path(root), split, Path(mano_dir), seed)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path, split: str, mano_dir: Path, seed: int) -> InterHandFixture:
    rng = np.random.default_rng(seed)
    models = load_hand_models(mano_dir)
    cams = _cameras(rng)
    shapes = {cap: rng.normal(0.0, 0.6, 10) for cap in CAPTURES}
    mano: dict = {str(c): {} for c in CAPTURES}
    joints: dict = {str(c): {} for c in CAPTURES}
    images, annotations = [], []
    fx = InterHandFixture(root=root, split=split, mano_dir=mano_dir, kept=[], dark=[DARK], single_right=[])
    dropped = {"hand_type": 0, "hand_type_invalid": 0, "no_mano_fit": 0}
    next_id = 1000
    for cap, frame, hand_type, type_valid, fits in FRAMES:
        info = CAPTURES[cap]
        target = np.asarray(info["target"])
        offsets = {"right": [0.035, 0.0, 0.0], "left": [-0.035, 0.01, 0.03]}
        params = {side: _hand_params(models, rng, shapes[cap] + rng.normal(0, 0.05, 10), target + offsets[side], side)
                  for side in ("right", "left")}
        posed = {side: _pose_world(models, params[side], side) for side in ("right", "left")}
        if fits != "absent":
            left = None if fits == "no_left" else params["left"]
            mano[str(cap)][str(frame)] = {"right": params["right"], "left": left}
        world = np.concatenate([convert(posed[s][1], "standard", "interhand") for s in ("right", "left")]) * 1000.0
        joints[str(cap)][str(frame)] = {
            "world_coord": world.round(5).tolist(), "joint_valid": [[True]] * 42,
            "hand_type": hand_type, "hand_type_valid": bool(type_valid),
        }  # fmt: skip
        for name in info["cameras"]:
            key = (cap, frame, name)
            R = np.asarray(cams[str(cap)]["camrot"][name])
            campos = np.asarray(cams[str(cap)]["campos"][name]) / 1000.0
            fxy, pp = cams[str(cap)]["focal"][name], cams[str(cap)]["princpt"][name]
            K = torch.tensor([[fxy[0], 0.0, pp[0]], [0.0, fxy[1], pp[1]], [0.0, 0.0, 1.0]])
            meshes = []
            for side in ("left", "right"):
                v, _, f = posed[side]
                v_cam = torch.as_tensor((v - campos) @ R.T, dtype=torch.float32)
                meshes.append((v_cam, f, torch.as_tensor(SKIN[side], dtype=torch.float32).expand(len(v), 3)))
            res = render(meshes, K, (HEIGHT, WIDTH), background=_background(rng), ambient=0.5, amodal=False,
                         pixel_center=0.0)
            rgb = res.rgb.numpy() * (0.03 if key == DARK else 1.0)
            file_name = f"Capture{cap}/{info['seq_name']}/cam{name}/image{frame}.jpg"
            path = root / "images" / split / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path, quality=95)
            fx.images[key] = path
            kp_cam = (world.reshape(42, 3) / 1000.0 - campos) @ R.T
            uv = (kp_cam @ K.numpy().T)[:, :2] / kp_cam[:, 2:3]
            lo, hi = uv.min(0), uv.max(0)
            valid = [[0] if key[:3] == INVALID_JOINT[:3] and j == INVALID_JOINT[3] else [1] for j in range(42)]
            images.append({"id": next_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT,
                           "capture": cap, "subject": info["subject"], "seq_name": info["seq_name"],
                           "camera": name, "frame_idx": frame})
            bbox = [*lo.round(3).tolist(), *(hi - lo).round(3).tolist()]
            annotations.append({"id": next_id, "image_id": next_id, "bbox": bbox, "joint_valid": valid,
                                "hand_type": hand_type, "hand_type_valid": type_valid})
            next_id += 1
            if not type_valid:
                dropped["hand_type_invalid"] += 1
            elif hand_type != "interacting":
                dropped["hand_type"] += 1
                fx.single_right.append(key)
            elif fits != "both":
                dropped["no_mano_fit"] += 1
            else:
                fx.kept.append(key)
    fx.dropped = dropped
    folder = root / "annotations" / split
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "data": {"images": images, "annotations": annotations[::-1]},
        "camera": cams,
        "joint_3d": joints,
        "MANO_NeuralAnnot": mano,
    }
    for kind, content in files.items():
        (folder / f"InterHand2.6M_{split}_{kind}.json").write_text(json.dumps(content))
    return fx
