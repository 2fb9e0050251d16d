"""The measurements behind ``im2hands bench`` (:mod:`im2hands.benchmarks.suite` runs them and
writes the table): decoder throughput, extraction (MISE + marching cubes on the oracle field
replayed through the network's cost), evaluation, synthetic data, images to keypoints and
meshes, and the process's machine and memory figures."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from im2hands.models.base import HandsModel

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> dict[str, float]:
    """Maximum resident set size so far of this process (``self``) and of its largest finished
    child (``children``), in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    scale = 1.0 / 2**20 if sys.platform == "darwin" else 1.0 / 1024
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self": self_mb, "children": children_mb, "max": max(self_mb, children_mb)}


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """What the numbers depend on: CPU, libraries, threads, device, load, date."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "cpus_usable": usable, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "torch_threads": threads, "device": str(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- the workload


class _Recorder(HandsModel):
    """The oracle field, chunked like the network; keeps every decoded chunk for :class:`_Replay`."""

    def __init__(self, oracle: HandsModel, net: HandsModel) -> None:
        super().__init__()
        self.oracle = oracle
        self.threshold = float(net.threshold)
        self.decode_bytes_per_point = net.decode_bytes_per_point
        self.values: list[torch.Tensor] = []

    def encode(self, batch: dict[str, Any]) -> Any:
        self.values = []
        return self.oracle.encode(batch)

    def decode(self, points: torch.Tensor, features: Any) -> torch.Tensor:
        values = self.oracle.decode(points, features)
        self.values.append(values.detach().cpu())
        return values


class _Replay(HandsModel):
    """The network's cost, the oracle's values.

    ``encode`` runs the network's encoder; each ``decode`` runs the network's decoder on the
    points it is given (its output is discarded) and returns the oracle values recorded for the
    same call, so MISE takes exactly the path it took on the oracle field.
    """

    def __init__(self, net: HandsModel, recorded: list[torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.threshold = float(net.threshold)
        self.decode_bytes_per_point = net.decode_bytes_per_point
        self.recorded = recorded
        self.cursor = 0

    def encode(self, batch: dict[str, Any]) -> Any:
        self.cursor = 0
        return self.net.encode(batch)

    def decode(self, points: torch.Tensor, features: Any) -> torch.Tensor:
        out = self.net.decode(points, features)
        if self.cursor >= len(self.recorded) or self.recorded[self.cursor].shape != out.shape:
            raise RuntimeError("the replayed extraction left the recorded path (a chunk was split differently)")
        values = self.recorded[self.cursor].to(out.device)
        self.cursor += 1
        return values


def _sample_batch(root: Path, image_size: int, seed: int) -> dict[str, Any]:
    """One synthetic two-hand item with image, keypoints and ground-truth meshes, batched (B = 1)."""
    from torch.utils.data import default_collate

    from im2hands.config.schema import SynthConfig
    from im2hands.data.dataset import HandsDataset
    from im2hands.data.synthetic import synthesize

    synthesize(root, 1, seed=seed, workers=1, settings=SynthConfig(image_size=image_size), progress=False)
    return default_collate([HandsDataset(root, "all", fields=("image", "mesh"))[0]])


def bench_extraction(
    net: HandsModel, batch: dict[str, Any], *, resolution0: int, upsampling_steps: int, repeats: int,
    device: torch.device, compare_original: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Points MISE evaluates and the time of a two-hand extraction (see the module docstring).

    Returns:
        ``extraction`` (the replayed :class:`~im2hands.extraction.extractor.Extraction` of the
        last run: its meshes are the oracle's) and the measure's ``details`` dict.
    """
    from im2hands.extraction.extractor import Extractor
    from im2hands.extraction.oracle import MeshOccupancy

    kw = dict(resolution0=resolution0, upsampling_steps=upsampling_steps)
    recorder = _Recorder(MeshOccupancy(), net)
    t0 = time.perf_counter()
    oracle_run = Extractor(recorder, device="cpu", **kw).extract(batch)  # untimed record pass
    oracle_s = time.perf_counter() - t0
    for side, hand in oracle_run.hands.items():
        if hand.status != "ok":
            raise RuntimeError(f"the oracle field gave no {side} surface: {hand.message}")
    replay = _Replay(net, recorder.values)
    extractor = Extractor(replay, device=device, **kw)
    extractor.extract(batch)  # warm-up (first-call allocations, thread pools)
    runs, parts = [], []
    out = None
    for _ in range(repeats):
        out = extractor.extract(batch)
        runs.append(out.seconds["total"])
        parts.append(dict(out.seconds))
    assert out is not None
    hands = list(out.hands.values())
    evaluated = [h.points_evaluated for h in hands]
    dense = hands[0].dense_points
    details: dict[str, Any] = {
        "precision": extractor.precision,
        "repeats": repeats, "runs_s": runs, "median_s": _median(runs), "resolution": out.resolution,
        "median_parts_s": {k: _median([p[k] for p in parts]) for k in parts[0]},
        "points_evaluated_per_hand": evaluated, "points_per_level_per_hand": [h.points_per_level for h in hands],
        "points_decoded": out.points_decoded, "decode_calls": len(recorder.values), "chunk": extractor.chunk,
        "dense_points": dense, "watertight": [h.watertight for h in hands],
        "faces_per_hand": [int(len(h.faces)) for h in hands], "oracle_record_pass_s": oracle_s,
    }  # fmt: skip
    if compare_original:
        # ONet's MISE: whole box at level 0, no skeleton band, no surface tracking (counts only)
        orig = Extractor(MeshOccupancy(), seed_radius=0.0, start_radius=None, flood=False, device="cpu", **kw)
        orig_hands = orig.extract(batch).hands.values()
        details["original_mise_points_evaluated_per_hand"] = [h.points_evaluated for h in orig_hands]
    return {"extraction": out, "details": details}


