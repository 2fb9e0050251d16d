"""Synthetic two-hand dataset generator (``im2hands data synth``), HDR's AIH-Render idea with
full 3D ground truth.

Per sample: shapes for both hands (one person, small per-hand differences), a two-hand
interaction from a named template (or two free random poses) placed in contact without
interpenetration, a random rotation of the pair, a camera framing both hands like the
IntagHand crop, skin tones, a light and a procedural background; rendered by the toolkit's
torch rasterizer into RGB, amodal and visible masks and depth, and written in the dataset
format of ``docs/data_format.md``.

Sample ``i`` of a run with seed ``s`` is a pure function of ``(s, i)``: the same on any
machine and with any number of workers, so an interrupted run continues where it stopped.

Device (``synth.device``, ``--device``): sampling and placing the poses and framing the camera
always run on the CPU; the final posing of both meshes, the keypoints and the rasterization run
on ``synth.device``. On the CPU (the default) the above holds bit for bit. On CUDA the stored
parameters and camera are the same as on the CPU, while images, masks, depth and keypoints
agree with the CPU's up to float rounding (a few pixels on edges; CUDA's atomic adds in the
vertex normals make the shading reproducible only to rounding from run to run).
"""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from im2hands.config.load import save_config
from im2hands.config.schema import ExperimentConfig, HandModelConfig, SynthConfig
from im2hands.data import format as fmt
from im2hands.data.appearance import background, fit_camera, random_lighting, skin_colors
from im2hands.geometry.frames import project
from im2hands.geometry.raster import render
from im2hands.hands.constants import LEFT, RIGHT, SIDES
from im2hands.hands.interactions import TEMPLATES, pose_pair, rotate_pair, sample_interaction
from im2hands.hands.layer import HandModel, load_hand_models
from im2hands.utils.device import resolve_device as _resolve_device
from im2hands.utils.errors import DataError, Im2HandsError
from im2hands.utils.io import check_output_path, output_dir

log = logging.getLogger(__name__)

INTERACTION_TEMPLATES = tuple(t for t in TEMPLATES if t != "random_pair")


@dataclass
class Sample:
    """One generated sample before it is written."""

    annotation: fmt.Annotation
    image: np.ndarray  # (H, W, 3) uint8
    masks: dict[str, np.ndarray]  # (H, W) bool each
    depth: np.ndarray  # (H, W) float32 metres


def resolve_device(name: str | torch.device) -> torch.device:
    """``synth.device`` (``--device``) as a torch device (:func:`im2hands.utils.device.resolve_device`).

    Raises:
        Im2HandsError: an unknown name, or a CUDA device that is not available.
    """
    return _resolve_device(name, source="synth.device (--device)")


_ON_DEVICE: "weakref.WeakKeyDictionary[HandModel, dict[str, HandModel]]" = weakref.WeakKeyDictionary()


def _models_on(models: dict[str, HandModel], device: torch.device) -> dict[str, HandModel]:
    """``models`` themselves when they are on ``device``, else copies there (made once per model
    and device, kept while the original lives)."""
    out = {}
    for side, model in models.items():
        if model.device == device:
            out[side] = model
            continue
        copies = _ON_DEVICE.setdefault(model, {})
        if str(device) not in copies:
            copies[str(device)] = copy.deepcopy(model).to(device)
        out[side] = copies[str(device)]
    return out


def _rngs(seed: int, index: int) -> tuple[np.random.Generator, torch.Generator]:
    seq = np.random.SeedSequence([seed, index])
    rng = np.random.default_rng(seq)
    tgen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
    return rng, tgen


def _shapes(rng: np.random.Generator, std: float) -> np.ndarray:
    person = rng.normal(0.0, std, size=10)
    per_hand = person[None] + rng.normal(0.0, 0.15 * std, size=(2, 10))
    return np.clip(per_hand, -3.0, 3.0)


