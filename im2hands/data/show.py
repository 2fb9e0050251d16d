"""``im2hands data show``: one picture of a dataset sample (image, masks, keypoints, meshes, depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from im2hands.data import format as fmt
from im2hands.data.dataset import mesh_in_camera
from im2hands.geometry.raster import render
from im2hands.hands.constants import SIDES
from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.hands.layer import load_hand_models
from im2hands.utils.errors import DataError
from im2hands.utils.io import atomic_path

HAND_COLORS = {"left": np.array([0.95, 0.45, 0.15]), "right": np.array([0.15, 0.45, 0.95])}
"""Display colours: left orange, right blue (used by every overlay picture)."""


def mesh_overlay(image: np.ndarray, meshes: dict[str, tuple[torch.Tensor, torch.Tensor]], K: np.ndarray,
                 alpha: float = 0.6) -> np.ndarray:
    """Render camera-frame meshes in the hand colours and blend them over ``image``.

    Args:
        image: (H, W, 3) uint8. meshes: side -> (vertices (V, 3) camera frame metres, faces (F, 3)).
        K: (3, 3) intrinsics. alpha: opacity of the meshes.

    Returns:
        (H, W, 3) float image in [0, 1].
    """
    h, w = image.shape[:2]
    items = []
    for side, (v, f) in meshes.items():
        col = torch.as_tensor(HAND_COLORS[side], dtype=torch.float32).expand(v.shape[0], 3)
        items.append((v.float(), f, col))
    res = render(items, torch.as_tensor(K, dtype=torch.float32), (h, w), light_dir=(0.3, 0.5, 1.0),
                 ambient=0.3, amodal=False)
    img = image.astype(np.float32) / 255.0
    cover = (res.object_id.numpy() >= 0)[..., None]
    return np.where(cover, (1 - alpha) * img + alpha * res.rgb.numpy(), img)


def show_sample(root: str | Path, index: int, out: str | Path, mano_dir: str | None = None) -> Path:
    """Write a picture of sample number ``index`` (position in the sorted ids) of a dataset.

    Panels: the image; amodal masks (outlines) over it; visible masks; projected keypoints with
    the skeleton; the ground-truth meshes rendered over the image; depth.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    ids = fmt.list_samples(root, "all")
    if not 0 <= index < len(ids):
        raise DataError(f"{root}: --index {index} is out of range (the dataset has {len(ids)} samples)")
    ann = fmt.read_annotation(root, ids[index])
    image = fmt.read_image(root / ann.image)
    masks = fmt.read_masks(root / ann.mask)
    depth = fmt.read_depth(root / ann.depth)
    models = load_hand_models(mano_dir, source="--mano-dir")
    meshes = {s: (mesh_in_camera(models[s], ann.hands[s], ann.R, ann.t), models[s].closed_faces)
              for s in SIDES if s in ann.hands}

    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(f"{ann.id}  ({ann.extra.get('template', '')})")
    axes[0, 1].imshow(image)
    for side in SIDES:
        axes[0, 1].contour(masks[f"{side}_amodal"], levels=[0.5], colors=[HAND_COLORS[side]], linewidths=1.5)
    axes[0, 1].set_title("amodal masks (left orange, right blue)")
    vis = np.ones(image.shape, np.float32)
    for side in SIDES:
        vis[masks[f"{side}_visible"]] = HAND_COLORS[side]
    axes[0, 2].imshow(vis)
    axes[0, 2].set_title("visible masks")
    axes[1, 0].imshow(image)
    for side, hand in ann.hands.items():
        uv = hand.keypoints_2d
        for j, p in enumerate(STANDARD_PARENTS):
            if p >= 0:
                axes[1, 0].plot(uv[[p, j], 0], uv[[p, j], 1], color=HAND_COLORS[side], linewidth=1.5)
        axes[1, 0].scatter(uv[:, 0], uv[:, 1], s=8, color="white", edgecolors=HAND_COLORS[side], zorder=3)
    axes[1, 0].set_title("keypoints (projected)")
    axes[1, 1].imshow(mesh_overlay(image, meshes, ann.K))
    axes[1, 1].set_title("ground-truth meshes")
    d = np.where(depth > 0, depth, np.nan)
    im = axes[1, 2].imshow(d, cmap="viridis")
    fig.colorbar(im, ax=axes[1, 2], fraction=0.046, label="depth (m)")
    axes[1, 2].set_title("depth")
    for ax in axes.flat:
        ax.set_xlim(0, ann.width)
        ax.set_ylim(ann.height, 0)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out
