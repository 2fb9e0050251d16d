"""Appearance of synthetic samples: skin tones, lighting, procedural backgrounds, camera fit.

Pure numpy/torch functions driven by a ``numpy.random.Generator`` so that a sample is a pure
function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Skin base colours (linear-ish RGB in [0, 1]) spanning light to dark tones.
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.92, 0.72, 0.60],
        [0.87, 0.66, 0.52],
        [0.78, 0.57, 0.44],
        [0.66, 0.46, 0.33],
        [0.53, 0.36, 0.25],
        [0.40, 0.26, 0.18],
        [0.30, 0.20, 0.14],
    ]
)


def skin_colors(vertices: np.ndarray, rng: np.random.Generator, base: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex skin colours ``(V, 3)`` in [0, 1]: a tone plus smooth blotchy variation.

    Args:
        vertices: ``(V, 3)`` rest or posed vertices (metres), used for the smooth variation.
        rng: random generator.
        base: ``(3,)`` base tone; drawn from a palette of tones when None.
    """
    if base is None:
        i = rng.uniform(0, len(_SKIN_TONES) - 1)
        lo = int(np.floor(i))
        w = i - lo
        base = (1 - w) * _SKIN_TONES[lo] + w * _SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)]
    # smooth variation: a few random plane waves over the vertex positions (~2-5 cm wavelength)
    freqs = rng.normal(size=(4, 3)) * rng.uniform(60, 160)
    phases = rng.uniform(0, 2 * np.pi, size=4)
    wave = np.sin(vertices @ freqs.T + phases).mean(axis=1, keepdims=True)  # (V, 1)
    redness = np.array([0.04, -0.02, -0.02]) * rng.uniform(0, 1)
    colors = base[None] * (1.0 + 0.06 * wave) + redness[None] * (wave > 0)
    return np.clip(colors, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> torch.Tensor:
    coarse = torch.from_numpy(rng.uniform(0, 1, size=(1, channels, cells, cells))).float()
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural background ``(size, size, 3)`` float in [0, 1].

    Mixes a colour gradient, multi-scale smooth noise, a few random shapes (rectangles and
    discs, some skin-coloured as distractors) and fine grain, so that a network cannot find
    the hands by colour or texture statistics alone.
    """
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = (1 - ramp[..., None]) * c0 + ramp[..., None] * c1  # (S, S, 3)
    for cells, amp in ((3, 0.35), (8, 0.2), (24, 0.1)):
        noise = _smooth_noise(rng, size, cells, 3).permute(1, 2, 0).numpy() - 0.5
        img = img + amp * rng.uniform(0.3, 1.0) * noise
    for _ in range(rng.integers(0, 7)):
        colour = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] if rng.uniform() < 0.2 else rng.uniform(0, 1, 3)
        alpha = rng.uniform(0.3, 0.9)
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.3)
        if rng.uniform() < 0.5:
            mask = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r * rng.uniform(0.2, 1.5))
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img[mask] = (1 - alpha) * img[mask] + alpha * colour
    img = img + rng.normal(0, rng.uniform(0.0, 0.02), size=img.shape)
    return np.clip(img, 0.0, 1.0)


@dataclass
class Lighting:
    """Directional light plus ambient term, camera frame."""

    direction: np.ndarray  # (3,) unit vector pointing FROM the light TOWARD the scene
    ambient: float
    diffuse: float


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A light roughly behind the camera (it shines along +z) with random spread."""
    d = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), 1.0])
    return Lighting(direction=d / np.linalg.norm(d), ambient=float(rng.uniform(0.25, 0.5)),
                    diffuse=float(rng.uniform(0.5, 0.8)))


def fit_camera(
    points: np.ndarray, focal: float, size: int, fill: float, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Place points in front of a camera so their projected box fills ``fill`` of the image.

    Mimics the IntagHand crop (a square around both hands' projected vertices, side = box
    extent / 0.8) for a camera of focal length ``focal`` pixels: the points are moved along
    +z until their box has side ``fill * size`` and the principal point centres the box
    (plus ``shift``, a fraction of the side).

    Args:
        points: ``(N, 3)`` points in a camera-oriented frame, centred near the origin (metres).
        focal: focal length in pixels. size: image side in pixels. fill: in (0, 1].
        shift: ``(2,)`` offset of the box centre from the image centre, fraction of the side.

    Returns:
        ``t`` (3,) translation to add to the points (camera frame, metres) and ``K`` (3, 3).
    """
    z = 0.5
    for _ in range(6):  # fixed-point iteration; perspective makes the extent depend on z
        p = points + np.array([0.0, 0.0, z])
        uv = p[:, :2] / p[:, 2:3]
        extent = float(np.max(uv.max(0) - uv.min(0)))
        z = z * (focal * extent) / (fill * size)
    p = points + np.array([0.0, 0.0, z])
    uv = focal * p[:, :2] / p[:, 2:3]
    centre = 0.5 * (uv.max(0) + uv.min(0))
    c = size / 2.0 - centre + shift * size
    K = np.array([[focal, 0.0, c[0]], [0.0, focal, c[1]], [0.0, 0.0, 1.0]])
    return np.array([0.0, 0.0, z]), K
