"""Rebuild ``eval/real_photos/`` from InterHand2.6M sample files (how the committed set was made).

The four InterHand2.6M frames come from mmpose's test data (``tests/data/interhand2.6m/`` of
https://github.com/open-mmlab/mmpose): the images and three JSON files holding the dataset's
own annotation entries for them (``test_interhand2.6m_data.json``: image records;
``test_interhand2.6m_camera.json``: ``campos`` (mm), ``camrot``, ``focal``, ``princpt`` per camera;
``test_interhand2.6m_joint_3d.json``: 42 world joints in mm, rows 0-20 the right hand and 21-41
the left, each in InterHand2.6M's order, with ``joint_valid``).

Conversion: ``x_cam = camrot (x_world - campos) / 1000`` (metres, OpenCV camera frame),
``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` from ``focal`` and ``princpt`` as given; a hand
counts as present when all 21 of its joints are valid. Written per item ``NAME``:

- ``images/NAME.jpg``: the image, byte for byte;
- ``images/NAME.json``: ``{"camera": {"K": ...}}`` (the per-image camera ``im2hands extract --images`` reads);
- ``gt/NAME.json``: the ground truth as a keypoint file (``docs/keypoints_format.md``, order ``standard``).

Usage::

    python eval/real_photos/convert_interhand.py MMPOSE/tests/data/interhand2.6m eval/real_photos
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from im2hands.extraction.inputs import write_keypoints
from im2hands.hands.joint_orders import convert
from im2hands.utils.io import write_json

# InterHand2.6M's 42 rows: the right hand first, then the left (docs/keypoints_format.md).
ROWS = {"right": slice(0, 21), "left": slice(21, 42)}


def item_name(image_record: dict) -> str:
    """``ih_<frame>_<camera>``: InterHand2.6M's frame index and camera name."""
    return f"ih_{int(image_record['frame_idx']):05d}_{image_record['camera']}"


def convert_folder(src: Path, dst: Path) -> list[dict]:
    """Write ``images/`` and ``gt/`` under ``dst``; returns one provenance record per item."""
    data = json.loads((src / "test_interhand2.6m_data.json").read_text())
    cams = json.loads((src / "test_interhand2.6m_camera.json").read_text())
    joints = json.loads((src / "test_interhand2.6m_joint_3d.json").read_text())
    records = []
    for img in data["images"]:
        cap, cam, frame = str(img["capture"]), str(img["camera"]), str(img["frame_idx"])
        c = cams[cap]
        R = np.asarray(c["camrot"][cam], dtype=np.float64)
        t = np.asarray(c["campos"][cam], dtype=np.float64)
        (fx, fy), (cx, cy) = c["focal"][cam], c["princpt"][cam]
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        entry = joints[cap][frame]
        world = np.asarray(entry["world_coord"], dtype=np.float64)  # (42, 3) mm
        valid = np.asarray(entry["joint_valid"], dtype=bool).reshape(42)
        cam_xyz = (world - t) @ R.T / 1000.0  # (42, 3) metres, camera frame
        hands = {side: convert(cam_xyz[rows], "interhand", "standard") for side, rows in ROWS.items() if valid[rows].all()}
        name = item_name(img)
        (dst / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / img["file_name"], dst / "images" / f"{name}.jpg")
        write_json(dst / "images" / f"{name}.json", {"camera": {"K": K.tolist()}}, indent=None)
        write_keypoints(dst / "gt" / f"{name}.json", hands, K, order="standard")
        records.append({"name": name, "file": img["file_name"], "capture": int(cap), "seq": img["seq_name"],
                        "camera": cam, "frame": int(frame), "hand_type": entry["hand_type"],
                        "hands": sorted(hands)})  # fmt: skip
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="mmpose's tests/data/interhand2.6m folder")
    ap.add_argument("dst", type=Path, help="output folder (eval/real_photos)")
    args = ap.parse_args()
    for rec in convert_folder(args.src, args.dst):
        print(json.dumps(rec))


if __name__ == "__main__":
    main()
