"""Training: the one loop for every stage, checkpoints, metrics logging, torchrun set-up, and
the builders that turn a config into objects. See ``docs/training.md``."""

from im2hands.engine.builders import (
    build_datasets,
    build_device,
    build_loaders,
    build_model,
    build_optimizer,
    build_scheduler,
    resolve_data_root,
)
from im2hands.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from im2hands.engine.trainer import TrainResult, load_train_config, train

__all__ = [
    "TrainResult",
    "build_datasets",
    "build_device",
    "build_loaders",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "load_checkpoint",
    "load_model",
    "load_train_config",
    "resolve_data_root",
    "save_checkpoint",
    "train",
]
