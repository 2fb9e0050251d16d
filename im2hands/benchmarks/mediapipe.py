"""MediaPipe hand landmarks in torch: accuracy on a dataset folder and CPU speed.

Accuracy (:func:`landmark_accuracy`): every valid hand of the samples gets a ground-truth-centred
upright crop (:func:`~im2hands.geometry.crops.upright_roi`, 224 px); the
predicted 2D keypoints are mapped back to image pixels and compared with the annotation's
``keypoints_2d``. Run twice: crops as they are, and left-hand crops mirrored (so every crop shows
a right hand). Handedness accuracy counts a hand as right where the score is above 0.5 in
``right_if_above`` mode or below 0.5 otherwise; both readings are reported.

Palm detection (:func:`palm_recall`): the share of valid hands whose palm centre lies inside a
detected box, on the whole images letterboxed to 192 px.

Speed (:func:`landmark_speed`): images per second of :class:`HandLandmarkNet` forward passes
(no grad, float32) at each batch size, median of ``repeats`` timed runs after one warm-up.

Command line: ``python -m im2hands.benchmarks.mediapipe --data DIR [--scale 1.8] [--repeats 7] [--tflite]``
(docs/mediapipe.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from im2hands.data.format import list_samples, read_annotation, read_image
from im2hands.geometry.crops import crop_images, crop_to_image, upright_roi
from im2hands.models.mediapipe.hand_landmark import CROP_SIZE, HandLandmarkNet
from im2hands.models.mediapipe.palm import INPUT_SIZE, PalmDetector


def _hands(root: Path, split: str, limit: int | None) -> list[tuple[str, str, np.ndarray]]:
    """(sample id, side, keypoints_2d) of every valid hand, sample ids sorted, left before right."""
    out = []
    for sid in list_samples(root, split)[:limit]:
        ann = read_annotation(root, sid)
        for side in ("left", "right"):
            hand = ann.hands.get(side)
            if hand is not None and hand.valid:
                out.append((sid, side, hand.keypoints_2d))
    return out


@torch.no_grad()
def landmark_accuracy(root: str | Path, split: str = "all", scale: float = 1.8, limit: int | None = None,
                      net: HandLandmarkNet | None = None, batch: int = 16) -> dict[str, Any]:
    """2D keypoint error (image pixels), handedness and presence of the port on GT-centred upright crops.

    Args:
        root: dataset folder (docs/data_format.md).
        split: split of the samples (``all``: every sample).
        scale: crop side / the hand's longer extent in the rotated frame.
        limit: only the first N samples.
    Returns:
        ``{"hands": n, "hand_extent_px": ..., "unmirrored": {...}, "mirror_left": {...}}``; each mode
        holds ``kp_err_px_mean`` / ``kp_err_px_median`` (over all keypoints), ``hand_err_px_median``
        (median over hands of the per-hand mean), handedness accuracies for both readings, the mean
        and minimum presence.
    """
    root = Path(root)
    net = net if net is not None else HandLandmarkNet()
    net.eval()
    hands = _hands(root, split, limit)
    if not hands:
        raise ValueError(f"{root}: no valid hands in split {split!r}")
    kp = torch.tensor(np.stack([h[2] for h in hands]), dtype=torch.float32)  # (N, 21, 2)
    is_left = torch.tensor([h[1] == "left" for h in hands])
    images: dict[str, torch.Tensor] = {}
    result: dict[str, Any] = {"hands": len(hands), "samples": len({h[0] for h in hands}), "scale": scale}
    result["hand_extent_px_mean"] = float((kp.amax(1) - kp.amin(1)).amax(-1).mean())
    for mode, mirror in (("unmirrored", torch.zeros_like(is_left)), ("mirror_left", is_left)):
        errs, hand_err, hness, pres = [], [], [], []
        for s in range(0, len(hands), batch):
            idx = range(s, min(s + batch, len(hands)))
            for i in idx:
                sid = hands[i][0]
                if sid not in images:
                    img = read_image(root / "images" / f"{sid}.png")
                    images[sid] = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
            imgs = torch.stack([images[hands[i][0]] for i in idx])
            roi = upright_roi(kp[s:s + len(idx)], scale=scale, mirror=mirror[s:s + len(idx)])
            out = net(crop_images(imgs, roi, CROP_SIZE))
            pred = crop_to_image(out.keypoints_2d, roi, CROP_SIZE)
            e = (pred - kp[s:s + len(idx)]).norm(dim=-1)  # (b, 21) pixels
            errs.append(e.reshape(-1))
            hand_err.append(e.mean(1))
            hness.append(out.handedness)
            pres.append(out.presence)
        e_all, h_all = torch.cat(errs), torch.cat(hand_err)
        hn, pr = torch.cat(hness), torch.cat(pres)
        is_right = ~is_left
        result[mode] = {
            "kp_err_px_mean": float(e_all.mean()),
            "kp_err_px_median": float(e_all.median()),
            "hand_err_px_median": float(h_all.median()),
            "handedness_acc_right_if_above": float(((hn > 0.5) == is_right).float().mean()),
            "handedness_acc_right_if_below": float(((hn < 0.5) == is_right).float().mean()),
            "left_hands_above_0.5": float((hn[is_left] > 0.5).float().mean()) if is_left.any() else None,
            "right_hands_above_0.5": float((hn[is_right] > 0.5).float().mean()) if is_right.any() else None,
            "handedness_mean_left": float(hn[is_left].mean()) if is_left.any() else None,
            "handedness_mean_right": float(hn[is_right].mean()) if is_right.any() else None,
            "presence_mean": float(pr.mean()),
            "presence_min": float(pr.min()),
            "presence_above_0.5": float((pr > 0.5).float().mean()),
        }
    return result


PALM_CENTRE = (0, 5, 9, 13, 17)  # wrist and the five base joints (standard order)


@torch.no_grad()
def palm_recall(root: str | Path, split: str = "all", limit: int | None = None,
                detector: PalmDetector | None = None) -> dict[str, Any]:
    """How many valid hands the palm detector finds on the dataset's images (letterboxed to 192 px).

    A hand is found when a detected box contains its palm centre (mean of the wrist and the five
    base joints); a detection containing no palm centre counts as unmatched.
    """
    root = Path(root)
    detector = (detector if detector is not None else PalmDetector()).eval()
    found = hands = dets = unmatched = 0
    for sid in list_samples(root, split)[:limit]:
        ann = read_annotation(root, sid)
        img = torch.from_numpy(read_image(root / "images" / f"{sid}.png")).permute(2, 0, 1).float()[None] / 255.0
        x, to_image = letterbox(img, INPUT_SIZE)
        d = detector.detect(x)[0]
        boxes = to_image(d.boxes.reshape(-1, 2, 2)).reshape(-1, 4)  # image pixels
        centres = [torch.tensor(h.keypoints_2d[list(PALM_CENTRE)], dtype=torch.float32).mean(0)
                   for h in ann.hands.values() if h.valid]
        inside = torch.tensor([[bool((c >= b[:2]).all() and (c <= b[2:]).all()) for c in centres] for b in boxes])
        inside = inside.reshape(len(boxes), len(centres))
        hands += len(centres)
        found += int(inside.any(0).sum())
        dets += len(boxes)
        unmatched += int((~inside.any(1)).sum())
    return {"hands": hands, "found": found, "recall": found / max(hands, 1), "detections": dets,
            "unmatched_detections": unmatched}


def letterbox(images: torch.Tensor, size: int) -> tuple[torch.Tensor, Any]:
    """Pad (B, 3, H, W) images to a centred square, resize to ``size``; returns them and the map from
    input fractions [0, 1] back to image pixels."""
    _, _, h, w = images.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    sq = torch.nn.functional.pad(images, (left, side - w - left, top, side - h - top))
    x = torch.nn.functional.interpolate(sq, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    offset = torch.tensor([left, top], dtype=torch.float32)
    return x.clamp(0, 1), lambda p: p * side - offset


@torch.no_grad()
def landmark_speed(batch_sizes: tuple[int, ...] = (1, 16), repeats: int = 7, threads: int = 2,
                   net: HandLandmarkNet | None = None, device: str = "cpu") -> dict[str, Any]:
    """Images per second of the landmark network (median of ``repeats`` runs per batch size)."""
    torch.set_num_threads(threads)
    net = (net if net is not None else HandLandmarkNet()).to(device).eval()
    out: dict[str, Any] = {"threads": threads, "repeats": repeats, "device": device}
    for bs in batch_sizes:
        x = torch.rand(bs, 3, CROP_SIZE, CROP_SIZE, generator=torch.Generator().manual_seed(0)).to(device)
        net(x)  # warm-up
        rates = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            net(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rates.append(bs / (time.perf_counter() - t0))
        out[f"batch_{bs}_images_per_s"] = statistics.median(rates)
        out[f"batch_{bs}_runs"] = rates
    return out


@torch.no_grad()
def port_differences(reference: str | Path, net: HandLandmarkNet | None = None,
                     detector: PalmDetector | None = None) -> dict[str, float]:
    """Max abs differences between the port and the TFLite outputs stored in ``reference``
    (``tests/models/mediapipe/reference.npz``, written by eval/record_mediapipe_reference.py)."""
    ref = np.load(reference)
    net = (net if net is not None else HandLandmarkNet()).eval()
    detector = (detector if detector is not None else PalmDetector()).eval()
    out = net(torch.from_numpy(ref["landmark_inputs"]).permute(0, 3, 1, 2).float() / 255.0)
    kp = ref["landmark_Identity"].reshape(-1, 21, 3)
    raw, logits = detector(torch.from_numpy(ref["palm_inputs"]).permute(0, 3, 1, 2).float() / 255.0)
    diff = lambda a, b: float(np.abs(a.numpy() - b).max())  # noqa: E731
    return {
        "keypoints_2d_px": diff(out.keypoints_2d, kp[..., :2]),
        "z_px": diff(out.z, kp[..., 2]),
        "presence": diff(out.presence, ref["landmark_Identity_1"][:, 0]),
        "handedness": diff(out.handedness, ref["landmark_Identity_2"][:, 0]),
        "world_m": diff(out.world, ref["landmark_Identity_3"].reshape(-1, 21, 3)),
        "palm_regression_px": diff(raw, ref["palm_Identity"]),
        "palm_logit": diff(logits, ref["palm_Identity_1"][..., 0]),
    }


def tflite_speed(repeats: int = 7, threads: int = 2) -> dict[str, Any]:
    """Images per second of the original file in the TFLite interpreter (batch 1; the file is batch 1).

    Needs ``ai-edge-litert``, which is not a dependency (install it into your own venv to compare).
    """
    from ai_edge_litert.interpreter import Interpreter

    from im2hands.models.mediapipe.fetch import model_path

    it = Interpreter(model_path=str(model_path("hand_landmark_full.tflite")), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random((1, CROP_SIZE, CROP_SIZE, 3), dtype=np.float32)
    it.set_tensor(inp["index"], x)
    it.invoke()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        it.set_tensor(inp["index"], x)
        it.invoke()
        rates.append(1.0 / (time.perf_counter() - t0))
    return {"threads": threads, "batch_1_images_per_s": statistics.median(rates), "batch_1_runs": rates}


def main(argv: list[str] | None = None) -> None:
    """Command line; prints JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder for the accuracy (omit: speed only)")
    ap.add_argument("--split", default="all")
    ap.add_argument("--limit", type=int, default=None, help="first N samples")
    ap.add_argument("--scale", type=float, default=1.8, help="crop side / hand extent (1.8)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per batch size (0: no speed)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", default=None,
                    help="reference.npz of the TFLite outputs: report the port's max abs differences")
    ap.add_argument("--tflite", action="store_true",
                    help="also time the original in the TFLite interpreter (needs ai-edge-litert, not a dependency)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = HandLandmarkNet()
    result: dict[str, Any] = {"torch": torch.__version__}
    if args.reference:
        result["port_max_abs_diff"] = port_differences(args.reference, net=net)
    if args.data:
        result["accuracy"] = landmark_accuracy(args.data, args.split, args.scale, args.limit, net=net)
        result["palm"] = palm_recall(args.data, args.split, args.limit)
    if args.repeats > 0:
        result["speed"] = landmark_speed(tuple(args.batch_sizes), args.repeats, args.threads, net=net)
        if args.tflite:
            result["speed_tflite"] = tflite_speed(args.repeats, args.threads)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
