"""The one place that turns an :class:`~im2hands.config.schema.ExperimentConfig` into objects.

Model (through the registry and the class's ``from_config``), datasets, data loaders,
optimizer, learning-rate schedule and device. The trainer and the tools call these and never
read config sections themselves.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from im2hands.data.dataset import ALL_FIELDS, HandsDataset
from im2hands.loading import model_class
from im2hands.utils.device import resolve_device
from im2hands.utils.errors import ConfigError, DataError, Im2HandsError

log = logging.getLogger(__name__)

DATA_ENV = "IM2HANDS_DATA"
"""Environment variable naming the dataset folder when ``data.root`` is None."""
VAL_SEED = 20230228
"""Seed of the fixed validation occupancy points (the same for every run and config)."""
SCHEDULERS = ("none", "step", "cosine")


# --------------------------------------------------------------------------- data generators


def synth_arguments(cfg: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`~im2hands.data.synthetic.synthesize` from a config: its
    ``synth`` section (the generator's settings) and ``hand_model.mano_dir``."""
    return {"settings": cfg.synth, "mano_dir": cfg.hand_model.mano_dir}


# --------------------------------------------------------------------------- model


def build_model(cfg: Any):
    """``MODELS.get(cfg.model.type).from_config(cfg)`` (on the CPU; the trainer moves it)."""
    return model_class(cfg).from_config(cfg)


def build_batch_transform(cfg: Any):
    """The transform the trainer applies to every batch before ``forward``
    (:mod:`im2hands.data.transforms`), or None: ``kpts_est`` with ``model.kpts_est.augment``
    gets its training augmentation, ``kpts_ref`` its keypoint noise (``model.kpts_ref.noise``),
    ``crop_net`` its per-hand crops (:class:`~im2hands.data.crop_batch.HandCropBatch`), ``hand_det``
    its augmented, letterboxed whole images (:class:`~im2hands.data.det_batch.HandDetBatch`)."""
    from im2hands.data.augment import Augment
    from im2hands.data.keypoint_noise import KeypointNoise
    from im2hands.data.transforms import AugmentBatch, NoisyKeypoints

    name = cfg.model.type
    if name == "crop_net":
        from im2hands.data.crop_batch import HandCropBatch
        from im2hands.models.mediapipe.hand_landmark import CROP_SIZE

        cc = cfg.model.crop_net
        appearance = Augment(color=cc.aug_color, hue=cc.aug_hue, blur_prob=cc.aug_blur_prob, noise_std=cc.aug_noise_std)
        return HandCropBatch(
            size=CROP_SIZE, crop_scale=cc.crop_scale, scale_range=tuple(cc.aug_scale_range),
            rotation_deg=cc.aug_rotation_deg, shift=cc.aug_shift, appearance=appearance,
            negative_ratio=cc.negative_ratio,
        )  # fmt: skip
    if name == "hand_det":
        from im2hands.data.det_batch import HandDetBatch
        from im2hands.models.mediapipe.palm import INPUT_SIZE

        hc = cfg.model.hand_det
        return HandDetBatch(size=INPUT_SIZE, flip_prob=hc.aug_flip_prob, augment=Augment(
            scale_range=tuple(hc.aug_scale_range), rotation_deg=hc.aug_rotation_deg, translate=hc.aug_translate,
            color=hc.aug_color, hue=hc.aug_hue, blur_prob=hc.aug_blur_prob, noise_std=hc.aug_noise_std,
            erase_prob=hc.aug_erase_prob,
        ))  # fmt: skip
    if name == "kpts_est" and cfg.model.kpts_est.augment:
        kc = cfg.model.kpts_est
        return AugmentBatch(Augment(
            scale_range=tuple(kc.aug_scale_range), rotation_deg=kc.aug_rotation_deg, translate=kc.aug_translate,
            truncation_prob=kc.aug_truncation_prob, truncation_range=tuple(kc.aug_truncation_range),
            color=kc.aug_color, hue=kc.aug_hue, blur_prob=kc.aug_blur_prob, blur_sigma=tuple(kc.aug_blur_sigma),
            noise_std=kc.aug_noise_std, erase_prob=kc.aug_erase_prob,
        ))  # fmt: skip
    if name == "kpts_ref":
        nc = cfg.model.kpts_ref.noise
        noise = KeypointNoise(
            jitter_mm=nc.jitter_mm, tip_growth=nc.tip_growth, depth_bias_mm=nc.depth_bias_mm,
            depth_along_rays=nc.depth_along_rays, swap_prob=nc.swap_prob, finger_drift_prob=nc.finger_drift_prob,
            finger_drift_mm=nc.finger_drift_mm, scale_std=nc.scale_std,
        )  # fmt: skip
        return NoisyKeypoints(noise, val_seed=nc.val_seed)
    return None


