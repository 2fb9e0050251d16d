"""Typed config schemas: one dataclass per component, nested into :class:`ExperimentConfig`.

Every field has a default, a type OmegaConf checks, and a docstring on the line below it
giving its meaning and units. Ranges are declared with ``field(metadata={"range": (lo, hi)})``
(inclusive; ``None`` for an open end) and checked by :func:`im2hands.config.load.check_ranges`.

Config files (YAML) hold only differences from these defaults; see ``docs/architecture.md`` for
where each section is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


def _range(default, lo=None, hi=None):
    return field(default=default, metadata={"range": (lo, hi)})


@dataclass
class HandModelConfig:
    """Which MANO-format hand model files to use."""

    mano_dir: Optional[str] = None
    """Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (licensed MANO or converted copies).
    None: the environment variable IM2HANDS_MANO_DIR, else the open hand model shipped with
    the package."""


@dataclass
class SynthConfig:
    """Synthetic two-hand data generation (``im2hands data synth``)."""

    image_size: int = _range(256, 16, 4096)
    """Side of the square RGB image, pixels."""
    focal_range: List[float] = field(default_factory=lambda: [450.0, 650.0])
    """Focal length range in pixels for a 256-pixel image (scaled with image_size)."""
    fill_range: List[float] = field(default_factory=lambda: [0.7, 0.9])
    """Fraction of the image side covered by the two hands' bounding box (IntagHand crops at
    0.8); the camera distance follows from it and the focal length."""
    center_jitter: float = _range(0.05, 0.0, 0.5)
    """Largest shift of the hands' box centre from the image centre, as a fraction of the side."""
    val_every: int = _range(20, 2, None)
    """Every val_every-th sample (index % val_every == 1) goes to the val split."""
    test_every: int = _range(20, 2, None)
    """Every test_every-th sample (index % test_every == 0) goes to the test split."""
    interaction_ratio: float = _range(0.85, 0.0, 1.0)
    """Fraction of samples posed from a named two-hand interaction template; the rest use two
    independent random single-hand poses placed near each other."""
    shape_std: float = _range(1.0, 0.0, 3.0)
    """Standard deviation of the sampled shape coefficients (betas); clipped to +-3."""
    max_penetration_cm3: float = _range(0.5, 0.0, None)
    """Largest allowed interpenetration volume of the two hands, cm^3; more is rejected."""
    max_tries: int = _range(20, 1, None)
    """Attempts at a placement before a sample's poses are redrawn."""


@dataclass
class DataConfig:
    """Dataset loading (the torch Dataset) and on-the-fly occupancy sampling."""

    root: Optional[str] = None
    """Dataset folder (the toolkit's format, docs/data_format.md). Required to train."""
    split: str = "train"
    """Split name: a file ``splits/<split>.txt`` in root, or ``all``."""
    num_points: int = _range(2048, 1, None)
    """Occupancy query points per hand and sample."""
    uniform_ratio: float = _range(0.5, 0.0, 1.0)
    """Fraction of query points uniform in the hand's box; the rest are near the surface."""
    box_side: float = _range(0.44, 0.0, None)
    """Side of each hand's query cube in its palm frame, metres (HALO: 1.1 x 0.4 m)."""
    surface_sigma: float = _range(0.004, 0.0, None)
    """Standard deviation of the noise added to surface samples, metres (HALO: 4 mm)."""
    seed: int = 0
    """Seed for occupancy sampling; each item draws from (seed, epoch, index)."""


@dataclass
class ExperimentConfig:
    """The whole resolved config of one job; written as config.yaml into every output folder."""

    name: str = "default"
    """Experiment name (used in output folder names)."""
    seed: int = 0
    """Global random seed."""
    hand_model: HandModelConfig = field(default_factory=HandModelConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