def generate_sample(index: int, seed: int, settings: SynthConfig, models: dict[str, HandModel],
                    device: str | torch.device | None = None) -> Sample:
    """Generate sample ``index`` of a run seeded with ``seed`` (pure function of both).

    Args:
        index: sample index; with ``seed`` it fixes every random draw.
        seed: run seed.
        settings: the generator's settings (the ``synth`` config section).
        models: ``{"left", "right"}`` hand models on the CPU (the placement runs there).
        device: where the final meshes are posed and rasterized (see :func:`resolve_device`);
            None: ``settings.device``. Copies of ``models`` are moved there once and reused.
    """
    dev = resolve_device(settings.device if device is None else device)
    posers = _models_on(models, dev)
    rng, tgen = _rngs(seed, index)
    size = int(settings.image_size)
    shapes = torch.as_tensor(_shapes(rng, settings.shape_std), dtype=torch.float32)
    if rng.uniform() < settings.interaction_ratio:
        template = INTERACTION_TEMPLATES[rng.integers(len(INTERACTION_TEMPLATES))]
    else:
        template = "random_pair"
    pair = None
    for _ in range(settings.max_tries):
        try:
            pair = sample_interaction(template, models["right"], models["left"], shapes, generator=tgen,
                                      max_penetration_cm3=settings.max_penetration_cm3)
            break
        except RuntimeError:
            continue
    if pair is None:
        raise DataError(f"sample {index}: could not place template {template!r} in {settings.max_tries} tries")

    # random orientation of the pair, then centre it at the origin
    rotvec = Rotation.random(random_state=rng).as_rotvec()
    pair = rotate_pair(pair, rotvec, models["right"], models["left"])
    out = pose_pair(pair, models["right"], models["left"])
    verts = np.concatenate([out[s].vertices[0].numpy() for s in SIDES])
    centre = 0.5 * (verts.max(0) + verts.min(0))

    focal = rng.uniform(*settings.focal_range) * size / 256.0
    fill = rng.uniform(*settings.fill_range)
    shift = rng.uniform(-settings.center_jitter, settings.center_jitter, size=2)
    t_cam, K = fit_camera(verts - centre, focal, size, fill, shift)
    pair = rotate_pair(pair, np.zeros(3), models["right"], models["left"], translation=t_cam - centre)
    out = pose_pair(pair, posers["right"], posers["left"])  # on dev from here on

    K_t = torch.as_tensor(K, dtype=torch.float32)
    meshes, hands = [], {}
    tone = None
    for h, side in ((LEFT, "left"), (RIGHT, "right")):
        v = out[side].vertices[0]
        f = out[side].faces
        colors = skin_colors(v.cpu().numpy(), rng, base=tone)
        tone = colors.mean(0) * rng.uniform(0.95, 1.05, size=3) if tone is None else tone
        meshes.append((v, f, torch.as_tensor(colors, dtype=torch.float32, device=dev)))
        kp = out[side].keypoints[0].cpu()
        hands[side] = fmt.HandAnnotation(
            valid=True,
            pose=pair.pose[h].numpy().astype(np.float64),
            shape=pair.shape[h].numpy().astype(np.float64),
            trans=pair.trans[h].numpy().astype(np.float64),
            keypoints=kp.numpy().astype(np.float64),
            keypoints_2d=project(kp[None], K_t[None])[0].numpy().astype(np.float64),
        )
    light = random_lighting(rng)
    bg = torch.as_tensor(background(rng, size), dtype=torch.float32)
    res = render(meshes, K_t, (size, size), light_dir=light.direction, ambient=light.ambient,
                 background=bg, specular=float(rng.uniform(0.0, 0.15)), amodal=True)
    rgb = res.rgb.cpu().numpy()
    rgb = rgb + rng.normal(0.0, rng.uniform(0.0, 0.015), size=rgb.shape)  # sensor noise
    image = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    masks = {
        "left_amodal": res.amodal_masks[LEFT].cpu().numpy(),
        "right_amodal": res.amodal_masks[RIGHT].cpu().numpy(),
        "left_visible": res.masks[LEFT].cpu().numpy(),
        "right_visible": res.masks[RIGHT].cpu().numpy(),
    }
    ann = fmt.Annotation(
        id=fmt.sample_id(index), K=K, R=np.eye(3), t=np.zeros(3), width=size, height=size,
        hand_model=models["right"].model_name, hands=hands,
        extra={"template": pair.template, "penetration_cm3": round(float(pair.penetration_cm3), 4),
               "contact_gap_m": round(float(pair.contact_gap_m), 5), "seed": [int(seed), int(index)]},
    )
    return Sample(annotation=ann, image=image, masks=masks, depth=res.depth.cpu().numpy())


# --------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(mano_dir: str | None, settings: SynthConfig, seed: int, root: str) -> None:
    torch.set_num_threads(1)
    _WORKER.update(models=load_hand_models(mano_dir), settings=settings, seed=seed, root=Path(root))


def _work(index: int) -> tuple[int, str | None]:
    try:
        sample = generate_sample(index, _WORKER["seed"], _WORKER["settings"], _WORKER["models"])
        fmt.write_sample(_WORKER["root"], sample.annotation, sample.image, sample.masks, sample.depth)
        return index, None
    except Im2HandsError as exc:
        return index, str(exc)


def _splits(ids: list[str], settings: SynthConfig) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for sid in ids:
        i = int(sid)
        name = "test" if i % settings.test_every == 0 else "val" if i % settings.val_every == 1 else "train"
        out[name].append(sid)
    return out


