"""One reading of device names (``--device``, ``synth.device``, ``train.device``) for every job."""

from __future__ import annotations

import torch

from im2hands.utils.errors import Im2HandsError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = "cpu, cuda, cuda:N or auto"
"""What a device name may be (named in the error messages)."""


def resolve_device(
    name: str | torch.device,
    *,
    source: str = "--device",
    error: type[Exception] = Im2HandsError,
    cuda_index: int | None = None,
) -> torch.device:
    """A device name as a torch device.

    Args:
        name: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available, else the CPU);
            case and surrounding spaces are ignored.
        source: where the name came from (an option or config key), named in errors.
        error: the exception class raised (e.g. a ConfigError for config keys).
        cuda_index: the device ``cuda`` without an index means (default: the current CUDA
            device; a torchrun process passes its local rank).

    Returns:
        ``cpu``, or ``cuda:N`` with an explicit index.

    Raises:
        error: an unknown name, CUDA asked for where none is available, or an index past the
            last CUDA device; the message names ``source`` and the name.
    """
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise error(f"{source} {str(name)!r}: expected {DEVICE_CHOICES}")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise error(f"{source} {str(name)!r}: CUDA is not available here; use cpu or auto")
    index = device.index if device.index is not None else (
        torch.cuda.current_device() if cuda_index is None else cuda_index
    )
    if index >= torch.cuda.device_count():
        raise error(f"{source} {str(name)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)
