"""Distributed set-up for ``torchrun`` (DistributedDataParallel), and no-ops for one process.

``torchrun --nproc_per_node N -m im2hands train CONFIG`` starts N processes and sets the
environment variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them and joins the process group (NCCL on
CUDA, gloo on CPU). Without them (or with ``WORLD_SIZE=1``) everything here is a no-op, so the
trainer has one code path.

Every helper below is a *collective*: each rank must call it at the same point of the program.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from im2hands.models.base import HandsModel
from im2hands.utils.errors import Im2HandsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    """Global rank (0 for a single process)."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this machine (selects the GPU)."""
    backend: str | None = None
    """``nccl`` or ``gloo`` when distributed, else None."""
    owns_group: bool = False
    """Whether :func:`init_distributed` created the process group (and must destroy it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Im2HandsError(f"environment variable {name}={raw!r} is not an integer") from None


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (``(0, 1, 0)`` without)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise Im2HandsError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group described by the environment, if any.

    Args:
        use_cuda: the job trains on CUDA (NCCL backend, one GPU per local rank); else gloo.

    Returns:
        The :class:`DistInfo` of this process. Ranks other than 0 lower the ``im2hands``
        loggers to WARNING, so only rank 0 prints progress.
    """
    rank, world, local = env_world()
    if world == 1:
        return DistInfo()
    if dist.is_initialized():  # set up by the caller: use it, do not destroy it
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), False)
    else:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:
            raise Im2HandsError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                "(torchrun --nproc_per_node N -m im2hands train CONFIG)"
            )
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            if local >= torch.cuda.device_count():
                raise Im2HandsError(
                    f"LOCAL_RANK {local} needs a GPU but only {torch.cuda.device_count()} are visible"
                )
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        info = DistInfo(rank, world, local, backend, True)
    if not info.is_main:
        logging.getLogger("im2hands").setLevel(logging.WARNING)
    log.info("distributed: rank %d of %d (%s)", info.rank, info.world_size, info.backend)
    return info


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not info.enabled:
        return obj
    box = [obj if info.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (a MAX all-reduce)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` itself for one process, else a DistributedDataParallel around it.

    DDP skips parameters with ``requires_grad=False`` (frozen sub-models need nothing special).
    A model whose forward leaves some *trainable* parameters unused in some steps must set
    the class attribute ``find_unused_parameters = True`` (it costs an extra graph traversal
    per step, so it is off by default).
    """
    if not info.enabled:
        return model
    find_unused = isinstance(model, HandsModel) and model.find_unused_parameters
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
