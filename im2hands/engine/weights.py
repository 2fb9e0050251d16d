"""Shipped weights: compact inference checkpoints, and where the toolkit finds its own.

A *weights file* is a checkpoint (:mod:`im2hands.engine.checkpoint`, same ``format`` and
``version``, so :func:`~im2hands.loading.load_model` reads it) without the training
state: ``model`` (floating tensors stored as ``float16`` by default; they are cast back to the
model's ``float32`` parameters when loaded), ``config`` and ``config_yaml``, and one more entry::

    weights    {"source": run folder or file exported, "step": training step,
                "best": {"metric", "value", "step"} or None, "dtype": "float16" | "float32"}

The toolkit ships one weights file per role in ``im2hands/assets/weights``
(:data:`~im2hands.loading.SHIPPED`, found with :func:`~im2hands.loading.shipped_path`),
with ``MANIFEST.json`` beside them: per file its size, SHA-256, the run it came from and the
command that trained it, and the held-out numbers that ``im2hands weights check`` measured
with them (``tests/test_demo.py`` reproduces those on a small fixed subset).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from im2hands.loading import (  # noqa: F401 - the shipped files are found by the loading layer; names kept here
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    MANIFEST,
    SHIPPED,
    WEIGHTS_DIR,
    find_checkpoint,
    load_checkpoint,
    read_manifest,
    shipped_path,
)
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import atomic_path

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def export_weights(run_or_file: str | os.PathLike, out: str | os.PathLike, dtype: str = "float16",
                   trained_with: str | None = None) -> dict[str, Any]:
    """Write the inference-only weights of a run (its best, else last checkpoint) or checkpoint.

    Args:
        run_or_file: training run folder or checkpoint file.
        out: destination ``.pt`` file (written atomically).
        dtype: ``float16`` (half the size; the networks are evaluated in float32 after loading)
            or ``float32`` (exact).
        trained_with: the command that trained the run; given, the file's entry in the
            ``MANIFEST.json`` beside ``out`` is (re)written (size, SHA-256, source, step, best,
            dtype, this command).

    Returns:
        The ``weights`` entry written, plus ``path`` and ``bytes``.

    Raises:
        Im2HandsError: no checkpoint there, or a value that ``float16`` cannot hold.
    """
    if dtype not in DTYPES:
        raise Im2HandsError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    src = find_checkpoint(run_or_file, "best")
    ckpt = load_checkpoint(src)
    target = DTYPES[dtype]
    limit = torch.finfo(target).max
    model: dict[str, Any] = {}
    for key, value in ckpt["model"].items():
        if torch.is_tensor(value) and value.is_floating_point():
            if value.numel() and value.detach().abs().max().item() > limit:
                raise Im2HandsError(f"{src}: {key} holds values beyond {dtype}'s range; export with --dtype float32")
            value = value.detach().to(target).clone()
        model[key] = value
    state = ckpt.get("state") or {}
    best = state.get("best") if isinstance(state.get("best"), dict) else None
    info = {"source": str(src), "step": state.get("step"), "best": best, "dtype": dtype}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model,
        "config": ckpt["config"],
        "config_yaml": ckpt["config_yaml"],
        "weights": info,
    }
    if ckpt.get("hand_model") is not None:  # the training data's hand model (its keypoint convention)
        payload["hand_model"] = str(ckpt["hand_model"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    entry = {**info, "bytes": out.stat().st_size, "sha256": sha256(out)}
    if trained_with is not None:
        manifest = read_manifest(out.parent)
        manifest.setdefault("files", {})[out.name] = {**entry, "trained_with": trained_with}
        write_manifest(manifest, out.parent)
    return {**entry, "path": str(out)}


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(manifest: dict[str, Any], weights_dir: str | os.PathLike | None = None, *,
                   path: str | os.PathLike | None = None) -> Path:
    """Write ``MANIFEST.json`` (atomically) into ``weights_dir`` (default: the shipped folder),
    or to the file ``path`` when given."""
    path = Path(path) if path is not None else Path(weights_dir or WEIGHTS_DIR) / MANIFEST
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
