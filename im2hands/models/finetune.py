"""Fine-tuning third-party networks whose weights are not ours to ship.

:class:`FromOrigin` is a mixin for a stage that starts from fetched weights (MediaPipe's
networks, read from their verified ``.tflite`` files at construction): it keeps the starting
weights as non-persistent buffers, so that

- ``state_dict()`` holds the **differences** to the starting weights for the tracked
  sub-networks, and loading adds them back: checkpoints and shipped weights files contain no
  third-party weights, and float16 files keep the small differences precisely;
- :meth:`FromOrigin.origin_distance` gives the squared distance to the starting weights (the
  L2-SP penalty that holds a fine-tuned network near what it learnt from real photos).

Parameters added by the stage itself (new heads) are stored as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from im2hands.typing import Tensor

__all__ = ["FromOrigin"]


class FromOrigin:
    """Mixin for an ``nn.Module`` (module docstring): call :meth:`keep_origin` in ``__init__``
    after the sub-networks holding the fetched weights are attributes."""

    def keep_origin(self: Any, *names: str) -> None:
        """Track the current weights of the sub-modules ``names`` as the starting point."""
        self._origin_names: dict[str, str] = {}  # parameter name -> buffer of its starting value
        i = 0
        for name in names:
            for pname, p in getattr(self, name).named_parameters():
                self.register_buffer(f"_origin_{i}", p.detach().clone(), persistent=False)
                self._origin_names[f"{name}.{pname}"] = f"_origin_{i}"
                i += 1
        self.register_state_dict_post_hook(FromOrigin._to_differences)
        self.register_load_state_dict_pre_hook(FromOrigin._from_differences)

    @staticmethod
    def _to_differences(module: Any, state: dict, prefix: str, local_metadata: Any) -> None:
        for name, origin in module._origin_names.items():
            key = prefix + name
            if key in state:
                state[key] = state[key] - getattr(module, origin).to(state[key].dtype)

    @staticmethod
    def _from_differences(module: Any, state: dict, prefix: str, *args: Any) -> None:
        for name, origin in module._origin_names.items():
            key = prefix + name
            if key in state:
                start = getattr(module, origin)
                state[key] = state[key].to(start.dtype) + start

    def origin_distance(self: Any) -> Tensor:
        """Sum of squared differences of the tracked weights to their starting values."""
        params = dict(self.named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for name, origin in self._origin_names.items():
            total = total + ((params[name] - getattr(self, origin)) ** 2).sum()
        return total
