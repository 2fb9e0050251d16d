"""Training checkpoints: one self-describing file per snapshot, written atomically.

A checkpoint (``last.pt``, ``best.pt`` in a run folder) is a ``torch.save`` of a dict::

    format, version        "im2hands-checkpoint", CHECKPOINT_VERSION
    model                  state_dict of the (unwrapped) model (with any ``_extra_state``
                           of its modules: plain Python values, e.g. stage 2's stage-1 config)
    optimizer, scheduler   state_dicts (scheduler None when train.scheduler=none)
    scheduler_type         train.scheduler at save time
    state                  step, epoch, batch_in_epoch (batches of that epoch already done),
                           best (metric, mode, value, step), log-window accumulators
    rng                    one entry per rank: torch CPU, CUDA (this rank's device), numpy,
                           python ``random`` states
    config, config_yaml    the resolved ExperimentConfig as a plain dict and as YAML text
    world_size             number of processes that wrote it

Everything in it is a tensor, a number, a string or a container of those, so it loads with
``torch.load(weights_only=True)`` (no arbitrary pickles). Files go to a temporary name in the
run folder and are renamed into place, so a crash while saving leaves the previous file intact.
Reading them and rebuilding models: :mod:`im2hands.loading`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from im2hands.config.load import config_to_yaml

# Reading checkpoints and rebuilding models lives one layer down (the models and the extraction
# load through it too); the names stay importable from here.
from im2hands.loading import (  # noqa: F401
    BEST,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LAST,
    config_from_checkpoint,
    find_checkpoint,
    load_checkpoint,
    load_model,
)
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import atomic_path

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- RNG states


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The random states of this process (torch CPU, CUDA of ``device``, numpy, python)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    cuda = None
    if device is not None and device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device)
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [int(version), [int(v) for v in internal], gauss],
    }


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- save / load


def config_dict(cfg: Any) -> dict:
    """A config dataclass tree as a plain dict."""
    return dataclasses.asdict(cfg)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    cfg: Any,
    state: dict[str, Any],
    rng: list[dict[str, Any]],
    hand_model: str | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary name in the same folder, then rename).

    Args:
        path: destination file (``<run>/last.pt`` or ``<run>/best.pt``).
        model: the unwrapped model; optimizer, scheduler: their state is stored (either may be None).
        cfg: the resolved ExperimentConfig.
        state: loop state (step, epoch, batch_in_epoch, best, meter...).
        rng: per-rank random states (:func:`capture_rng_state`), in rank order.
        hand_model: ``model_name`` of the hand model that made the training data (stored as
            ``hand_model``; the extraction reads its keypoint convention from it).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_type": getattr(getattr(cfg, "train", None), "scheduler", None),
        "state": dict(state),
        "rng": list(rng),
        "world_size": len(rng),
        "config": config_dict(cfg),
        "config_yaml": config_to_yaml(cfg),
    }
    if hand_model is not None:
        payload["hand_model"] = str(hand_model)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.debug("wrote %s (step %s)", path, state.get("step"))
    return path


def load_init_weights(model: torch.nn.Module, run_or_file: str | os.PathLike, model_type: str) -> str:
    """Load the model weights of a run (best, else last) or checkpoint into ``model`` (strict),
    for ``train.init_weights``; ``model_type`` is this run's ``model.type``, which the
    checkpoint's must equal. Returns what was loaded, for the log.

    Raises:
        Im2HandsError: no checkpoint, another model type, or weights that do not fit.
    """
    path = find_checkpoint(run_or_file, "best")
    ckpt = load_checkpoint(path)
    theirs = (ckpt.get("config") or {}).get("model", {}).get("type")
    if theirs != model_type:
        raise Im2HandsError(f"train.init_weights: {path} holds a {theirs} model, this run trains {model_type}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise Im2HandsError(f"train.init_weights: {path} does not fit this model ({first})") from None
    step = (ckpt.get("state") or {}).get("step", (ckpt.get("weights") or {}).get("step"))
    return f"{path} (step {step})"
