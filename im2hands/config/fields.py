"""Field helpers of the config schemas: declared ranges and choices (checked by
:func:`im2hands.config.load.check_ranges`)."""

from __future__ import annotations

from dataclasses import field


def _range(default, lo=None, hi=None):
    return field(default=default, metadata={"range": (lo, hi)})


def _choice(default, *choices):
    return field(default=default, metadata={"choices": (default, *choices)})


def _list_range(default, lo=None, hi=None, ascending=False):
    """A list key whose every element lies in [lo, hi]; ``ascending``: a (low, high) pair."""
    return field(
        default_factory=lambda: list(default),
        metadata={"range": (lo, hi), "ascending": ascending},
    )
