"""The ``im2hands bench`` suite: time the pipeline's costly steps, check the targets, write JSON.

Measures (medians over ``repeats`` runs each; every run is kept in ``measures``):

- ``decoder_points_per_s``: stage-1 decoding throughput of the CPU-sized stage 1
  (``configs/init_occ_cpu.yaml``, random weights) in hand-points per second (one query point
  decoded for one hand), image and keypoints encoded once
  (:func:`im2hands.benchmarks.decoder.decoder_throughput`).
- ``mise_points_evaluated``, ``dense_points``, ``mise_query_fraction``: grid points MISE
  evaluates per hand (mean of the two hands) at 256 cells, against the ``257^3`` points of the
  dense grid, for the ground-truth occupancy of a synthetic two-hand sample
  (:class:`~im2hands.extraction.oracle.MeshOccupancy`, a stand-in for a trained network).
- ``extract_two_hands_s``: :meth:`Extractor.extract <im2hands.extraction.extractor.Extractor.extract>`
  of both hands at 256 cells with the workload of a trained stage 1: the real network encodes
  the image once and decodes exactly the points MISE evaluates for the oracle field, in the
  same chunks, while the values MISE sees are the oracle's (recorded in an untimed first pass
  and replayed). Timed: encoding, decoding, MISE bookkeeping and marching cubes with the
  largest-component and watertightness checks; not timed: the oracle's own winding numbers.
  Random weights give a field without a surface, hence the replay.
- ``eval_item_s``: :func:`~im2hands.metrics.evaluator.evaluate_item` of one item (two hands,
  100k points) comparing the 256-cell extracted meshes with the ground-truth meshes.
- ``synth_samples_per_s``: :func:`~im2hands.data.synthetic.synthesize` end to end with 2
  worker processes (pool start-up, posing, rendering with masks and depth, writing the files),
  160 samples per run so that the pool's start-up (about 1.6 s) does not dominate the rate; and
  ``synth_samples_per_s_1_worker`` with 1 (in process, no start-up; 48 samples per run). Both
  on the CPU (``synth.device`` cpu).
- ``estimator_images_per_s``: keypoints from images with the shipped estimator
  (``KeypointPipeline``, its configured passes, the sample's camera), 8 synthetic images per
  run after a warm-up; ``measures.images.estimator_refiner`` has the rate with the shipped
  stage-3 refiner too. ``image_to_mesh_s``: median seconds per item of ``im2hands extract
  --keypoints auto`` with the shipped weights (estimator, refiner, stage 1, stage 2, MISE at 256
  cells, marching cubes, OBJ, keypoint file and overlay) on those 8 images
  (:func:`bench_images`).
- ``peak_rss_mb``: the larger of the maximum resident set size of this process and of its
  largest finished child (``resource.getrusage``), at the end of the run.

``run_bench(quick=True)`` uses tiny sizes (a smoke test, not a measurement).
"""

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
from typing import Any, Callable

import numpy as np
import torch

from im2hands.models.base import HandsModel
from im2hands.utils.device import resolve_device as _resolve_device
from im2hands.utils.errors import Im2HandsError

__all__ = ["HEADLINE_KEYS", "TARGETS", "run_bench", "format_table", "main"]

log = logging.getLogger(__name__)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "init_occ_cpu.yaml"
"""The CPU-sized stage 1 (repository checkout)."""

HEADLINE_KEYS: tuple[str, ...] = (
    "decoder_points_per_s", "mise_points_evaluated", "dense_points", "mise_query_fraction", "extract_two_hands_s",
    "eval_item_s", "synth_samples_per_s", "synth_samples_per_s_1_worker", "estimator_images_per_s",
    "image_to_mesh_s", "peak_rss_mb",
)  # fmt: skip
"""Top-level numeric keys of the result (all finite and positive after a successful run)."""

