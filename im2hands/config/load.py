"""YAML configs: ``inherit_from`` composition, ``a.b=value`` overrides, validation.

Order of precedence (later wins): schema defaults < the ``inherit_from`` chain (a path or a
list, resolved relative to the file that names it, bases merged in list order) < the file
itself < command-line overrides. Unknown keys, wrong types and out-of-range values raise
:class:`~im2hands.utils.errors.ConfigError` naming the file (or override) and the key.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from im2hands.config.schema import ExperimentConfig
from im2hands.utils.errors import ConfigError
from im2hands.utils.io import write_text

INHERIT_KEY = "inherit_from"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The files to merge for ``path``, bases first, each with its own keys (no inherit_from)."""
    path = path.resolve()
    if path in seen:
        cycle = " -> ".join(str(p) for p in seen + (path,))
        raise ConfigError(f"{path}: inherit_from cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(INHERIT_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{path}: '{INHERIT_KEY}' must be a path or a list of paths")
    out: list[tuple[Path, dict]] = []
    for base in bases:
        base_path = path.parent / os.path.expanduser(base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: {INHERIT_KEY} '{base}' not found (looked for {base_path.resolve()})")
        out.extend(_chain(base_path, seen + (path,)))
    out.append((path, data))
    return out


def _merge(cfg: DictConfig, data: Any, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{where}: bad config key '{key}': {msg}") from None


def parse_override(text: str) -> dict:
    """Turn ``"a.b=value"`` into ``{"a": {"b": value}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected the form key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"override '{text}': '{key}' is not a dotted key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML: {exc}") from None
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for any field outside its declared ``range`` (every element of a
    list key), ``choices`` or ``ascending`` (a ``[low, high]`` pair) metadata."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        bounds = f.metadata.get("range")
        if bounds is not None and value is not None:
            lo, hi = bounds
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in items):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                what = "has a value" if isinstance(value, (list, tuple)) else "is"
                raise ConfigError(f"config key '{key}' = {value} {what} out of range [{lo_s}, {hi_s}]")
        if f.metadata.get("ascending") and value is not None:
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"config key '{key}' = {value} must be a pair [low, high] with low <= high")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"config key '{key}' = {value!r} is not one of {', '.join(map(str, choices))}")
        check_ranges(value, prefix=f"{key}.")


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    schema: type = ExperimentConfig,
):
    """Resolve a config file (or the schema defaults when ``path`` is None).

    Args:
        path: YAML file; ``inherit_from`` entries are resolved relative to it.
        overrides: ``"a.b=value"`` strings applied last.
        schema: the dataclass describing valid keys and types.

    Returns:
        An instance of ``schema`` (a plain dataclass tree) holding the resolved values.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        for file, data in _chain(Path(path)):
            cfg = _merge(cfg, data, str(file))
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), f"override '{text}'")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path or 'config'}: {str(exc).splitlines()[0]}") from None
    check_ranges(obj)
    return obj


def config_to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (every key, defaults included)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, out_dir: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write the resolved config into ``out_dir`` atomically; returns the file path."""
    path = Path(out_dir) / name
    write_text(path, config_to_yaml(cfg))
    return path


def split_overrides(args: Iterable[str]) -> list[str]:
    """Keep the ``a.b=value`` items of a command line (helper for the CLI)."""
    return [a for a in args if "=" in a]
