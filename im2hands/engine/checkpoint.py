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
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from im2hands.config.load import check_ranges, config_to_yaml
from im2hands.config.schema import ExperimentConfig
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "im2hands-checkpoint"
CHECKPOINT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


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
) -> Path:
    """Write a checkpoint atomically (temporary name in the same folder, then rename).

    Args:
        path: destination file (``<run>/last.pt`` or ``<run>/best.pt``).
        model: the unwrapped model; optimizer, scheduler: their state is stored (either may be None).
        cfg: the resolved ExperimentConfig.
        state: loop state (step, epoch, batch_in_epoch, best, meter...).
        rng: per-rank random states (:func:`capture_rng_state`), in rank order.

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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.debug("wrote %s (step %s)", path, state.get("step"))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Raises:
        Im2HandsError: missing, unreadable, foreign or too new a file.
    """
    path = Path(path)
    if not path.is_file():
        raise Im2HandsError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Im2HandsError(f"{path}: unreadable checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise Im2HandsError(f"{path}: not an im2hands checkpoint")
    if int(ckpt.get("version", -1)) > CHECKPOINT_VERSION:
        raise Im2HandsError(
            f"{path}: checkpoint version {ckpt.get('version')} is newer than this toolkit's {CHECKPOINT_VERSION}"
        )
    return ckpt


def config_from_checkpoint(ckpt: dict[str, Any], schema: type = ExperimentConfig) -> Any:
    """Rebuild the resolved config stored in a checkpoint (validated against the schema)."""
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), ckpt["config"]))
    except (OmegaConfBaseException, KeyError) as exc:
        raise Im2HandsError(f"checkpoint config does not match this toolkit's schema: {exc}") from None
    check_ranges(cfg)
    return cfg


def find_checkpoint(run_or_file: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint file from a run folder (``which``: ``best`` or ``last``) or a file path.

    ``best`` falls back to ``last`` when a run has no best checkpoint yet.
    """
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        raise Im2HandsError(f"no run folder or checkpoint file at {p}")
    names = {"best": [BEST, LAST], "last": [LAST]}.get(which)
    if names is None:
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    for name in names:
        if (p / name).is_file():
            return p / name
    raise Im2HandsError(f"{p}: no {' or '.join(names)} (is this a training run folder?)")


def load_model(run_or_file: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a trained model from a run folder or checkpoint alone (config from the file).

    The model is built with its class's ``from_config(cfg)``, or with
    ``from_checkpoint(cfg, state_dict)`` where the class defines one: a model whose architecture
    needs more than its own config (stage 2 reads its frozen stage 1's config from the state_dict
    instead of the stage-1 run). The weights are then loaded strictly.

    Returns:
        ``(model, cfg)``: the model in eval mode on ``device``, and its ExperimentConfig.
    """
    from im2hands.engine.builders import model_class

    ckpt = load_checkpoint(find_checkpoint(run_or_file, which))
    cfg = config_from_checkpoint(ckpt)
    cls = model_class(cfg)
    from_checkpoint = getattr(cls, "from_checkpoint", None)
    model = from_checkpoint(cfg, ckpt["model"]) if from_checkpoint is not None else cls.from_config(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


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
