"""Meshes from occupancy fields: MISE, marching cubes, the two-hand extractor and the batch job.

- :mod:`~im2hands.extraction.mise`: multiresolution isosurface extraction in a unit cube.
- :mod:`~im2hands.extraction.marching`: marching cubes -> one closed, outward mesh, checked.
- :mod:`~im2hands.extraction.extractor`: :class:`Extractor`, encode once, decode in chunks,
  both hands, camera-frame meshes.
- :mod:`~im2hands.extraction.inputs`: keypoint JSON files, image folders, dataset splits.
- :mod:`~im2hands.extraction.run`: :func:`extract_folder`, the job behind ``im2hands extract``.
- :mod:`~im2hands.extraction.oracle`: occupancy stand-ins (ground-truth meshes, keypoint
  capsules) for tests and benchmarks.
"""

from im2hands.extraction.extractor import Extraction, Extractor, HandResult
from im2hands.extraction.marching import NoSurfaceError, SurfaceMesh, extract_surface, grid_affine
from im2hands.extraction.mise import MISE, MiseResult, dense_grid, mise
from im2hands.extraction.oracle import MeshOccupancy, SkeletonOccupancy
from im2hands.extraction.run import extract_folder
from im2hands.loading import load_model

__all__ = [
    "MISE",
    "Extraction",
    "Extractor",
    "HandResult",
    "MeshOccupancy",
    "MiseResult",
    "NoSurfaceError",
    "SkeletonOccupancy",
    "SurfaceMesh",
    "dense_grid",
    "extract_folder",
    "extract_surface",
    "grid_affine",
    "load_model",
    "mise",
]