def bench_eval(extraction: Any, batch: dict[str, Any], *, n_points: int, repeats: int) -> dict[str, Any]:
    """Median time of :func:`~im2hands.metrics.evaluator.evaluate_item` on the extracted meshes."""
    from im2hands.hands.constants import SIDES
    from im2hands.metrics.evaluator import HandMesh, evaluate_item

    gt, pred = {}, {}
    for h, side in enumerate(SIDES):
        kp = batch["keypoints"][0, h].double().numpy()
        gt[side] = HandMesh(batch["vertices"][0, h].double().numpy(), batch["faces"][0, h].long().numpy(), kp)
        r = extraction.hands[side]
        pred[side] = HandMesh(r.vertices, r.faces, kp)
    evaluate_item(pred, gt, n_points=min(n_points, 1000))  # warm-up (imports, embree)
    runs, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = evaluate_item(pred, gt, n_points=n_points)
        runs.append(time.perf_counter() - t0)
    assert result is not None
    iou = {side: float(v["iou"]) for side, v in result["hands"].items()}
    return {"repeats": repeats, "runs_s": runs, "median_s": _median(runs), "n_points": n_points,
            "faces_pred": [int(len(p.faces)) for p in pred.values()], "iou_vs_ground_truth": iou}


def bench_synth(*, workers: int, num: int, repeats: int, image_size: int, seed: int = 0) -> dict[str, Any]:
    """End-to-end :func:`~im2hands.data.synthetic.synthesize` rate into a fresh temporary folder."""
    from im2hands.config.schema import SynthConfig
    from im2hands.data.synthetic import synthesize

    settings = SynthConfig(image_size=image_size)
    runs, seconds = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="im2hands_bench_synth_") as tmp:
            s = synthesize(Path(tmp) / "data", num, seed=seed, workers=workers, settings=settings, progress=False)
        if s["failed"]:
            log.warning("synthetic data: %d of %d samples failed", len(s["failed"]), num)
        runs.append(float(s["samples_per_s"]))
        seconds.append(float(s["seconds"]))
    out = {"repeats": repeats, "runs_samples_per_s": runs, "runs_s": seconds, "median_samples_per_s": _median(runs),
           "workers": workers, "samples_per_run": num, "image_size": image_size}  # fmt: skip
    if workers > 1:
        # the worker pool's start-up (spawn, import, load the hand models) is part of every run
        startup = pool_startup_s(workers, settings)
        out["pool_startup_s"] = startup
        rest = _median(seconds) - startup
        out["samples_per_s_without_startup"] = num / rest if rest > 0 else None
    return out


