"""Reproducible micro-benchmarks behind the choices in ``docs/dependencies.md``.

Each module exposes a function returning a list of result rows (dicts) and a ``main()`` that
prints them as a Markdown table, so ``python -m im2hands.benchmarks.labels`` regenerates the
numbers and a future ``im2hands bench`` command can call the same functions.

- :mod:`im2hands.benchmarks.labels`  inside/outside labelling (winding number vs ray parity)
- :mod:`im2hands.benchmarks.raster`  the pure-torch rasterizer and renderer
- :mod:`im2hands.benchmarks.meshes`  synthetic closed hand-like test meshes
"""
