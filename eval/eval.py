#!/usr/bin/env python
"""Evaluate predicted two-hand meshes against ground truth: exactly ``im2hands eval``.

    python eval/eval.py --pred PRED_DIR --gt DATASET_OR_MESH_DIR --out OUT_DIR [--split test]

All logic lives in :mod:`im2hands.metrics.evaluator`; see eval/README.md and docs/metrics.md.
"""

import sys

from im2hands.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["eval", *sys.argv[1:]]))
