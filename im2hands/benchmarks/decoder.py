"""Throughput of the stage-1 decoder: ``python -m im2hands.benchmarks.decoder``.

Builds stage 1 from a config (default ``configs/init_occ_cpu.yaml``, random weights), encodes
one synthetic image and both hands' keypoints once (mean-pose hands from the shipped hand
model), then times :meth:`~im2hands.models.init_occ.InitOccNet.decode` alone on chunks of
uniform points in each hand's 0.44 m box, as the mesh extractor calls it (eval mode, no
autograd). Reported: the median over ``repeats`` runs of *hand-points per second* (one query
point decoded for one hand; a ``(1, 2, N, 3)`` call decodes ``2 N``) and the analytic FLOPs of
the part MLPs per hand-point.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["DEFAULT_CONFIG", "decoder_throughput", "mlp_flops_per_point", "main"]

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "init_occ_cpu.yaml"
"""The CPU-sized stage 1 (repository checkout)."""


def mlp_flops_per_point(model: Any) -> int:
    """FLOPs (2 per multiply-add) of one hand's part MLPs for one query point."""
    dec = model.decoders[0]
    K, H, Fd = dec.parts, dec.hidden, dec.feature_dim
    return 2 * K * (3 * H + H * H + (H + Fd) * H + H * H + H)


def _synthetic_batch(model: Any, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    from im2hands.hands.layer import load_hand_models

    gen = torch.Generator().manual_seed(seed)
    hands = load_hand_models()
    kps = []
    for side, x in (("left", -0.08), ("right", 0.08)):
        trans = torch.tensor([[x, 0.0, 0.6]]).expand(batch_size, 3)
        with torch.no_grad():
            kps.append(hands[side](torch.zeros(batch_size, 48), torch.zeros(batch_size, 10), trans).keypoints)
    batch = {"keypoints": torch.stack(kps, 1)}  # (B, 2, 21, 3)
    if model.encoder is not None:
        S = model.encoder.image_size
        batch["image"] = torch.rand(batch_size, 3, S, S, generator=gen)
    return batch


def decoder_throughput(
    model: Any = None,
    *,
    config: str | Path | None = None,
    chunk: int = 65536,
    chunks: int = 2,
    repeats: int = 5,
    threads: int | None = 2,
    batch_size: int = 1,
    seed: int = 0,
    precision: str = "float32",
) -> dict[str, Any]:
    """Time stage-1 decoding of ``chunks`` chunks of ``chunk`` points per hand.

    Args:
        model: an :class:`~im2hands.models.init_occ.InitOccNet`; None: built from ``config``.
        config: config file (default :data:`DEFAULT_CONFIG`).
        chunk: points per hand per ``decode`` call (split over ``batch_size``).
        chunks: calls per timed run.
        repeats: timed runs (after one warm-up run); the median is reported.
        threads: ``torch.set_num_threads`` during the run (None: leave as is).
        batch_size: images per call.
        seed: seed of weights and points.
        precision: ``float32`` or ``bfloat16`` (decoding under bfloat16 autocast, as the
            extractor's ``precision``).

    Returns:
        dict with ``hand_points_per_s`` (median), ``best_hand_points_per_s`` (fastest run; other
        processes on the machine slow some runs), ``run_seconds`` (all runs), ``points_per_run``
        (hand-points), ``mlp_flops_per_point``, ``mlp_gflops_per_s``, ``chunk``, ``threads``,
        ``config``.
    """
    from im2hands.config import load_config
    from im2hands.extraction.extractor import decode_autocast
    from im2hands.models.init_occ import InitOccNet

    torch.manual_seed(seed)
    cfg_path = None
    if model is None:
        cfg_path = Path(config) if config is not None else DEFAULT_CONFIG
        model = InitOccNet.from_config(load_config(cfg_path))
    model = model.eval()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            batch = _synthetic_batch(model, batch_size, seed)
            features = model.encode(batch)
            gen = torch.Generator().manual_seed(seed)
            n = max(1, chunk // batch_size)
            wrist = batch["keypoints"][:, :, None, 0]  # (B, 2, 1, 3)
            points = [wrist + 0.44 * (torch.rand(batch_size, 2, n, 3, generator=gen) - 0.5) for _ in range(chunks)]

            def run() -> float:
                t0 = time.perf_counter()
                with decode_autocast("cpu", precision):
                    for p in points:
                        model.decode(p, features)
                return time.perf_counter() - t0

            run()  # warm-up
            times = [run() for _ in range(repeats)]
    finally:
        torch.set_num_threads(old_threads)
    per_run = 2 * batch_size * n * chunks
    median = statistics.median(times)
    flops = mlp_flops_per_point(model)
    return {
        "hand_points_per_s": per_run / median,
        "best_hand_points_per_s": per_run / min(times),
        "run_seconds": times,
        "points_per_run": per_run,
        "mlp_flops_per_point": flops,
        "mlp_gflops_per_s": per_run * flops / median / 1e9,
        "chunk": chunk,
        "threads": threads if threads is not None else old_threads,
        "precision": precision,
        "config": str(cfg_path) if cfg_path is not None else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = decoder_throughput(
        config=args.config, chunk=args.chunk, chunks=args.chunks, repeats=args.repeats, threads=args.threads
    )
    log.info(
        "| config | chunk | threads | hand-points/s, median of %d (best) | MLP GFLOP/s | MLP kFLOP/point |\n"
        "|---|---|---|---|---|---|\n| %s | %d | %d | %.0f (%.0f) | %.1f | %.0f |",
        len(r["run_seconds"]), Path(r["config"]).name, r["chunk"], r["threads"], r["hand_points_per_s"],
        r["best_hand_points_per_s"], r["mlp_gflops_per_s"], r["mlp_flops_per_point"] / 1e3,
    )  # fmt: skip

if __name__ == "__main__":
    main()
