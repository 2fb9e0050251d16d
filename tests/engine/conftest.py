"""A tiny two-hand dataset on disk for the trainer tests (8 samples: 6 train, 2 val).

Samples are written with the dataset format's own writers: both hands of the shipped open
hand model with small random finger poses, placed side by side 0.5 m in front of an identity
camera (world = camera), keypoints taken from the hand model, noise images of 64 x 64 pixels,
empty masks and depth. The folder is written once per test session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models
from im2hands.config import load_config
from im2hands.data import format as fmt
from im2hands.hands.constants import SIDES
from im2hands.hands.layer import load_hand_models

IMAGE_SIZE = 64
NUM_SAMPLES = 8
NUM_TRAIN = 6


def write_tiny_dataset(root: Path, num: int = NUM_SAMPLES, num_train: int = NUM_TRAIN, seed: int = 0) -> Path:
    """Write ``num`` samples to ``root`` (splits: ``train`` = first ``num_train``, ``val`` = rest)."""
    rng = np.random.default_rng(seed)
    models = load_hand_models()
    focal = 2.0 * IMAGE_SIZE
    K = np.array([[focal, 0.0, IMAGE_SIZE / 2], [0.0, focal, IMAGE_SIZE / 2], [0.0, 0.0, 1.0]])
    ids = []
    for i in range(num):
        hands = {}
        for side in SIDES:
            pose = np.zeros(48)
            pose[:3] = rng.normal(0.0, 0.2, 3)  # small global rotation
            pose[3:] = rng.normal(0.0, 0.15, 45)  # small finger poses
            shape = rng.normal(0.0, 0.5, 10)
            x = -0.08 if side == "left" else 0.08
            trans = np.array([x, 0.0, 0.5]) + rng.normal(0.0, 0.01, 3)
            with torch.no_grad():
                out = models[side](
                    torch.as_tensor(pose, dtype=torch.float32)[None],
                    torch.as_tensor(shape, dtype=torch.float32)[None],
                    torch.as_tensor(trans, dtype=torch.float32)[None],
                )
            kp = out.keypoints[0].double().numpy()  # (21, 3) camera frame (world = camera)
            uvw = kp @ K.T  # (21, 3)
            hands[side] = fmt.HandAnnotation(
                valid=True, pose=pose, shape=shape, trans=trans, keypoints=kp, keypoints_2d=uvw[:, :2] / uvw[:, 2:]
            )
        sid = fmt.sample_id(i)
        ann = fmt.Annotation(
            id=sid, K=K, R=np.eye(3), t=np.zeros(3), width=IMAGE_SIZE, height=IMAGE_SIZE,
            hand_model=models["right"].model_name, hands=hands, extra={"seed": [seed, i]},
        )
        image = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        empty = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
        masks = {name: empty for name in fmt.MASK_BITS}
        fmt.write_sample(root, ann, image, masks, np.zeros((IMAGE_SIZE, IMAGE_SIZE)))
        ids.append(sid)
    fmt.write_meta(root, {
        "source": "test", "hand_model": {"name": models["right"].model_name},
        "image_size": [IMAGE_SIZE, IMAGE_SIZE], "num_samples": num, "seed": seed,
    })
    fmt.write_splits(root, {"train": ids[:num_train], "val": ids[num_train:]})
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder of the tiny dataset (shared by every test of the session; do not modify)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_hands"))


@pytest.fixture(autouse=True)
def _test_models():
    """The tiny test models are registered only while an engine test runs."""
    tiny_models.register()
    yield
    tiny_models.unregister()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every engine test: tiny models run much faster on one thread (tests/conftest.py)."""
    yield


@pytest.fixture
def make_cfg(tiny_data, tmp_path):
    """``make_cfg(*overrides, run="run")``: a resolved config training a tiny model on ``tiny_data``."""
    def build(*overrides: str, run: str = "run"):
        base = [
            "model.type=test_tiny_kpts", f"data.root={tiny_data}", f"train.out_dir={tmp_path / run}",
            "data.num_points=32", "train.batch_size=2", "train.max_steps=6", "train.val_every=3",
            "train.checkpoint_every=3", "train.log_every=1", "train.val_samples=2", "train.val_points=64",
            "train.num_workers=0", "train.lr=0.01", "train.device=cpu", "train.tensorboard=false",
        ]  # fmt: skip
        return load_config(None, [*base, *overrides])

    return build
