"""Benchmarks: reproducible micro-benchmarks behind the choices in ``docs/dependencies.md`` and
the ``im2hands bench`` suite (``docs/benchmarks.md``).

The micro-benchmark modules each expose a function returning their measurements and a
``main()`` that prints them as a Markdown table (``python -m im2hands.benchmarks.labels``
regenerates the numbers); the suite calls the same functions.

- :mod:`im2hands.benchmarks.suite`    ``im2hands bench``: decoder throughput, MISE queries,
  two-hand extraction time, evaluation time, synthetic-data rate, peak memory; targets
- :mod:`im2hands.benchmarks.decoder`  stage-1 decoder throughput (hand-points per second)
- :mod:`im2hands.benchmarks.labels`   inside/outside labelling (winding number vs ray parity)
- :mod:`im2hands.benchmarks.raster`   the pure-torch rasterizer and renderer
- :mod:`im2hands.benchmarks.meshes`   synthetic closed hand-like test meshes
"""
