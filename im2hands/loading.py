"""Checkpoint and weights files, and the one way to rebuild a model from them.

This module sits below the models, the engine and the extraction: all three load through it
(stage 2 its frozen stage 1, the trainer its ``train.init_weights``, ``im2hands extract`` its
occupancy model, estimator and refiner). The engine writes the files
(:func:`im2hands.engine.checkpoint.save_checkpoint`, :func:`im2hands.engine.weights.export_weights`).

A checkpoint (``last.pt``, ``best.pt`` in a run folder, or a shipped weights file) is a
``torch.save`` of a dict with at least::

    format, version        "im2hands-checkpoint", CHECKPOINT_VERSION
    model                  state_dict of the model (with any ``_extra_state`` of its modules)
    config, config_yaml    the resolved ExperimentConfig as a plain dict and as YAML text
    hand_model             (optional) the ``model_name`` of the hand model that made the
                           training data; absent: version 1 (older checkpoints)

(training checkpoints add the optimizer, scheduler, loop and RNG states; weights files add
``weights``). Everything in it is a tensor, a number, a string or a container of those, so it
loads with ``torch.load(weights_only=True)``.

A model is rebuilt as ``MODELS.get(cfg.model.type).from_checkpoint(cfg, state_dict)`` (which is
``from_config(cfg)`` unless the class needs more, see
:meth:`~im2hands.models.base.HandsModel.from_checkpoint`), then the weights are loaded strictly.
The registry is filled by importing the modules of ``im2hands.models`` on a miss.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle
import pkgutil
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from im2hands.config.load import check_ranges, config_to_yaml
from im2hands.config.schema import ExperimentConfig
from im2hands.hands.conventions import convention_of
from im2hands.registry import MODELS
from im2hands.typing import Tensor
from im2hands.utils.errors import ConfigError, Im2HandsError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "LAST",
    "BEST",
    "WEIGHTS_DIR",
    "MANIFEST",
    "SHIPPED",
    "find_checkpoint",
    "load_checkpoint",
    "config_from_checkpoint",
    "model_class",
    "load_model",
    "build_from_stored_config",
    "load_frozen",
    "trained_hand_model",
    "load_state_file",
    "shipped_path",
    "read_manifest",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "im2hands-checkpoint"
CHECKPOINT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"

WEIGHTS_DIR = Path(__file__).resolve().parent / "assets" / "weights"
"""Folder of the shipped weights files and their ``MANIFEST.json``."""
MANIFEST = "MANIFEST.json"
SHIPPED: dict[str, str] = {
    "estimator": "kpts_est.pt",
    "refiner": "kpts_ref.pt",
    "model": "ref_occ.pt",
    "init_occ": "init_occ.pt",
    "keypoint_only": "init_occ_halo.pt",
    "crop_net": "crop_net.pt",
    "hand_det": "hand_det.pt",
}
"""Role -> file name: ``estimator`` (images -> keypoints), ``refiner`` (stage 3), ``model`` (stage 2
with its frozen stage 1 inside: what ``im2hands extract`` uses with images), ``init_occ``
(stage 1 with the image), ``keypoint_only`` (stage 1 without the image: ``extract`` from
keypoint files alone), ``crop_net`` (MediaPipe's landmark network fine-tuned on our renders: the
keypoints of the default image path; the file holds only the changes to MediaPipe's weights),
``hand_det`` (MediaPipe's palm detector fine-tuned here with a side head: finds the hands of the
default image path; the detector's weights again as changes only)."""

_import_failures: dict[str, str] = {}


# --------------------------------------------------------------------------- files


def find_checkpoint(run_or_file: str | os.PathLike, which: str = "best", source: str | None = None) -> Path:
    """A checkpoint file from a run folder (``which``: ``best`` or ``last``) or a file path.

    ``best`` falls back to ``last`` when a run has no best checkpoint yet. ``source`` (a config
    key or option) is named in the message when nothing is there.
    """
    p = Path(run_or_file).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        if source is not None:
            raise Im2HandsError(f"{source}: run folder or checkpoint file not found: {p}")
        raise Im2HandsError(f"no run folder or checkpoint file at {p}")
    names = {"best": [BEST, LAST], "last": [LAST]}.get(which)
    if names is None:
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    for name in names:
        if (p / name).is_file():
            return p / name
    raise Im2HandsError(f"{p}: no {' or '.join(names)} (is this a training run folder?)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint (:func:`im2hands.engine.checkpoint.save_checkpoint`) or weights file.

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
        best = path.with_name(BEST)
        hint = (f"; {best} is there: copy it over {LAST} to resume from the best validation's step (the steps "
                "after it are run again)") if path.name == LAST and best.is_file() else ""
        raise Im2HandsError(f"{path}: unreadable checkpoint ({first}){hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise Im2HandsError(f"{path}: not an im2hands checkpoint")
    if int(ckpt.get("version", -1)) > CHECKPOINT_VERSION:
        raise Im2HandsError(
            f"{path}: checkpoint version {ckpt.get('version')} is newer than this toolkit's {CHECKPOINT_VERSION}"
        )
    return ckpt


def _stored_config(config: Mapping[str, Any] | str, source: str, schema: type = ExperimentConfig) -> Any:
    try:
        raw = OmegaConf.create(config) if isinstance(config, str) else config
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except OmegaConfBaseException as exc:
        raise Im2HandsError(f"{source} does not match this toolkit's schema: {exc}") from None
    check_ranges(cfg)
    return cfg


def config_from_checkpoint(ckpt: dict[str, Any], schema: type = ExperimentConfig) -> Any:
    """Rebuild the resolved config stored in a checkpoint (validated against the schema)."""
    if "config" not in ckpt:
        raise Im2HandsError("checkpoint holds no config")
    return _stored_config(ckpt["config"], "checkpoint config", schema)


# --------------------------------------------------------------------------- models


def _import_model_modules() -> None:
    """Import every module of ``im2hands.models`` so their ``@MODELS.register`` lines run.

    A module that fails to import is remembered (and named in the unknown-type error) rather
    than breaking models that do import.
    """
    pkg = importlib.import_module("im2hands.models")
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        if info.name in _import_failures:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - reported with the unknown-type error below
            _import_failures[info.name] = f"{type(exc).__name__}: {exc}"
            log.debug("could not import %s: %s", info.name, exc)


def model_class(cfg: Any) -> type:
    """The registered class named by ``model.type`` (imports the model modules on a miss).

    Raises:
        ConfigError: unknown name; the message lists the registered names.
    """
    name = cfg.model.type
    if name not in MODELS:
        _import_model_modules()
    if name not in MODELS:
        known = ", ".join(MODELS.names()) or "(none)"
        msg = f"model.type '{name}' is not a registered model; known: {known}"
        if _import_failures:
            msg += "; modules that failed to import: " + "; ".join(f"{k} ({v})" for k, v in _import_failures.items())
        raise ConfigError(msg)
    return MODELS.get(name)


def _check_stage(cls: type, cfg: Any, stage: str | None, where: str) -> None:
    if stage is not None and cls.stage != stage:
        raise Im2HandsError(f"{where}: a '{cfg.model.type}' model where a {stage} one is needed")


def trained_hand_model(ckpt: Mapping[str, Any]) -> str | None:
    """The ``model_name`` of the hand model whose data trained a checkpoint (None: not recorded,
    i.e. version 1; :func:`im2hands.hands.conventions.convention_of` reads None so)."""
    name = ckpt.get("hand_model")
    return None if name is None else str(name)


def load_model(
    run_or_file: str | os.PathLike,
    which: str = "best",
    device: str | torch.device = "cpu",
    *,
    occupancy: bool = False,
    stage: str | None = None,
    source: str | None = None,
):
    """Rebuild a trained model from a run folder or checkpoint alone (config from the file).

    Args:
        run_or_file: training run folder (its ``best.pt``, else ``last.pt``; ``which="last"``:
            ``last.pt``), or a checkpoint or weights file.
        device: where the model goes.
        occupancy: require a model that decodes occupancy (one that can make meshes).
        stage: require this ``stage`` (e.g. ``init_occ``).
        source: the config key or option that named the path, for messages.

    Returns:
        ``(model, cfg)``: the model in eval mode on ``device`` (its ``keypoint_convention``
        that of the checkpoint's recorded hand model), and its ExperimentConfig.

    Raises:
        Im2HandsError: nothing there, an unreadable or foreign file, weights that do not fit
            the stored config, or a model that is not what was asked for.
    """
    path = find_checkpoint(run_or_file, which, source=source)
    ckpt = load_checkpoint(path)
    cfg = config_from_checkpoint(ckpt)
    cls = model_class(cfg)
    where = f"{source}={run_or_file}" if source is not None else str(run_or_file)
    _check_stage(cls, cfg, stage, where)
    if occupancy and not cls.decodes_occupancy:
        raise Im2HandsError(
            f"{run_or_file}: model.type '{cfg.model.type}' does not decode occupancy, so it cannot "
            "make meshes; pass a run of an occupancy stage (init_occ, ref_occ)"
        )
    model = cls.from_checkpoint(cfg, ckpt["model"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise Im2HandsError(f"{path}: weights do not match its config: {str(exc).splitlines()[0]}") from None
    model.keypoint_convention = convention_of(trained_hand_model(ckpt))
    return model.to(device).eval(), cfg


def build_from_stored_config(config: Mapping[str, Any] | str, *, source: str, stage: str | None = None):
    """An untrained model of the architecture a stored config describes (its weights are to be
    loaded from a checkpoint, so ``model.encoder.weights`` is ignored).

    Args:
        config: a resolved ExperimentConfig as a plain dict (a checkpoint's ``config``) or YAML
            text (what a stage-2 checkpoint stores for its stage 1).
        source: where the config came from, for messages.
        stage: require this ``stage``.

    Returns:
        ``(model in eval mode on the CPU, the config as YAML text)``.
    """
    cfg = _stored_config(config, f"{source}: stored config")
    cls = model_class(cfg)
    _check_stage(cls, cfg, stage, source)
    cfg.model.encoder.weights = None
    return cls.from_config(cfg).eval(), config_to_yaml(cfg)


def load_frozen(run_or_file: str | os.PathLike, *, source: str, stage: str | None = None):
    """A trained model to be used frozen inside another (stage 2's stage 1, stage 1's
    ``init_decoders``): built from the config stored in the checkpoint with
    :func:`build_from_stored_config`, weights loaded strictly.

    Returns:
        ``(model in eval mode on the CPU, its config as YAML text)``.
    """
    path = find_checkpoint(run_or_file, "best", source=source)
    ckpt = load_checkpoint(path)
    if "config" not in ckpt:
        raise Im2HandsError(f"{path}: not an im2hands training checkpoint (no config)")
    model, config_yaml = build_from_stored_config(ckpt["config"], source=str(path), stage=stage)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise Im2HandsError(f"{path}: weights do not match its config: {str(exc).splitlines()[0]}") from None
    return model, config_yaml


# --------------------------------------------------------------------------- plain state dicts


def load_state_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict saved with ``torch.save`` (plain, or under a ``state_dict``/``model`` key).

    Raises:
        Im2HandsError: the file is missing or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise Im2HandsError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable / not a torch file
        raise Im2HandsError(f"{path}: cannot read weights: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Im2HandsError(f"{path}: expected a state dict of tensors")
    return state


# --------------------------------------------------------------------------- shipped weights


def shipped_path(role: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """The shipped weights file of ``role`` (a key of :data:`SHIPPED`).

    Raises:
        Im2HandsError: unknown role, or the file is missing (an installation without weights).
    """
    if role not in SHIPPED:
        raise Im2HandsError(f"unknown weights role {role!r}; known: {', '.join(SHIPPED)}")
    path = Path(weights_dir or WEIGHTS_DIR) / SHIPPED[role]
    if not path.is_file():
        raise Im2HandsError(
            f"the shipped {role} weights are missing ({path}); reinstall the package, or pass a training run "
            "folder or checkpoint instead"
        )
    return path


def read_manifest(weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``MANIFEST.json`` of the shipped weights (empty dict when there is none)."""
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Im2HandsError(f"{path}: unreadable weights manifest ({exc})") from None
