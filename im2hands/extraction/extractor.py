"""Meshes of both hands from any occupancy model: encode once, MISE per hand, marching cubes.

For one batch item (``B = 1``; ``2`` is the hand axis, ``LEFT = 0``, ``RIGHT = 1``):

1. ``features = model.encode(batch)`` once.
2. Per present hand, a :class:`~im2hands.extraction.mise.MISE` in the hand's box: the cube of
   side ``box_side`` (0.44 m = 1.1 x 0.4 m) centred at the wrist and axis-aligned in the palm
   frame (:func:`~im2hands.geometry.frames.palm_frame`), the box the training points are
   drawn in. The hand's keypoint skeleton (20 bones) gives MISE its band seed (refined at the
   coarse levels, ``seed_radius``) and its band start (level 0 evaluated only within
   ``start_radius`` of the bones; ``start_radius=None`` evaluates the whole 33^3 level).
3. Both hands' MISE run in lockstep: each round, the two query sets go through one
   ``model.decode(points (1, 2, N, 3), features)`` per chunk of ``points_batch_size`` points
   (the shorter set is padded with repeats of its own points), camera frame, metres.
4. :func:`~im2hands.extraction.marching.extract_surface` on each final grid, vertices mapped
   straight from grid indices to the camera frame (metres).

The threshold is ``threshold`` when given, else ``model.threshold`` (0.5 for stage 1, 0.45
for stage 2), else 0.5. Decoding runs under ``torch.inference_mode``; a chunk that runs out of
memory is retried at half the size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from im2hands.data.sampling import HALO_BOX_SIDE
from im2hands.extraction.marching import NoSurfaceError, extract_surface, grid_affine
from im2hands.extraction.mise import MISE
from im2hands.extraction.oracle import skeleton_segments
from im2hands.geometry.frames import apply_transform, palm_frame
from im2hands.geometry.rotations import invert_transform
from im2hands.hands.constants import SIDES
from im2hands.models.base import DEFAULT_DECODE_BYTES_PER_POINT, HandsModel

__all__ = ["HandResult", "Extraction", "Extractor", "resolve_threshold", "resolve_precision", "decode_autocast", "PRECISIONS"]

log = logging.getLogger(__name__)

DEFAULT_BYTES_PER_POINT = DEFAULT_DECODE_BYTES_PER_POINT
"""Decode memory per query point assumed when a model declares no other ``decode_bytes_per_point``."""
_MIN_CHUNK = 1024
"""The memory cap never makes chunks smaller than this (only running out of memory does)."""
_LOW_PRECISION_STEP = 512
"""In bfloat16 each round's query count is padded up to a multiple of this (and chunks are
multiples of it): the CPU's bfloat16 products keep memory per distinct matrix shape (about
10 MB each, measured: 60 rounds of distinct sizes grew the process by 620 MB, padded ones by
100 MB), so MISE's ever-changing round sizes would grow the process without bound."""


PRECISIONS = ("auto", "float32", "bfloat16")
"""Decode precisions: ``float32``; ``bfloat16`` (autocast: the models' products and most of
their activations in bfloat16, float32 accumulation, coordinates and outputs in float32);
``auto``: ``bfloat16`` on CPUs with native bfloat16 dot products (AVX512-BF16 or AMX), else
``float32`` (CUDA included: not yet measured there)."""