TARGETS: dict[str, tuple[str, float, str]] = {
    "mise_query_fraction": ("<=", 1.0 / 20.0, "MISE evaluates <= 1/20 of the dense 257^3 queries"),
    "extract_two_hands_s": ("<=", 5.0, "two hands at 256 cells in <= 5 s"),
    "peak_rss_mb": ("<=", 2048.0, "peak memory <= 2 GB"),
    "decoder_points_per_s": (">=", 90_000.0, "decoder >= 90k points/s per hand"),
    "synth_samples_per_s": (">=", 20.0, "synthetic data >= 20 samples/s"),
}
"""key -> (comparison, limit, description); the targets hold on 2 cores in full mode."""

_FULL = dict(
    resolution0=32, upsampling_steps=3, extract_repeats=3, decoder_chunk=65536, decoder_chunks=2, decoder_repeats=5,
    eval_points=100_000, eval_repeats=3, synth_num=160, synth_num_1_worker=48, synth_repeats=3,
    synth_image_size=256, image_items=8, image_repeats=3, image_size=256,
)  # fmt: skip
_QUICK = dict(
    resolution0=8, upsampling_steps=1, extract_repeats=1, decoder_chunk=2048, decoder_chunks=1, decoder_repeats=2,
    eval_points=2000, eval_repeats=1, synth_num=2, synth_num_1_worker=2, synth_repeats=1, synth_image_size=32,
    image_items=1, image_repeats=1, image_size=64,
)  # fmt: skip


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

    from im2hands.config import load_config
    from im2hands.data.dataset import HandsDataset
    from im2hands.data.synthetic import synthesize

    cfg = load_config(None, [f"synth.image_size={image_size}"])
    synthesize(root, 1, seed=seed, workers=1, cfg=cfg, progress=False)
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
    from im2hands.config import load_config
    from im2hands.data.synthetic import synthesize

    cfg = load_config(None, [f"synth.image_size={image_size}"])
    runs, seconds = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="im2hands_bench_synth_") as tmp:
            s = synthesize(Path(tmp) / "data", num, seed=seed, workers=workers, cfg=cfg, progress=False)
        if s["failed"]:
            log.warning("synthetic data: %d of %d samples failed", len(s["failed"]), num)
        runs.append(float(s["samples_per_s"]))
        seconds.append(float(s["seconds"]))
    out = {"repeats": repeats, "runs_samples_per_s": runs, "runs_s": seconds, "median_samples_per_s": _median(runs),
           "workers": workers, "samples_per_run": num, "image_size": image_size}  # fmt: skip
    if workers > 1:
        # the worker pool's start-up (spawn, import, load the hand models) is part of every run
        startup = pool_startup_s(workers, cfg)
        out["pool_startup_s"] = startup
        rest = _median(seconds) - startup
        out["samples_per_s_without_startup"] = num / rest if rest > 0 else None
    return out