def build_device(cfg: Any, local_rank: int = 0) -> torch.device:
    """``train.device`` as a torch device: ``auto`` is CUDA when available (one GPU per local
    rank under torchrun), else CPU.

    Raises:
        ConfigError: CUDA requested but not available, or an unknown device name.
    """
    return resolve_device(cfg.train.device, source="train.device", error=ConfigError, cuda_index=local_rank)


# --------------------------------------------------------------------------- data


def resolve_data_root(cfg: Any) -> Path:
    """``data.root``, else the ``IM2HANDS_DATA`` environment variable; must be a dataset folder.

    Raises:
        Im2HandsError: neither is set, or the folder does not exist.
    """
    root = cfg.data.root or os.environ.get(DATA_ENV)
    if not root:
        raise Im2HandsError(
            f"no dataset folder: pass data.root=DIR on the command line or set {DATA_ENV} "
            "(make one with `im2hands data synth`)"
        )
    path = Path(os.path.expanduser(str(root)))
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path} (from {'data.root' if cfg.data.root else DATA_ENV})")
    return path


def data_fields(cfg: Any) -> tuple[str, ...]:
    """Dataset fields the model needs: its class attribute ``data_fields``, else (None) all."""
    fields = model_class(cfg).data_fields
    return tuple(fields) if fields else ALL_FIELDS


def build_datasets(cfg: Any, *, fields: Sequence[str] | None = None) -> tuple[HandsDataset, Subset]:
    """The training dataset and the fixed validation set.

    Training: split ``data.split`` with the ``data`` sampling settings (new occupancy points
    every epoch). Validation: the first ``train.val_samples`` items of ``train.val_split``
    with ``train.val_points`` uniform points per hand (``uniform_ratio=1``), seed
    :data:`VAL_SEED` and epoch 0, so every validation (and every run) scores the same
    points: the fixed uniform IoU sets.

    Args:
        cfg: the resolved config (``data.root`` or ``IM2HANDS_DATA`` must name the folder).
        fields: dataset fields to load; None: :func:`data_fields`.
    """
    root = resolve_data_root(cfg)
    fields = tuple(fields) if fields is not None else data_fields(cfg)
    d = cfg.data
    models = None
    if {"mesh", "occupancy"} & set(fields):  # load the hand model once for both datasets
        from im2hands.hands.layer import load_hand_models

        models = load_hand_models(cfg.hand_model.mano_dir, source="hand_model.mano_dir")
    common = dict(hand_models=models, mano_dir=cfg.hand_model.mano_dir, box_side=d.box_side,
                  surface_sigma=d.surface_sigma, fields=fields, skip_bad=d.skip_bad_samples,
                  predicted_keypoints=d.predicted_keypoints, predicted_max_px=d.predicted_max_px)
    train = HandsDataset(root, d.split, num_points=d.num_points, uniform_ratio=d.uniform_ratio, seed=d.seed,
                         tip_ratio=d.tip_ratio, tip_radius=d.tip_radius, **common)
    val_full = HandsDataset(root, cfg.train.val_split, num_points=cfg.train.val_points, uniform_ratio=1.0,
                            seed=VAL_SEED, **common)
    val_full.set_epoch(0)
    val = Subset(val_full, range(min(cfg.train.val_samples, len(val_full))))
    return train, val


