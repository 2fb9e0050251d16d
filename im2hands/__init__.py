"""im2hands: two interacting hands from one RGB image as implicit occupancy fields.

The package reads as the pipeline:

- ``im2hands.hands``      hand model (MANO-format files, open model builder, pose sampler, joint orders)
- ``im2hands.geometry``   pure tensor geometry: frames, canonicalization, rasterizer, inside tests
- ``im2hands.data``       synthetic two-hand generator, dataset format and torch Dataset
- ``im2hands.config``     typed YAML configs with ``inherit_from`` and ``a.b=value`` overrides
- ``im2hands.cli``        the ``im2hands`` command

Units are metres and the OpenCV camera frame (+x right, +y down, +z forward) everywhere
inside the library; millimetres appear only in reported metrics.
"""

__version__ = "0.1.0"
