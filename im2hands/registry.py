"""Name -> class registries, so configs can name implementations.

Contract of :data:`MODELS`: a registered class is an :class:`~im2hands.models.base.HandsModel`
subclass whose constructor takes keyword-only typed arguments, plus a classmethod
``from_config(cfg)`` taking the whole :class:`~im2hands.config.schema.ExperimentConfig`; that
classmethod is the only code that reads the config for the model.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of classes; ``register(name)`` is a class decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._table:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self._table[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._table:
            known = ", ".join(sorted(self._table)) or "(none)"
            raise KeyError(f"unknown {self.kind} '{name}'; known: {known}")
        return self._table[name]

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table


MODELS: Registry[type] = Registry("model")