def bench_images(*, images: int, repeats: int, image_size: int, resolution0: int, upsampling_steps: int,
                 device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Images alone: keypoints per second of the default per-hand crop pipeline (``crops``: the
    shipped hand detector, then MediaPipe's, find the hands, MediaPipe's landmark network confirms
    them, the shipped fine-tuned crop network gives keypoints and sides;
    :func:`~im2hands.extraction.estimators.default_estimator`) and of the whole-image ``KeypointPipeline`` with the shipped
    estimator, without and with the shipped refiner (median over ``repeats`` passes over
    ``images`` synthetic images after a warm-up), and seconds per item of the whole
    image-to-mesh job with the defaults (``extract --keypoints auto``: crop pipeline, stage 1,
    stage 2, MISE, marching cubes, files; median over the items with a hand found)."""
    from im2hands.config.schema import SynthConfig
    from im2hands.data import format as fmt
    from im2hands.data.synthetic import synthesize
    from im2hands.loading import load_model
    from im2hands.loading import shipped_path
    from im2hands.extraction.run import extract_folder
    from im2hands.extraction.keypoints import KeypointPipeline
    from im2hands.extraction.estimators import default_estimator, load_estimator

    out: dict[str, Any] = {"images": images, "repeats": repeats, "image_size": image_size}
    with tempfile.TemporaryDirectory(prefix="im2hands_bench_images_") as tmp:
        root = Path(tmp) / "data"
        synthesize(root, images, seed=seed, workers=1, settings=SynthConfig(image_size=image_size), progress=False)
        anns = [fmt.read_annotation(root, sid) for sid in fmt.list_samples(root, "all")]
        inputs = [(fmt.read_image(root / a.image), a.K) for a in anns]
        estimator, _ = load_model(shipped_path("estimator"), device=device)
        refiner, _ = load_model(shipped_path("refiner"), device=device)
        crops, _ = load_estimator(default_estimator(), None, torch.device(device), None)
        for name, pipe in (("crops", crops), ("estimator", KeypointPipeline(estimator)),
                           ("estimator_refiner", KeypointPipeline(estimator, refiner=refiner))):
            pipe(*inputs[0])  # warm-up
            runs = []
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                for image, K in inputs:
                    pipe(image, K)
                _sync(device)
                runs.append(len(inputs) / (time.perf_counter() - t))
            out[name] = {"runs_images_per_s": runs, "median_images_per_s": _median(runs), "passes": pipe.passes}
        summary = extract_folder(Path(tmp) / "meshes", dataset=root, split="all", keypoints="auto", device=device,
                                 resolution=resolution0, upsampling_steps=upsampling_steps, progress=False)  # fmt: skip
    items = [float(it["seconds"]["total"]) for it in summary["items"] if it["status"] == "ok"]
    out["image_to_mesh"] = {"items_s": items, "median_item_s": _median(items) if items else float("nan"),
                            "failed": summary["totals"]["failed"], "resolution": resolution0 * 2**upsampling_steps,
                            "model": summary["settings"]["model"], "precision": summary["settings"]["precision"]}  # fmt: skip
    return out


def _ready(_: int) -> int:
    return os.getpid()


def pool_startup_s(workers: int, settings: Any, mano_dir: str | None = None) -> float:
    """Seconds to start the spawn pool of :func:`~im2hands.data.synthetic.synthesize` and get
    one trivial task back from each worker (torch import and hand models included)."""
    import multiprocessing as mp

    from im2hands.data.synthetic import _init_worker

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="im2hands_bench_pool_") as tmp:
        args = (mano_dir, settings, 0, tmp)
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=args) as pool:
            pool.map(_ready, range(workers), chunksize=1)
        return time.perf_counter() - t0


def bench_decoder(net: HandsModel, *, chunk: int, chunks: int, repeats: int, threads: int,
                  device: torch.device, precision: str = "float32") -> dict[str, Any]:  # fmt: skip
    """Decoder throughput: :func:`~im2hands.benchmarks.decoder.decoder_throughput` on the CPU, the
    same measurement with device synchronisation elsewhere (``precision``: ``float32`` or
    ``bfloat16`` autocast)."""
    from im2hands.benchmarks import decoder
    from im2hands.extraction.extractor import decode_autocast

    if device.type == "cpu":
        return decoder.decoder_throughput(net, chunk=chunk, chunks=chunks, repeats=repeats, threads=threads,
                                          precision=precision)  # fmt: skip
    with torch.inference_mode():
        batch = {k: v.to(device) for k, v in decoder._synthetic_batch(net, 1, 0).items()}
        features = net.encode(batch)
        gen = torch.Generator().manual_seed(0)
        wrist = batch["keypoints"][:, :, None, 0]
        points = [wrist + 0.44 * (torch.rand(1, 2, chunk, 3, generator=gen).to(device) - 0.5) for _ in range(chunks)]

        def run() -> float:
            _sync(device)
            t0 = time.perf_counter()
            with decode_autocast(device.type, precision):
                for p in points:
                    net.decode(p, features)
            _sync(device)
            return time.perf_counter() - t0

        run()
        times = [run() for _ in range(repeats)]
    per_run = 2 * chunk * chunks
    return {"hand_points_per_s": per_run / _median(times), "best_hand_points_per_s": per_run / min(times),
            "run_seconds": times, "points_per_run": per_run, "mlp_flops_per_point": decoder.mlp_flops_per_point(net),
            "chunk": chunk, "threads": threads, "precision": precision, "config": None}  # fmt: skip


def bench_canonicalize(*, batch: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """HALO canonicalization (:func:`~im2hands.geometry.canonical.canonicalize`) of ``batch``
    random float32 hands on the CPU: median milliseconds per call over ``repeats`` calls after a
    warm-up (the wall-clock check that was a unit test)."""
    from im2hands.geometry.canonical import canonicalize
    from im2hands.hands.joint_orders import permutation

    g = torch.Generator().manual_seed(seed)
    kp = (0.05 * torch.randn(batch, 21, 3, generator=g)).float()
    kp[..., 2] += 0.5
    perm = permutation("standard", "mano")
    canonicalize(kp, False, perm)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        canonicalize(kp, False, perm)
        runs.append(time.perf_counter() - t)
    return {"batch": batch, "repeats": repeats, "run_seconds": runs, "median_ms": 1e3 * _median(runs)}