def _check_existing(root: Path, meta: dict) -> None:
    if not (root / "meta.json").is_file():
        return
    old = fmt.read_meta(root)
    for key in ("source", "seed", "hand_model", "image_size"):
        if old.get(key) != meta.get(key):
            raise DataError(
                f"{root} already holds a dataset with a different {key} ({old.get(key)!r}, now {meta.get(key)!r}); "
                "use a new folder or the same settings to continue it"
            )


def synthesize(
    out_dir: str | Path,
    num: int,
    seed: int = 0,
    workers: int = 1,
    *,
    settings: SynthConfig | None = None,
    mano_dir: str | None = None,
    progress: bool = True,
) -> dict:
    """Write ``num`` synthetic samples into ``out_dir`` (resumable; finished samples are kept).

    Args:
        out_dir: dataset folder (created; an existing one made with the same settings is continued).
        num: number of samples (ids ``0 .. num-1``).
        seed: run seed; sample ``i`` depends only on ``(seed, i)``.
        workers: processes (each single-threaded; spawned, so CUDA works in them); 1 runs in
            this process.
        settings: the generator's settings (the ``synth`` config section; None: its defaults;
            ``settings.device`` picks where meshes are posed and rasterized).
        mano_dir: hand-model folder (MANO_RIGHT.pkl, MANO_LEFT.pkl); None:
            ``$IM2HANDS_MANO_DIR``, else the shipped open hand model.
        progress: show a progress bar.

    Returns:
        Summary dict: ``written``, ``skipped`` (already complete), ``failed`` (index -> message),
        ``seconds``, ``samples_per_s``, ``device``. ``out_dir`` also gets ``config.yaml``: the
        config this job read (defaults, with these ``synth`` settings and ``hand_model.mano_dir``).

    Raises:
        Im2HandsError: a bad ``num``, ``workers`` or ``synth.device``, or a folder holding another run.
    """
    from tqdm import tqdm

    settings = SynthConfig() if settings is None else settings
    check_output_path(out_dir)
    if num < 1:
        raise Im2HandsError(f"--num must be at least 1, got {num}")
    if workers < 1:
        raise Im2HandsError(f"--workers must be at least 1, got {workers}")
    device = resolve_device(settings.device)
    if device.type != "cpu":
        log.info("synth: posing and rasterizing on %s", device)
    root = Path(out_dir)
    models = load_hand_models(mano_dir, source="hand_model.mano_dir")
    size = int(settings.image_size)
    meta = {"source": "synthetic", "seed": int(seed), "hand_model": {"name": models["right"].model_name},
            "image_size": [size, size]}
    _check_existing(root, meta)
    output_dir(root)
    # meta.json counts samples only once they are on disk: while writing it says so and holds
    # no count (a killed run leaves it that way); the count and the splits are written last.
    fmt.write_meta(root, {**meta, "status": "writing"})
    save_config(ExperimentConfig(hand_model=HandModelConfig(mano_dir=mano_dir), synth=settings), root)

    todo = [i for i in range(num) if not fmt.is_complete(root, fmt.sample_id(i))]
    failed: dict[int, str] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="synth", unit="sample", disable=not progress)
    status = "interrupted"
    try:
        for index, err in _run(todo, workers, settings, mano_dir, seed, root, models):
            if err is not None:
                failed[index] = err
                log.warning("sample %d skipped: %s", index, err)
            bar.update(1)
        status = "done"
    finally:
        bar.close()
        ids = fmt.list_samples(root, "all")
        fmt.write_splits(root, _splits(ids, settings))
        fmt.write_meta(root, {**meta, "status": status, "num_samples": len(ids)})
    if len(ids) > num:
        log.info("synth: %s holds %d samples, more than --num %d (none removed); meta.json and the "
                 "splits list all %d", root, len(ids), num, len(ids))
    seconds = time.perf_counter() - start
    written = len(todo) - len(failed)
    return {"written": written, "skipped": num - len(todo), "failed": failed, "seconds": seconds,
            "samples_per_s": written / seconds if seconds > 0 else 0.0, "device": str(device)}


def _run(todo: list[int], workers: int, settings: SynthConfig, mano_dir: str | None, seed: int, root: Path,
         models: dict[str, HandModel]) -> Iterator[tuple[int, str | None]]:
    if workers == 1 or len(todo) <= 1:
        _WORKER.update(models=models, settings=settings, seed=seed, root=root)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batch-1 hand-model passes are far slower split across threads
        try:
            for i in todo:
                yield _work(i)
        finally:
            torch.set_num_threads(threads)
        return
    ctx = mp.get_context("spawn")  # spawn, not fork: CUDA cannot be used in forked children
    with ctx.Pool(workers, initializer=_init_worker,
                  initargs=(mano_dir, settings, seed, str(root))) as pool:
        yield from pool.imap_unordered(_work, todo, chunksize=4)