def _cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 dot products (torch's own CPU feature probe)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # probes are private API: absent means unknown -> no
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``float32`` or ``bfloat16`` for a :data:`PRECISIONS` name on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bfloat16" if torch.device(device).type == "cpu" and _cpu_has_bf16() else "float32"


def decode_autocast(device_type: str, precision: str) -> torch.autocast:
    """The autocast context decoding runs in for a resolved ``precision`` (``float32``: off;
    ``bfloat16``: bfloat16 autocast on ``device_type``)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def resolve_threshold(model: HandsModel, threshold: float | None) -> float:
    """``threshold`` if given, else ``model.threshold`` (0.5 unless the model declares another)."""
    if threshold is not None:
        return float(threshold)
    return float(model.threshold)


@dataclass
class HandResult:
    """One hand's extraction.

    Attributes:
        side: ``left`` or ``right``.
        status: ``ok``, ``failed`` (no surface found) or ``skipped`` (hand not given).
        message: why it failed or was skipped; notes (components dropped, not watertight).
        vertices: ``(V, 3)`` float64, camera frame, metres (``ok`` only).
        faces: ``(F, 3)`` int64, outward normals (``ok`` only).
        watertight, components, dropped_faces, volume_m3, area_m2: see
            :class:`~im2hands.extraction.marching.SurfaceMesh`.
        points_evaluated: grid points decoded for this hand (padding excluded).
        points_per_level: the same per MISE level.
        dense_points: ``(R + 1)^3``.
    """

    side: str
    status: str
    message: str = ""
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    watertight: bool = False
    components: int = 0
    dropped_faces: int = 0
    volume_m3: float = 0.0
    area_m2: float = 0.0
    points_evaluated: int = 0
    points_per_level: list[int] = field(default_factory=list)
    dense_points: int = 0

    @property
    def query_fraction(self) -> float:
        return self.points_evaluated / self.dense_points if self.dense_points else 0.0


@dataclass
class Extraction:
    """Both hands of one item, and where the time went.

    Attributes:
        hands: ``{"left": HandResult, "right": HandResult}``.
        seconds: ``encode``, ``decode``, ``mise`` (grid bookkeeping), ``marching``, ``total``.
        points_decoded: points sent to ``decode`` over both hands, padding included.
        threshold: the iso-level used.
        resolution: final cells per side.
    """

    hands: dict[str, HandResult]
    seconds: dict[str, float]
    points_decoded: int
    threshold: float
    resolution: int


class Extractor:
    """Mesh extraction for any :class:`~im2hands.models.base.HandsModel` that decodes occupancy.

    Args:
        model: the occupancy model (put in eval mode here).
        resolution0: MISE start resolution, cells per side (32).
        upsampling_steps: MISE levels after the first (3: 256 cells, a 1.72 mm cell).
        threshold: iso-level; None: ``model.threshold`` or 0.5.
        box_side: side of each hand's palm-frame cube, metres (0.44).
        points_batch_size: most query points per hand in one ``decode`` call (100k).
        max_memory_mb: cap on decode memory; the chunk is also limited to
            ``max_memory_mb / (2 * model.decode_bytes_per_point)`` points per hand.
        seed_radius: radius of the skeleton band refined at the first ``seed_levels`` levels,
            metres (0 disables the band).
        seed_levels: MISE levels the band is refined at.
        start_radius: level 0 is evaluated only within this distance of the bones, metres
            (None: everywhere, as the original).
        flood: MISE surface tracking (see :mod:`~im2hands.extraction.mise`).
        device: where the batch goes; None: the model's device.
        precision: decode precision, one of :data:`PRECISIONS` (``auto``); the one used is
            :attr:`precision` (``float32`` or ``bfloat16``). Encoding stays float32.
    """

    def __init__(
        self,
        model: HandsModel,
        *,
        resolution0: int = 32,
        upsampling_steps: int = 3,
        threshold: float | None = None,
        box_side: float = HALO_BOX_SIDE,
        points_batch_size: int = 100_000,
        max_memory_mb: float = 1024.0,
        seed_radius: float = 0.02,
        seed_levels: int = 1,
        start_radius: float | None = 0.05,
        flood: bool = True,
        device: torch.device | str | None = None,
        precision: str = "auto",
    ) -> None:
        if resolution0 < 2 or upsampling_steps < 0:
            raise ValueError(f"need resolution0 >= 2 and upsampling_steps >= 0, got {resolution0}, {upsampling_steps}")
        if points_batch_size < 1 or max_memory_mb <= 0 or box_side <= 0:
            raise ValueError("points_batch_size, max_memory_mb and box_side must be positive")
        self.model = model.eval()
        self.resolution0, self.upsampling_steps = int(resolution0), int(upsampling_steps)
        self.threshold = resolve_threshold(model, threshold)
        self.box_side = float(box_side)
        per_point = float(model.decode_bytes_per_point)
        cap = int(max_memory_mb * 2**20 / (2.0 * per_point))
        self.chunk = min(int(points_batch_size), max(cap, _MIN_CHUNK))
        self.seed_radius, self.seed_levels, self.flood = float(seed_radius), int(seed_levels), bool(flood)
        self.start_radius = None if start_radius is None else float(start_radius)
        if device is None:
            device = model.device
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        if self.precision == "bfloat16" and self.chunk >= _LOW_PRECISION_STEP:
            self.chunk -= self.chunk % _LOW_PRECISION_STEP

    @property
    def resolution(self) -> int:
        return self.resolution0 * 2**self.upsampling_steps

    # ------------------------------------------------------------------ decoding

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _decode(self, points: torch.Tensor, features: Any) -> np.ndarray:
        """``(1, 2, N, 3)`` camera-frame points -> ``(2, N)`` float32 values, in chunks."""
        N = points.shape[2]
        out = np.empty((2, N), dtype=np.float32)
        s = 0
        while s < N:
            e = min(N, s + self.chunk)
            try:
                with torch.inference_mode(), decode_autocast(self.device.type, self.precision):
                    v = self.model.decode(points[:, :, s:e], features)  # (1, 2, n)
                out[:, s:e] = v[0].float().cpu().numpy()
            except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                if self.chunk <= 1:
                    raise
                self.chunk = max(1, self.chunk // 2)
                log.warning("decode ran out of memory (%s); retrying with %d points per chunk", type(exc).__name__, self.chunk)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            s = e
        return out

    # ------------------------------------------------------------------ extraction

    def encode(self, batch: dict[str, Any]) -> Any:
        """The model's features of a batch of ``B`` items (e.g. several images stacked, then
        :func:`~im2hands.utils.batch.select_item` per item for :meth:`extract`)."""
        moved = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        with torch.inference_mode():
            features = self.model.encode(moved)
        self._sync()
        return features

    def extract(self, batch: dict[str, Any], features: Any = None) -> Extraction:
        """Meshes of the hands of one item.

        Args:
            batch: model inputs with a leading batch axis of 1: ``keypoints`` ``(1, 2, 21, 3)``
                (camera frame, metres, standard order), ``hand_valid`` ``(1, 2)`` bool (hands
                to extract; default both), plus what the model needs (``image``, ``K``, ground
                truth for the oracle).
            features: the item's features when already encoded (:meth:`encode`); None: encoded here.

        Returns:
            :class:`Extraction`.
        """
        t_start = time.perf_counter()
        kp = torch.as_tensor(batch["keypoints"])
        if kp.dim() != 4 or kp.shape[0] != 1 or kp.shape[1:] != (2, 21, 3):
            raise ValueError(f"expected keypoints of shape (1, 2, 21, 3), got {tuple(kp.shape)}")
        valid = torch.as_tensor(batch.get("hand_valid", torch.ones(1, 2, dtype=torch.bool))).reshape(2).cpu()
        seconds = {"encode": 0.0, "decode": 0.0, "mise": 0.0, "marching": 0.0}

        t = time.perf_counter()
        if features is None:
            features = self.encode(batch)
        seconds["encode"] = time.perf_counter() - t

        t = time.perf_counter()
        kp64 = kp[0].detach().cpu().double()  # (2, 21, 3)
        cam_to_palm = palm_frame(kp64, torch.tensor([True, False]))  # (2, 4, 4)
        palm_to_cam = invert_transform(cam_to_palm).numpy()  # (2, 4, 4)
        unit_to_cam = [grid_affine(1, palm_to_cam[h], self.box_side) for h in range(2)]  # unit coords -> camera
        segments_unit = apply_transform(cam_to_palm, kp64).numpy() / self.box_side + 0.5  # (2, 21, 3) unit coords
        mises: dict[int, MISE] = {}
        for h in range(2):
            if bool(valid[h]):
                mises[h] = MISE(
                    self.resolution0, self.upsampling_steps, self.threshold,
                    seed_segments=skeleton_segments(segments_unit[h]), seed_radius=self.seed_radius / self.box_side,
                    seed_levels=self.seed_levels, flood=self.flood,
                    start_radius=None if self.start_radius is None else self.start_radius / self.box_side,
                )  # fmt: skip
        seconds["mise"] += time.perf_counter() - t
        decoded = 0
        while True:
            t = time.perf_counter()
            queries = {h: m.query() for h, m in mises.items()}
            if not any(len(q) for q in queries.values()):
                if all(m.done for m in mises.values()):
                    seconds["mise"] += time.perf_counter() - t
                    break
                for m in mises.values():  # every hand finished this level: all go on together
                    m.advance()
                seconds["mise"] += time.perf_counter() - t
                continue
            n = max(len(q) for q in queries.values())
            if self.precision == "bfloat16":  # few distinct shapes: oneDNN keeps ~10 MB per bfloat16 shape
                n = -(-n // _LOW_PRECISION_STEP) * _LOW_PRECISION_STEP
            pts = np.empty((2, n, 3), dtype=np.float32)
            for h in range(2):
                q = queries.get(h)
                if q is None or len(q) == 0:
                    pts[h] = kp64[h, 0].numpy()  # the wrist: a harmless filler
                    continue
                A = unit_to_cam[h]
                p = q @ A[:3, :3].T + A[:3, 3]  # (M, 3) camera frame
                pts[h, : len(p)] = p
                pts[h, len(p) :] = p[np.arange(n - len(p)) % len(p)]
            points = torch.from_numpy(pts)[None].to(self.device)  # (1, 2, N, 3)
            seconds["mise"] += time.perf_counter() - t
            t = time.perf_counter()
            values = self._decode(points, features)  # (2, N)
            self._sync()
            seconds["decode"] += time.perf_counter() - t
            decoded += 2 * n
            t = time.perf_counter()
            for h, q in queries.items():
                if len(q):
                    mises[h].update(values[h, : len(q)], advance=False)
            seconds["mise"] += time.perf_counter() - t

        hands: dict[str, HandResult] = {}
        R = self.resolution
        for h, side in enumerate(SIDES):
            if h not in mises:
                hands[side] = HandResult(side, "skipped", "hand not given")
                continue
            res = mises[h].result()
            stats = dict(points_evaluated=res.points_evaluated, points_per_level=list(res.points_per_level),
                         dense_points=res.dense_points)  # fmt: skip
            t = time.perf_counter()
            try:
                mesh = extract_surface(res.values, self.threshold, grid_affine(R, palm_to_cam[h], self.box_side))
            except NoSurfaceError as exc:
                hands[side] = HandResult(side, "failed", str(exc), **stats)
                seconds["marching"] += time.perf_counter() - t
                continue
            seconds["marching"] += time.perf_counter() - t
            notes = []
            if mesh.components > 1:
                notes.append(f"kept the largest of {mesh.components} components ({mesh.dropped_faces} faces dropped)")
            if not mesh.watertight:
                notes.append("mesh is not watertight")
            hands[side] = HandResult(
                side, "ok", "; ".join(notes), vertices=mesh.vertices, faces=mesh.faces, watertight=mesh.watertight,
                components=mesh.components, dropped_faces=mesh.dropped_faces, volume_m3=mesh.volume,
                area_m2=mesh.area, **stats,
            )  # fmt: skip
        seconds["total"] = time.perf_counter() - t_start
        return Extraction(hands=hands, seconds=seconds, points_decoded=decoded, threshold=self.threshold, resolution=R)
