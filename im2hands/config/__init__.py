"""Typed YAML configs: schemas, ``inherit_from`` composition and command-line overrides."""

from im2hands.config.load import config_to_yaml, load_config, parse_override, save_config
from im2hands.config.schema import DataConfig, ExperimentConfig, HandModelConfig, SynthConfig

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "HandModelConfig",
    "SynthConfig",
    "config_to_yaml",
    "load_config",
    "parse_override",
    "save_config",
]
