"""Pure tensor geometry: frames, rotations, canonicalization, rasterization, inside tests.

Nothing here imports configs, models or the engine.
"""
