"""Crop networks on ground-truth-framed hand crops of a dataset split: MediaPipe's original
landmark network against fine-tuned ones (``crop_net`` runs), on exactly the same crops.

    python eval/crop_net.py --data data/synth --split test --nets mediapipe runs/crop_v1 --out runs/crop_eval

Each valid hand of each item gives one upright crop framed as the crop pipeline's second pass
frames its crops (:class:`im2hands.data.crop_batch.HandCropBatch` in validation mode: no jitter,
no appearance change), plus negatives (hands painted over; the same seeded windows for every
network). Per network: 2D error (crop pixels of the 224-px crop, and image pixels), wrist-relative
MPJPE (mm, crop orientation), handedness right (%), presence >= 0.5 on hand crops (%), and mean
presence of the negatives. Writes ``OUT/crop_eval.json`` and ``OUT/crop_eval.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from im2hands.data.crop_batch import HandCropBatch
from im2hands.data.dataset import HandsDataset
from im2hands.geometry.frames import WRIST
from im2hands.loading import load_model
from im2hands.models.crop_net import CropNetModel
from im2hands.models.mediapipe.hand_landmark import CROP_SIZE, HandLandmarkNet
from im2hands.utils.errors import Im2HandsError
from im2hands.utils.io import write_json, write_text

MEDIAPIPE = "mediapipe"


def load_net(name: str) -> torch.nn.Module:
    """``mediapipe`` (the original landmark network) or a ``crop_net`` run / weights file."""
    if name == MEDIAPIPE:
        return HandLandmarkNet().eval()
    model, cfg = load_model(name)
    if not isinstance(model, CropNetModel):
        raise Im2HandsError(f"{name}: model.type '{cfg.model.type}' is not a crop network (crop_net)")
    return model.landmarks.eval()


def crop_batches(data: Path, split: str, limit: int | None, batch_size: int, seed: int) -> list[dict]:
    """The split's ground-truth-framed crops (and negatives), cut once for every network."""
    ds = HandsDataset(data, split=split, fields=("image", "masks"))
    if limit is not None:
        ds = Subset(ds, range(min(limit, len(ds))))
    transform = HandCropBatch(size=CROP_SIZE)
    torch.manual_seed(seed)
    return [transform(b, training=False) for b in tqdm(DataLoader(ds, batch_size=batch_size), desc="crops", unit="batch")]


@torch.no_grad()
def score(net: torch.nn.Module, batches: list[dict]) -> dict[str, float]:
    """Means over the hand crops (and the negatives' mean presence) of one network."""
    err, err_img, mpjpe, side, pres, neg = [], [], [], [], [], []
    for b in batches:
        out = net(b["crops"])
        hand = b["crop_hand"] > 0.5
        e = (out.keypoints_2d - b["crop_uv"]).norm(dim=-1).mean(-1)  # (N,)
        rel = out.world - out.world[:, WRIST : WRIST + 1]
        err.append(e[hand])
        err_img.append((e * b["crop_px"])[hand])
        mpjpe.append(1000.0 * (rel - b["crop_xyz"]).norm(dim=-1).mean(-1)[hand])
        side.append(((out.handedness >= 0.5) == (b["crop_right"] > 0.5))[hand].float())
        pres.append((out.presence >= 0.5)[hand].float())
        neg.append(out.presence[~hand])
    cat = lambda xs: torch.cat(xs).double()  # noqa: E731
    e = cat(err)
    return {
        "hands": int(len(e)), "negatives": int(len(cat(neg))),
        "err_2d_crop_px": float(e.mean()), "err_2d_crop_px_median": float(e.median()),
        "err_2d_image_px": float(cat(err_img).mean()), "mpjpe_mm": float(cat(mpjpe).mean()),
        "side_right_pct": 100.0 * float(cat(side).mean()), "present_pct": 100.0 * float(cat(pres).mean()),
        "negative_presence": float(cat(neg).mean()) if len(cat(neg)) else float("nan"),
    }  # fmt: skip


def markdown(results: dict[str, dict[str, float]], split: str) -> str:
    head = ("| network | hands | 2D crop px (median) | 2D image px | MPJPE wrist-rel. mm | side right % | "
            "present % | negatives' presence |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")  # fmt: skip
    rows = [
        f"| {name} | {r['hands']} | {r['err_2d_crop_px']:.1f} ({r['err_2d_crop_px_median']:.1f}) | "
        f"{r['err_2d_image_px']:.2f} | {r['mpjpe_mm']:.1f} | {r['side_right_pct']:.1f} | {r['present_pct']:.1f} | "
        f"{r['negative_presence']:.3f} |"
        for name, r in results.items()
    ]
    return f"Ground-truth-framed crops, split `{split}`:\n\n" + head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder (im2hands data synth output)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="first N items of the split")
    ap.add_argument("--nets", nargs="+", default=[MEDIAPIPE], help="'mediapipe' and/or crop_net runs / weights files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="seed of the negatives' windows")
    args = ap.parse_args(argv)
    try:
        nets = {name: load_net(name) for name in args.nets}
        batches = crop_batches(args.data, args.split, args.limit, args.batch_size, args.seed)
    except Im2HandsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {name: score(net, batches) for name, net in tqdm(nets.items(), desc="networks")}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "crop_eval.json", {"data": str(args.data), "split": args.split, "limit": args.limit,
                                              "results": results})  # fmt: skip
    table = markdown(results, args.split)
    write_text(args.out / "crop_eval.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