def bench_images(*, images: int, repeats: int, image_size: int, resolution0: int, upsampling_steps: int,
                 device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Images alone with the shipped weights: keypoints per second (``KeypointPipeline`` with
    the shipped estimator, without and with the shipped refiner; median over ``repeats`` passes
    over ``images`` synthetic images after a warm-up), and seconds per item of the whole
    image-to-mesh job (``extract --keypoints auto``: estimator, refiner, stage 1, stage 2, MISE,
    marching cubes, files; median over the items)."""
    from im2hands.config import load_config
    from im2hands.data import format as fmt
    from im2hands.data.synthetic import synthesize
    from im2hands.loading import load_model
    from im2hands.loading import shipped_path
    from im2hands.extraction.run import extract_folder
    from im2hands.extraction.keypoints import KeypointPipeline

    out: dict[str, Any] = {"images": images, "repeats": repeats, "image_size": image_size}
    with tempfile.TemporaryDirectory(prefix="im2hands_bench_images_") as tmp:
        root = Path(tmp) / "data"
        synthesize(root, images, seed=seed, workers=1, cfg=load_config(None, [f"synth.image_size={image_size}"]),
                   progress=False)  # fmt: skip
        anns = [fmt.read_annotation(root, sid) for sid in fmt.list_samples(root, "all")]
        inputs = [(fmt.read_image(root / a.image), a.K) for a in anns]
        estimator, _ = load_model(shipped_path("estimator"), device=device)
        refiner, _ = load_model(shipped_path("refiner"), device=device)
        for name, pipe in (("estimator", KeypointPipeline(estimator)),
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
                            "model": summary["settings"]["model"]}  # fmt: skip
    return out


def _ready(_: int) -> int:
    return os.getpid()


def pool_startup_s(workers: int, cfg: Any) -> float:
    """Seconds to start the spawn pool of :func:`~im2hands.data.synthetic.synthesize` and get
    one trivial task back from each worker (torch import and hand models included)."""
    import multiprocessing as mp

    from im2hands.data.synthetic import _init_worker

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="im2hands_bench_pool_") as tmp:
        args = (cfg.hand_model.mano_dir, cfg.synth, 0, tmp)
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=args) as pool:
            pool.map(_ready, range(workers), chunksize=1)
        return time.perf_counter() - t0


def bench_decoder(net: HandsModel, *, chunk: int, chunks: int, repeats: int, threads: int,
                  device: torch.device) -> dict[str, Any]:  # fmt: skip
    """Decoder throughput: :func:`~im2hands.benchmarks.decoder.decoder_throughput` on the CPU, the
    same measurement with device synchronisation elsewhere."""
    from im2hands.benchmarks import decoder

    if device.type == "cpu":
        return decoder.decoder_throughput(net, chunk=chunk, chunks=chunks, repeats=repeats, threads=threads)
    with torch.inference_mode():
        batch = {k: v.to(device) for k, v in decoder._synthetic_batch(net, 1, 0).items()}
        features = net.encode(batch)
        gen = torch.Generator().manual_seed(0)
        wrist = batch["keypoints"][:, :, None, 0]
        points = [wrist + 0.44 * (torch.rand(1, 2, chunk, 3, generator=gen).to(device) - 0.5) for _ in range(chunks)]

        def run() -> float:
            _sync(device)
            t0 = time.perf_counter()
            for p in points:
                net.decode(p, features)
            _sync(device)
            return time.perf_counter() - t0

        run()
        times = [run() for _ in range(repeats)]
    per_run = 2 * chunk * chunks
    return {"hand_points_per_s": per_run / _median(times), "best_hand_points_per_s": per_run / min(times),
            "run_seconds": times, "points_per_run": per_run, "mlp_flops_per_point": decoder.mlp_flops_per_point(net),
            "chunk": chunk, "threads": threads, "config": None}  # fmt: skip


# --------------------------------------------------------------------------- the suite


def _targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (op, limit, text) in TARGETS.items():
        value = float(result[key])
        ok = value <= limit if op == "<=" else value >= limit
        out[key] = {"value": value, "op": op, "limit": limit, "target": text, "pass": bool(ok)}
    return out


def run_bench(
    *,
    quick: bool = False,
    device: str | torch.device = "cpu",
    threads: int = 2,
    config: str | Path | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    stages: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the suite and return (and with ``out``, write) the result.

    Args:
        quick: tiny sizes: checks that everything runs, measures nothing useful.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the network's device; the oracle,
            evaluation and data generation run on the CPU).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        config: stage-1 config (default ``configs/init_occ_cpu.yaml``).
        out: JSON file to write atomically (None: do not write).
        seed: seed of the weights and of the synthetic sample.
        stages: called with each stage's name before it runs (progress).

    Returns:
        The headline keys (:data:`HEADLINE_KEYS`), ``ratios``, ``targets`` (per target: value,
        limit, pass), ``machine``, ``settings`` and ``measures`` (per measure: repeats, every
        run, medians and details).
    """
    from im2hands.config import load_config
    from im2hands.engine.builders import build_model
    from im2hands.utils.io import write_json

    dev = _resolve_device(device)
    sizes = dict(_QUICK if quick else _FULL)
    note = stages or (lambda name: log.info("bench: %s", name))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    try:
        machine = machine_info(dev, int(threads))
        torch.manual_seed(seed)
        cfg_path = Path(config) if config is not None else CONFIG
        net = build_model(load_config(cfg_path)).eval().to(dev)
        image_size = int(net.encoder.image_size) if getattr(net, "encoder", None) is not None else 256

        note("decoder throughput")
        dec = bench_decoder(net, chunk=sizes["decoder_chunk"], chunks=sizes["decoder_chunks"],
                            repeats=sizes["decoder_repeats"], threads=int(threads), device=dev)  # fmt: skip

        note("two-hand extraction")
        with tempfile.TemporaryDirectory(prefix="im2hands_bench_item_") as tmp:
            batch = _sample_batch(Path(tmp) / "item", image_size, seed)
        ext = bench_extraction(net, batch, resolution0=sizes["resolution0"], upsampling_steps=sizes["upsampling_steps"],
                               repeats=sizes["extract_repeats"], device=dev, compare_original=not quick)  # fmt: skip
        ed = ext["details"]

        note("evaluation of one item")
        ev = bench_eval(ext["extraction"], batch, n_points=sizes["eval_points"], repeats=sizes["eval_repeats"])

        synth = {}
        for workers, num in ((2, sizes["synth_num"]), (1, sizes["synth_num_1_worker"])):
            note(f"synthetic data, {workers} worker{'s' if workers > 1 else ''}, {num} samples per run")
            synth[workers] = bench_synth(workers=workers, num=num, repeats=sizes["synth_repeats"],
                                         image_size=sizes["synth_image_size"], seed=seed)  # fmt: skip
        note("images alone with the shipped weights (keypoints; image to mesh)")
        img = bench_images(images=sizes["image_items"], repeats=sizes["image_repeats"], image_size=sizes["image_size"],
                           resolution0=sizes["resolution0"], upsampling_steps=sizes["upsampling_steps"], device=dev,
                           seed=seed)  # fmt: skip
        rss = peak_rss_mb()
    finally:
        torch.set_num_threads(old_threads)

    evaluated = float(np.mean(ed["points_evaluated_per_hand"]))
    dense = int(ed["dense_points"])
    result: dict[str, Any] = {
        "decoder_points_per_s": float(dec["hand_points_per_s"]),
        "mise_points_evaluated": evaluated,
        "dense_points": dense,
        "mise_query_fraction": evaluated / dense,
        "extract_two_hands_s": ed["median_s"],
        "eval_item_s": ev["median_s"],
        "synth_samples_per_s": synth[2]["median_samples_per_s"],
        "synth_samples_per_s_1_worker": synth[1]["median_samples_per_s"],
        "estimator_images_per_s": img["estimator"]["median_images_per_s"],
        "image_to_mesh_s": img["image_to_mesh"]["median_item_s"],
        "peak_rss_mb": rss["max"],
    }
    parts = ed["median_parts_s"]
    ratios = {
        "dense_over_mise": dense / evaluated,
        "decode_share_of_extract": parts["decode"] / parts["total"],
        "decode_s_predicted_from_decoder_rate": ed["points_decoded"] / result["decoder_points_per_s"],
        "decode_s_measured_over_predicted": parts["decode"] * result["decoder_points_per_s"] / ed["points_decoded"],
        "padding_overhead": ed["points_decoded"] / sum(ed["points_evaluated_per_hand"]),
        "synth_speedup_2_over_1_worker": result["synth_samples_per_s"] / result["synth_samples_per_s_1_worker"],
    }
    if "original_mise_points_evaluated_per_hand" in ed:
        ratios["original_mise_over_ours"] = float(np.mean(ed["original_mise_points_evaluated_per_hand"])) / evaluated
    result["ratios"] = ratios
    result["targets"] = _targets(result)
    result["all_targets_pass"] = all(t["pass"] for t in result["targets"].values())
    try:
        machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    result["machine"] = machine
    result["settings"] = {"quick": bool(quick), "seed": int(seed), "config": str(cfg_path), "device": str(dev),
                          "threads": int(threads), **sizes}  # fmt: skip
    result["measures"] = {
        "decoder": dec, "extraction": ed, "eval_item": ev, "synth_2_workers": synth[2], "synth_1_worker": synth[1],
        "images": img, "peak_rss_mb": rss,
    }  # fmt: skip
    result["bench_seconds"] = time.perf_counter() - t_start
    if out is not None:
        write_json(out, result)
    return result


def _fmt(key: str, value: float) -> str:
    if key in ("extract_two_hands_s", "eval_item_s", "image_to_mesh_s"):
        return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"
    if key == "estimator_images_per_s":
        return f"{value:.1f} images/s"
    if key == "mise_query_fraction":
        return f"{value:.4f} (1/{1 / value:.0f})" if value > 0 else "0"
    if key == "decoder_points_per_s":
        return f"{value / 1e3:.1f}k hand-points/s"
    if key.startswith("synth_samples_per_s"):
        return f"{value:.1f} samples/s"
    if key == "peak_rss_mb":
        return f"{value:.0f} MB"
    return f"{value:,.0f}"


def format_table(result: dict[str, Any]) -> str:
    """The result as a Markdown table (measure, value, runs, target, pass) plus ratios."""
    m = result["measures"]
    runs = {
        "decoder_points_per_s": len(m["decoder"]["run_seconds"]),
        "extract_two_hands_s": m["extraction"]["repeats"],
        "eval_item_s": m["eval_item"]["repeats"],
        "synth_samples_per_s": m["synth_2_workers"]["repeats"],
        "synth_samples_per_s_1_worker": m["synth_1_worker"]["repeats"],
        "estimator_images_per_s": m["images"]["repeats"],
        "image_to_mesh_s": len(m["images"]["image_to_mesh"]["items_s"]),
    }
    lines = ["| measure | value (median) | runs | target | pass |", "|---|---|---|---|---|"]
    for key in HEADLINE_KEYS:
        t = result["targets"].get(key)
        target = f"{t['op']} {_fmt(key, t['limit'])}" if t else ""
        ok = ("yes" if t["pass"] else "NO") if t else ""
        lines.append(f"| {key} | {_fmt(key, result[key])} | {runs.get(key, '')} | {target} | {ok} |")
    lines.append("")
    lines.append("| ratio | value |")
    lines.append("|---|---|")
    for key, value in result["ratios"].items():
        lines.append(f"| {key} | {value:.3g} |")
    s2 = m["synth_2_workers"]
    if s2.get("samples_per_s_without_startup"):
        lines.append("")
        lines.append(
            f"synthetic data, 2 workers, {s2['samples_per_run']} samples per run: {s2['pool_startup_s']:.2f} s of it "
            f"is the worker pool's start-up; without it {s2['samples_per_s_without_startup']:.1f} samples/s"
        )
    mach = result["machine"]
    lines.append("")
    lines.append(
        f"{mach['cpu']} ({mach['cpus_usable']} usable of {mach['cpu_count']} CPUs), torch {mach['torch']}, "
        f"{mach['torch_threads']} threads, device {mach['device']}, {mach['date']}, load average at start "
        f"{mach.get('load_average_start')}{' (quick: tiny sizes)' if result['settings']['quick'] else ''}; "
        f"all targets {'pass' if result['all_targets_pass'] else 'do NOT pass'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m im2hands.benchmarks.suite [--out FILE] [--quick] [--device cpu|cuda|auto]``."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(format_table(run_bench(quick=args.quick, device=args.device, out=args.out)))


if __name__ == "__main__":
    main()
