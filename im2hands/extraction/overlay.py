"""The overlay picture of ``im2hands extract``: the input image (with the regions the hands were
found in, when estimated) next to the meshes drawn over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from im2hands.extraction.extractor import Extraction
from im2hands.extraction.inputs import Item
from im2hands.utils.io import atomic_path

OVERLAY_MAX_SIDE = 1024
"""Overlay pictures of larger images are drawn at this longest side."""


def draw_regions(image: np.ndarray, regions: dict[str, tuple[float, float, float, float]], scale: float) -> np.ndarray:
    """``image`` with each found hand's region (a rotated square) and its side (L / R) drawn in
    the side's colour; ``scale``: image pixels per region pixel."""
    from PIL import Image, ImageDraw

    from im2hands.data.show import HAND_COLORS

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(image.shape[:2]) / 200))
    for side, (cu, cv, size, angle) in regions.items():
        colour = tuple(int(255 * c) for c in HAND_COLORS[side])
        c, s, h = np.cos(angle), np.sin(angle), size / 2.0
        corners = [(scale * (cu + c * x - s * y), scale * (cv + s * x + c * y)) for x, y in ((-h, -h), (h, -h), (h, h), (-h, h))]
        draw.line(corners + corners[:1], fill=colour, width=width)
        draw.text((min(u for u, _ in corners) + 2, min(v for _, v in corners) + 1), "L" if side == "left" else "R", fill=colour)
    return np.asarray(picture)


def overlay_picture(item: Item, extraction: Extraction) -> np.ndarray:
    """``(H', 2 W', 3)`` uint8: the input image (with the regions the hands were found in, when
    estimated) | the meshes rendered over it; images above :data:`OVERLAY_MAX_SIDE` are
    drawn smaller."""
    from PIL import Image

    from im2hands.data.show import mesh_overlay

    image, K = item.image, np.array(item.K, dtype=np.float64)
    h, w = image.shape[:2]
    scale = min(1.0, OVERLAY_MAX_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        K[:2] *= np.array([[size[0] / w], [size[1] / h]])
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    meshes = {
        side: (torch.from_numpy(r.vertices).float(), torch.from_numpy(r.faces))
        for side, r in extraction.hands.items()
        if r.status == "ok"
    }
    over = mesh_overlay(image, meshes, K) if meshes else image.astype(np.float32) / 255.0
    left_panel = draw_regions(image, item.regions, scale) if item.regions else image
    return np.concatenate([left_panel, (np.clip(over, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)], axis=1)


def write_overlay(path: Path, item: Item, extraction: Extraction) -> Path:
    """:func:`overlay_picture` as a PNG file, written atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(overlay_picture(item, extraction)).save(tmp, format="PNG")
    return path