class EpochSampler(DistributedSampler):
    """A DistributedSampler (also for one process) that resumes mid-epoch and tags indices.

    It yields ``(epoch, index)`` pairs: :class:`EpochDataset` sets the dataset's epoch from
    them inside the worker that loads the item. (A plain ``dataset.set_epoch`` in the main
    process would never reach ``persistent_workers``, which hold their own dataset copies.)
    The order of an epoch is a pure function of ``(seed, epoch)``; :meth:`set_start` skips
    the first items, so a resumed run sees exactly the batches a straight run would.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` items (of this rank's share) of the current epoch."""
        self.start = max(0, int(start))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start:]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class EpochDataset(Dataset):
    """Wraps a dataset with ``set_epoch``; items are fetched by ``(epoch, index)`` pairs."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed
    (distinct per worker, rank and loader; set by the loader's generator). Workers ignore
    Ctrl-C: the main process stops training and shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loaders(
    cfg: Any, train_set: HandsDataset, val_set: Dataset, *, rank: int = 0, world_size: int = 1, pin_memory: bool = False
) -> tuple[DataLoader, EpochSampler, DataLoader]:
    """Training loader (shuffled per epoch, split across ranks, full batches only) and the
    validation loader (this rank's share ``rank::world_size`` of the validation items, in order).

    Raises:
        ConfigError: a rank's share of the training split holds fewer items than one batch.
    """
    t = cfg.train
    sampler = EpochSampler(train_set, num_replicas=world_size, rank=rank, seed=cfg.seed)
    if sampler.num_samples < t.batch_size:
        raise ConfigError(
            f"train.batch_size={t.batch_size} but each of the {world_size} process(es) gets only "
            f"{sampler.num_samples} training item(s) of split '{cfg.data.split}'"
        )
    workers = dict(num_workers=t.num_workers, persistent_workers=t.num_workers > 0,
                   worker_init_fn=seed_worker if t.num_workers > 0 else None, pin_memory=pin_memory)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # worker seeds; never the global RNG
    train_loader = DataLoader(EpochDataset(train_set), batch_size=t.batch_size, sampler=sampler, drop_last=True,
                              generator=gen, **workers)
    shard = Subset(val_set, list(range(rank, len(val_set), world_size)))
    val_gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank + 1)
    val_loader = DataLoader(shard, batch_size=t.batch_size, shuffle=False, generator=val_gen, **workers)
    return train_loader, sampler, val_loader


# --------------------------------------------------------------------------- optimisation


def build_optimizer(cfg: Any, model: torch.nn.Module) -> torch.optim.Adam:
    """Adam (``train.lr``, ``train.betas``, ``train.weight_decay``) over
    ``model.trainable_parameters()``, which may also return parameter groups (dicts); a group's
    ``lr_scale`` multiplies ``train.lr`` for it (e.g. a new head beside pretrained weights)."""
    t = cfg.train
    params = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": t.lr * float(g["lr_scale"])}
              if isinstance(g, dict) and "lr_scale" in g else g for g in model.trainable_parameters()]  # fmt: skip
    if not params:
        raise Im2HandsError(f"model '{cfg.model.type}' has no trainable parameters")
    if len(t.betas) != 2:
        raise ConfigError(f"train.betas must hold two values, got {list(t.betas)}")
    return torch.optim.Adam(params, lr=t.lr, betas=(float(t.betas[0]), float(t.betas[1])), weight_decay=t.weight_decay)


def build_scheduler(cfg: Any, optimizer: torch.optim.Optimizer):
    """The learning-rate schedule, stepped once per iteration, or None.

    ``none``: constant. ``step``: multiply by ``train.gamma`` every ``train.step_size`` steps.
    ``cosine``: half a cosine from ``train.lr`` to 0 over ``train.max_steps`` (a LambdaLR, so a
    resume with a larger max_steps stretches the rest of the schedule).
    """
    t = cfg.train
    kind = str(t.scheduler).lower()
    if kind == "none":
        return None
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.step_size, gamma=t.gamma)
    if kind == "cosine":
        total = max(1, int(t.max_steps))

        def cosine(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    raise ConfigError(f"train.scheduler '{t.scheduler}': expected one of {', '.join(SCHEDULERS)}")
