#!/usr/bin/env python
"""``python extract/extract.py ARGS`` is ``im2hands extract ARGS`` (no logic here; see README.md)."""

import sys

from im2hands.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["extract", *sys.argv[1:]]))
